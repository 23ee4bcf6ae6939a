"""The EigenDA blob codec, version 0: payload bytes <-> a blob of 32-byte BN254-safe symbols.

Layout (``../shared/specs/eigenda.md``, Layr-Labs/eigenda ``encoding/codec``)::

    header symbol: 0x00 | version 0x00 | payload length (u32, big-endian) | 26 zero bytes
    body symbols:  the payload in 31-byte chunks, each behind a 0x00 byte (last chunk zero-padded)
    then zero symbols up to a power-of-two symbol count

A leading zero byte keeps every symbol below the BN254 scalar field modulus, so a blob is a vector of field
elements that KZG can commit to. :func:`decode_blob` makes the spec's checks: first byte and version zero,
zero header padding, a zero first byte in every symbol, zero padding after the payload (a blob longer than
the minimal power of two is accepted, as EigenDA's decoder does).
"""

from __future__ import annotations

import numpy as np

SYMBOL_SIZE = 32
CHUNK_SIZE = SYMBOL_SIZE - 1  # payload bytes per symbol
ENCODING_VERSION = 0
MAX_BLOB_SIZE = 16 * 1024 * 1024  # 2^19 symbols
MAX_PAYLOAD_SIZE = (MAX_BLOB_SIZE // SYMBOL_SIZE - 1) * CHUNK_SIZE  # 16,252,897 bytes: header + 2^19 - 1 symbols


class BlobCodecError(ValueError):
    """A payload that cannot be encoded, or bytes that are not a well-formed version-0 blob."""


def _next_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length() if n > 1 else 1


def blob_symbols(payload_size: int) -> int:
    """Symbols (header included, power-of-two padded) of the blob that carries ``payload_size`` bytes."""
    return _next_power_of_two(1 + -(-payload_size // CHUNK_SIZE))


def encode_payload(payload: bytes) -> bytes:
    """The version-0 blob carrying ``payload``."""
    size = len(payload)
    if size > MAX_PAYLOAD_SIZE:
        raise BlobCodecError(f"payload of {size} bytes exceeds the maximum of {MAX_PAYLOAD_SIZE}")
    symbols = blob_symbols(size)
    blob = np.zeros((symbols, SYMBOL_SIZE), dtype=np.uint8)
    blob[0, 1] = ENCODING_VERSION
    blob[0, 2:6] = np.frombuffer(size.to_bytes(4, "big"), dtype=np.uint8)
    chunks = -(-size // CHUNK_SIZE)
    if chunks:
        body = np.zeros(chunks * CHUNK_SIZE, dtype=np.uint8)
        body[:size] = np.frombuffer(payload, dtype=np.uint8)
        blob[1 : 1 + chunks, 1:] = body.reshape(chunks, CHUNK_SIZE)
    return blob.tobytes()


def decode_blob(blob: bytes) -> bytes:
    """The payload of a version-0 blob, after every check of the format."""
    if len(blob) == 0 or len(blob) % SYMBOL_SIZE:
        raise BlobCodecError(f"blob length {len(blob)} is not a positive multiple of {SYMBOL_SIZE}")
    if len(blob) > MAX_BLOB_SIZE:
        raise BlobCodecError(f"blob of {len(blob)} bytes exceeds the maximum of {MAX_BLOB_SIZE}")
    symbols = np.frombuffer(blob, dtype=np.uint8).reshape(-1, SYMBOL_SIZE)
    count = symbols.shape[0]
    header = symbols[0]
    if header[0] != 0:
        raise BlobCodecError("blob header's first byte is not zero")
    if header[1] != ENCODING_VERSION:
        raise BlobCodecError(f"unknown blob encoding version {int(header[1])}")
    if header[6:].any():
        raise BlobCodecError("blob header padding is not zero")
    size = int.from_bytes(header[2:6].tobytes(), "big")
    chunks = -(-size // CHUNK_SIZE)
    if 1 + chunks > count:
        raise BlobCodecError(f"blob of {count} symbols cannot hold the {size}-byte payload its header declares")
    body = symbols[1:]
    if body[:, 0].any():
        raise BlobCodecError("a blob symbol's first byte is not zero (not a valid field element encoding)")
    data = body[:chunks, 1:].reshape(-1)
    if data[size:].any() or body[chunks:].any():
        raise BlobCodecError("blob padding after the payload is not zero")
    return data[:size].tobytes()
