"""Deposit transactions (EIP-2718 type 0x7E) and their receipts: the wire format and source hashes.

    tx      = 0x7E | rlp([sourceHash, from, to (b"" = create), mint, value, gas, isSystemTx, data])
    hash    = keccak256(tx)
    receipt = 0x7E | rlp([status, cumulativeGasUsed, bloom, logs, depositNonce, depositReceiptVersion])  (Canyon)

    sourceHash = keccak256(bytes32(domain) | keccak256(payload)):
      domain 0, user deposit:      payload = l1BlockHash | bytes32(l1LogIndex)
      domain 1, L1-info deposit:   payload = l1BlockHash | bytes32(sequenceNumber)
      domain 2, upgrade deposit:   payload = utf8(intent)

(``../shared/specs/op-stack.md``; OP Stack specs protocol/deposits.md.) Deposits carry no nonce and no
signature; they are made by derivation from L1, never accepted over JSON-RPC.
"""

from __future__ import annotations

from dataclasses import dataclass

import rlp
from eth_utils import keccak
from rlp.sedes import Binary, CountableList, big_endian_int, binary, boolean

DEPOSIT_TX_TYPE = 0x7E
DEPOSIT_RECEIPT_VERSION = 1
USER_DEPOSIT_DOMAIN, L1_INFO_DEPOSIT_DOMAIN, UPGRADE_DEPOSIT_DOMAIN = 0, 1, 2

_address = Binary.fixed_length(20)
_to = Binary(min_length=0, max_length=20)
_TX_SEDES = rlp.sedes.List(
    [Binary.fixed_length(32), _address, _to, big_endian_int, big_endian_int, big_endian_int, boolean, binary]
)
_LOG_SEDES = rlp.sedes.List([_address, CountableList(Binary.fixed_length(32)), binary])
_RECEIPT_SEDES = rlp.sedes.List(
    [big_endian_int, big_endian_int, Binary.fixed_length(256), CountableList(_LOG_SEDES), big_endian_int,
     big_endian_int]
)  # fmt: skip


class DepositError(ValueError):
    """Bytes that are not a deposit transaction or receipt."""


def source_hash(domain: int, payload: bytes) -> bytes:
    return keccak(domain.to_bytes(32, "big") + keccak(payload))


def user_deposit_source_hash(l1_block_hash: bytes, log_index: int) -> bytes:
    """``log_index``: the log's index across the whole L1 block."""
    return source_hash(USER_DEPOSIT_DOMAIN, l1_block_hash + log_index.to_bytes(32, "big"))


def l1_info_source_hash(l1_block_hash: bytes, sequence_number: int) -> bytes:
    return source_hash(L1_INFO_DEPOSIT_DOMAIN, l1_block_hash + sequence_number.to_bytes(32, "big"))


def upgrade_source_hash(intent: str) -> bytes:
    return source_hash(UPGRADE_DEPOSIT_DOMAIN, intent.encode())


@dataclass(frozen=True)
class DepositTx:
    source_hash: bytes
    sender: bytes
    to: bytes | None  # None: contract creation
    mint: int
    value: int
    gas: int
    is_system_tx: bool
    data: bytes

    def encode(self) -> bytes:
        fields = [self.source_hash, self.sender, self.to or b"", self.mint, self.value, self.gas,
                  self.is_system_tx, self.data]  # fmt: skip
        return bytes((DEPOSIT_TX_TYPE,)) + rlp.encode(fields, sedes=_TX_SEDES)

    @property
    def hash(self) -> bytes:
        return keccak(self.encode())

    @classmethod
    def decode(cls, encoded: bytes) -> DepositTx:
        if not encoded or encoded[0] != DEPOSIT_TX_TYPE:
            raise DepositError("not a deposit transaction (type byte 0x7e)")
        try:
            source, sender, to, mint, value, gas, is_system, data = rlp.decode(bytes(encoded[1:]), sedes=_TX_SEDES)
        except (rlp.DecodingError, rlp.DeserializationError) as exc:
            raise DepositError(f"malformed deposit transaction: {exc}") from exc
        if to and len(to) != 20:
            raise DepositError("deposit 'to' must be 20 bytes or empty")
        if gas >= 1 << 64:
            raise DepositError("deposit gas must fit in 64 bits")
        return cls(source, sender, to or None, mint, value, gas, is_system, data)


@dataclass(frozen=True)
class DepositReceipt:
    status: int
    cumulative_gas_used: int
    bloom: bytes  # 256 bytes
    logs: tuple[tuple[bytes, tuple[bytes, ...], bytes], ...]  # (address, topics, data)
    deposit_nonce: int
    deposit_receipt_version: int = DEPOSIT_RECEIPT_VERSION

    def encode(self) -> bytes:
        logs = [[address, list(topics), data] for address, topics, data in self.logs]
        fields = [self.status, self.cumulative_gas_used, self.bloom, logs, self.deposit_nonce,
                  self.deposit_receipt_version]  # fmt: skip
        return bytes((DEPOSIT_TX_TYPE,)) + rlp.encode(fields, sedes=_RECEIPT_SEDES)

    @classmethod
    def decode(cls, encoded: bytes) -> DepositReceipt:
        if not encoded or encoded[0] != DEPOSIT_TX_TYPE:
            raise DepositError("not a deposit receipt (type byte 0x7e)")
        try:
            status, gas, bloom, logs, nonce, version = rlp.decode(bytes(encoded[1:]), sedes=_RECEIPT_SEDES)
        except (rlp.DecodingError, rlp.DeserializationError) as exc:
            raise DepositError(f"malformed deposit receipt: {exc}") from exc
        return cls(status, gas, bloom, tuple((a, tuple(t), d) for a, t, d in logs), nonce, version)
