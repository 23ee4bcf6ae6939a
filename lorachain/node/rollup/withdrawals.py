"""Withdrawals L2 -> L1: the withdrawal's hash and storage slot, and the proof the L1 portal checks.

A withdrawal started in the L2ToL1MessagePasser sets ``sentMessages[hash] = true``; to prove it on L1 one
shows the output root of an L2 block at or after it (posted by the proposer), the roots that output root
commits to, and the storage proof of that slot under the message passer's storage root (``eth_getProof``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from lorachain.node.rollup.l1_client import L1Client
from lorachain.node.rollup.outputs import L2_TO_L1_MESSAGE_PASSER, OUTPUT_VERSION_V0, output_root_v0

SENT_MESSAGES_SLOT = 0


@dataclass(frozen=True)
class Withdrawal:
    nonce: int
    sender: bytes
    target: bytes
    value: int
    gas_limit: int
    data: bytes

    @property
    def hash(self) -> bytes:
        types = ["uint256", "address", "address", "uint256", "uint256", "bytes"]
        return keccak(encode(types, [self.nonce, self.sender, self.target, self.value, self.gas_limit, self.data]))

    @property
    def storage_slot(self) -> bytes:
        return keccak(self.hash + SENT_MESSAGES_SLOT.to_bytes(32, "big"))

    def as_tuple(self) -> tuple:
        """The portal's ``WithdrawalTransaction`` struct, for a contract call."""
        return (self.nonce, to_checksum_address(self.sender), to_checksum_address(self.target), self.value,
                self.gas_limit, self.data)  # fmt: skip


@dataclass(frozen=True)
class WithdrawalProof:
    l2_block_number: int
    output_root_proof: tuple[bytes, bytes, bytes, bytes]  # version, stateRoot, messagePasserStorageRoot, blockHash
    storage_proof: list[bytes]

    @property
    def output_root(self) -> bytes:
        return output_root_v0(*self.output_root_proof[1:])


def prove(l2: L1Client, withdrawal: Withdrawal, l2_block_number: int) -> WithdrawalProof:
    """The proof of ``withdrawal`` against the output of L2 block ``l2_block_number`` (at or after it)."""
    block: dict[str, Any] = l2.call("eth_getBlockByNumber", hex(l2_block_number), False)
    proof = l2.call("eth_getProof", "0x" + L2_TO_L1_MESSAGE_PASSER.hex(), ["0x" + withdrawal.storage_slot.hex()],
                    hex(l2_block_number))  # fmt: skip
    [slot] = proof["storageProof"]
    if int(slot["value"], 16) != 1:
        raise ValueError(f"withdrawal 0x{withdrawal.hash.hex()} is not in the message passer at #{l2_block_number}")
    roots = (OUTPUT_VERSION_V0, bytes.fromhex(block["stateRoot"][2:]), bytes.fromhex(proof["storageHash"][2:]),
             bytes.fromhex(block["hash"][2:]))  # fmt: skip
    return WithdrawalProof(l2_block_number, roots, [bytes.fromhex(node[2:]) for node in slot["proof"]])
