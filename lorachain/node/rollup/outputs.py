"""L2 output roots: what the proposer posts to L1 and withdrawals are proven against.

    output root v0 = keccak256(bytes32(0) | stateRoot | L2ToL1MessagePasser storageRoot | blockHash)

(``../shared/specs/op-stack.md``; OP Stack protocol/proposals.md.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import rlp
from eth.constants import BLANK_ROOT_HASH
from eth.rlp.accounts import Account
from eth_utils import keccak
from trie import HexaryTrie

OUTPUT_VERSION_V0 = bytes(32)
L2_TO_L1_MESSAGE_PASSER = bytes.fromhex("4200000000000000000000000000000000000016")


def output_root_v0(state_root: bytes, message_passer_storage_root: bytes, block_hash: bytes) -> bytes:
    return keccak(OUTPUT_VERSION_V0 + state_root + message_passer_storage_root + block_hash)


def storage_root_of(db: Mapping[bytes, bytes], state_root: bytes, address: bytes) -> bytes:
    """``address``'s storage root in the state at ``state_root`` (the empty root if it has none)."""
    encoded = HexaryTrie(db, state_root).get(keccak(address))
    return rlp.decode(encoded, sedes=Account).storage_root if encoded else BLANK_ROOT_HASH


@dataclass(frozen=True)
class Output:
    block_hash: bytes
    state_root: bytes
    withdrawal_storage_root: bytes

    @property
    def root(self) -> bytes:
        return output_root_v0(self.state_root, self.withdrawal_storage_root, self.block_hash)


def output_at(db: Mapping[bytes, bytes], block_hash: bytes, state_root: bytes) -> Output:
    """The output of the L2 block ``block_hash`` whose post-state is ``state_root``."""
    return Output(block_hash, state_root, storage_root_of(db, state_root, L2_TO_L1_MESSAGE_PASSER))
