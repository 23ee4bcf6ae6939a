"""Concatenated-RLP block streams (the format of ``geth export``/``geth import``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO


def _item_length(prefix: bytes) -> tuple[int, int]:
    """(header length, payload length) of the RLP item starting with ``prefix`` (up to 9 bytes)."""
    first = prefix[0]
    if first < 0xC0:
        raise ValueError("RLP stream item is not a list (not a block)")
    if first <= 0xF7:
        return 1, first - 0xC0
    size = first - 0xF7
    if len(prefix) < 1 + size:
        raise ValueError("truncated RLP list header")
    return 1 + size, int.from_bytes(prefix[1 : 1 + size], "big")


def iter_rlp_blocks(stream: BinaryIO) -> Iterator[bytes]:
    """Yield each top-level RLP item (one encoded block) of ``stream``."""
    while True:
        prefix = stream.read(1)
        if not prefix:
            return
        if prefix[0] > 0xF7:
            prefix += stream.read(prefix[0] - 0xF7)
        _, payload_len = _item_length(prefix)
        payload = stream.read(payload_len)
        if len(payload) != payload_len:
            raise ValueError("truncated RLP block at end of stream")
        yield prefix + payload
