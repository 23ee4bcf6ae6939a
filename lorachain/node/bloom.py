"""The 2048-bit logs bloom of receipts and headers (yellow paper §4.3.1), on plain integers.

An item (a log's address, or one of its topics as 32 bytes) sets three bits: for each of the first three
byte pairs of its keccak-256, the pair's big-endian value modulo 2048. eth-bloom computes the same through a
generator and a ``BloomFilter`` object per item; py-evm builds one for every receipt (and again to check it),
which cost ~4 % of executing a block. ``tests/test_bloom.py`` checks these against eth-bloom.
"""

from __future__ import annotations

from collections.abc import Iterable

from eth.abc import LogAPI

from lorachain.hashing import keccak


def item_bits(item: bytes) -> int:
    """The three bits ``item`` sets in a bloom."""
    h = keccak(item)
    first, second, third = ((h[0] << 8) | h[1]) & 2047, ((h[2] << 8) | h[3]) & 2047, ((h[4] << 8) | h[5]) & 2047
    return (1 << first) | (1 << second) | (1 << third)


def may_contain(bloom: int, item: bytes) -> bool:
    """False if ``item`` was certainly never added to ``bloom``."""
    bits = item_bits(item)
    return bloom & bits == bits


def logs_bloom(logs: Iterable[LogAPI]) -> int:
    """The bloom of a receipt's logs: each log's address and topics (topics are integers, as py-evm keeps them)."""
    bloom = 0
    for log in logs:
        bloom |= item_bits(log.address)
        for topic in log.topics:
            bloom |= item_bits(topic.to_bytes(32, "big"))
    return bloom
