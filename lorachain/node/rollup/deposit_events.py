"""User deposits as L1 logs: the portal's ``TransactionDeposited`` event, to and from deposit transactions.

    event TransactionDeposited(address indexed from, address indexed to, uint256 indexed version,
                               bytes opaqueData)
    version 0: opaqueData = mint (u256) | value (u256) | gas (u64) | isCreation (u8) | data

The log's data is the ABI encoding of ``opaqueData`` (offset 32, length, zero-padded content). A deposit
derived from the log at index ``i`` (counted across its whole L1 block) has the source hash
``user_deposit_source_hash(l1BlockHash, i)`` (``../shared/specs/op-stack.md``; OP Stack protocol/deposits.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import keccak

from lorachain.node.rollup.deposits import DepositTx, user_deposit_source_hash

TRANSACTION_DEPOSITED_TOPIC = keccak(b"TransactionDeposited(address,address,uint256,bytes)")
DEPOSIT_EVENT_VERSION = 0
_MIN_OPAQUE = 32 + 32 + 8 + 1


class DepositEventError(ValueError):
    """A log that is not a well-formed ``TransactionDeposited`` event."""


@dataclass(frozen=True)
class DepositEvent:
    sender: bytes
    to: bytes | None  # None: contract creation
    mint: int
    value: int
    gas: int
    data: bytes

    def opaque_data(self) -> bytes:
        return (
            self.mint.to_bytes(32, "big")
            + self.value.to_bytes(32, "big")
            + self.gas.to_bytes(8, "big")
            + (b"\x01" if self.to is None else b"\x00")
            + self.data
        )

    def log(self) -> tuple[list[bytes], bytes]:
        """(topics, data) of the event the portal emits for this deposit."""
        opaque = self.opaque_data()
        padded = opaque + bytes(-len(opaque) % 32)
        topics = [
            TRANSACTION_DEPOSITED_TOPIC,
            bytes(12) + self.sender,
            bytes(12) + (self.to or bytes(20)),
            DEPOSIT_EVENT_VERSION.to_bytes(32, "big"),
        ]
        return topics, (32).to_bytes(32, "big") + len(opaque).to_bytes(32, "big") + padded

    @classmethod
    def from_log(cls, topics: list[bytes], data: bytes) -> DepositEvent:
        if len(topics) != 4 or topics[0] != TRANSACTION_DEPOSITED_TOPIC:
            raise DepositEventError("not a TransactionDeposited event")
        for topic in topics[1:3]:
            if len(topic) != 32 or any(topic[:12]):
                raise DepositEventError("indexed address topic is not a left-padded address")
        version = int.from_bytes(topics[3], "big")
        if version != DEPOSIT_EVENT_VERSION:
            raise DepositEventError(f"unsupported deposit event version {version}")
        if len(data) < 64:
            raise DepositEventError("deposit event data too short")
        offset = int.from_bytes(data[:32], "big")
        length = int.from_bytes(data[32:64], "big")
        if offset != 32:
            raise DepositEventError(f"opaque data offset must be 32, got {offset}")
        if len(data) != 64 + length + (-length % 32):
            raise DepositEventError("opaque data length does not match the event data")
        if any(data[64 + length :]):
            raise DepositEventError("opaque data padding is not zero")
        opaque = data[64 : 64 + length]
        if len(opaque) < _MIN_OPAQUE:
            raise DepositEventError(f"opaque data of {len(opaque)} bytes is shorter than {_MIN_OPAQUE}")
        is_creation = opaque[72]
        if is_creation > 1:
            raise DepositEventError("isCreation byte must be 0 or 1")
        return cls(
            sender=bytes(topics[1][12:]),
            to=None if is_creation else bytes(topics[2][12:]),
            mint=int.from_bytes(opaque[:32], "big"),
            value=int.from_bytes(opaque[32:64], "big"),
            gas=int.from_bytes(opaque[64:72], "big"),
            data=bytes(opaque[73:]),
        )

    def deposit(self, l1_block_hash: bytes, log_index: int) -> DepositTx:
        """The deposit transaction derived from this event at ``log_index`` of L1 block ``l1_block_hash``."""
        return DepositTx(
            source_hash=user_deposit_source_hash(l1_block_hash, log_index),
            sender=self.sender,
            to=self.to,
            mint=self.mint,
            value=self.value,
            gas=self.gas,
            is_system_tx=False,
            data=self.data,
        )
