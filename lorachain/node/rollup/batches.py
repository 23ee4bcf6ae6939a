"""Singular batches: one L2 block's inputs as the batcher posts them (``../shared/specs/op-stack.md``).

    batch = 0x00 | rlp([parent_hash, epoch_number, epoch_hash, timestamp, [raw_tx, ...]])

``raw_tx`` are EIP-2718 encodings of the block's non-deposit transactions (deposits come from L1, never
from the batcher; a batch that carries one decodes, and the batch queue's validity rules drop it). Span
batches (type 0x01) are not produced here; decoding one says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import rlp
from rlp.sedes import Binary, CountableList, big_endian_int, binary

SINGULAR_BATCH_TYPE = 0x00
SPAN_BATCH_TYPE = 0x01

_hash32 = Binary.fixed_length(32)
_SEDES = rlp.sedes.List([_hash32, big_endian_int, _hash32, big_endian_int, CountableList(binary)])


class BatchError(ValueError):
    """Bytes that are not a batch this node can read."""


@dataclass(frozen=True)
class SingularBatch:
    parent_hash: bytes
    epoch_number: int
    epoch_hash: bytes
    timestamp: int
    transactions: tuple[bytes, ...]

    def encode(self) -> bytes:
        fields = [self.parent_hash, self.epoch_number, self.epoch_hash, self.timestamp, list(self.transactions)]
        return bytes((SINGULAR_BATCH_TYPE,)) + rlp.encode(fields, sedes=_SEDES)

    @classmethod
    def decode(cls, data: bytes) -> SingularBatch:
        if not data:
            raise BatchError("empty batch")
        if data[0] == SPAN_BATCH_TYPE:
            raise BatchError("span batches are not supported")
        if data[0] != SINGULAR_BATCH_TYPE:
            raise BatchError(f"unknown batch type 0x{data[0]:02x}")
        try:
            parent, epoch_number, epoch_hash, timestamp, txs = rlp.decode(bytes(data[1:]), sedes=_SEDES)
        except (rlp.DecodingError, rlp.DeserializationError) as exc:
            raise BatchError(f"malformed singular batch: {exc}") from exc
        return cls(parent, epoch_number, epoch_hash, timestamp, tuple(txs))
