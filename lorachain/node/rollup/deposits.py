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

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import rlp
from eth.rlp.logs import Log
from eth.rlp.receipts import Receipt
from eth.rlp.sedes import uint256
from eth_bloom import BloomFilter
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


class DepositReceipt(Receipt):
    """A deposit's receipt (the payload behind the 0x7E type byte): py-evm's receipt plus Canyon's fields."""

    fields = [
        ("state_root", binary),  # the status: b"\x01" success, b"" failure
        ("gas_used", big_endian_int),  # cumulative in the block
        ("bloom", uint256),
        ("logs", CountableList(Log)),
        ("deposit_nonce", big_endian_int),
        ("deposit_receipt_version", big_endian_int),
    ]

    def __init__(
        self,
        state_root: bytes,
        gas_used: int,
        logs: Iterable[Log],
        bloom: int | None = None,
        deposit_nonce: int = 0,
        deposit_receipt_version: int = DEPOSIT_RECEIPT_VERSION,
    ) -> None:
        logs = tuple(logs)
        if bloom is None:
            bloom = int(BloomFilter.from_iterable(itertools.chain.from_iterable(log.bloomables for log in logs)))
        rlp.Serializable.__init__(self, state_root, gas_used, bloom, logs, deposit_nonce, deposit_receipt_version)

    def encode_typed(self) -> bytes:
        """The receipt as it enters the receipt trie: 0x7E | rlp(fields)."""
        return bytes((DEPOSIT_TX_TYPE,)) + rlp.encode(self)

    @classmethod
    def decode_typed(cls, encoded: bytes) -> DepositReceipt:
        if not encoded or encoded[0] != DEPOSIT_TX_TYPE:
            raise DepositError("not a deposit receipt (type byte 0x7e)")
        try:
            return rlp.decode(bytes(encoded[1:]), sedes=cls)
        except (rlp.DecodingError, rlp.DeserializationError) as exc:
            raise DepositError(f"malformed deposit receipt: {exc}") from exc
