"""The EigenDA version-0 blob codec: round trips at the edges, and every malformed blob refused."""

from __future__ import annotations

import os

import pytest

from lorachain.da_client.blob_codec import (
    MAX_PAYLOAD_SIZE,
    SYMBOL_SIZE,
    BlobCodecError,
    blob_symbols,
    decode_blob,
    encode_payload,
)

BN254_MODULUS = 21888242871839275222246405745257275088548364400416034343698204186575808495617


@pytest.mark.parametrize("size", [0, 1, 30, 31, 32, 61, 62, 63, 93, 1000, 4096, 100_000])
def test_round_trip(size: int) -> None:
    payload = os.urandom(size)
    blob = encode_payload(payload)
    symbols = len(blob) // SYMBOL_SIZE
    assert len(blob) % SYMBOL_SIZE == 0 and symbols & (symbols - 1) == 0  # a power of two
    assert symbols == blob_symbols(size)
    assert blob[:6] == b"\x00\x00" + size.to_bytes(4, "big") and blob[6:32] == bytes(26)
    assert all(int.from_bytes(blob[i : i + 32], "big") < BN254_MODULUS for i in range(0, len(blob), 32))
    assert decode_blob(blob) == payload


def test_layout_of_a_small_payload() -> None:
    payload = bytes(range(1, 40))  # 39 bytes: one full chunk, one short one
    blob = encode_payload(payload)
    assert len(blob) == 4 * SYMBOL_SIZE  # header + 2 chunks -> padded to 4 symbols
    assert blob[32:64] == b"\x00" + payload[:31]
    assert blob[64:96] == b"\x00" + payload[31:] + bytes(23)
    assert blob[96:] == bytes(32)


def test_maximum_payload_and_beyond() -> None:
    assert blob_symbols(MAX_PAYLOAD_SIZE) == 2**19
    with pytest.raises(BlobCodecError, match="exceeds the maximum"):
        encode_payload(bytes(MAX_PAYLOAD_SIZE + 1))


def test_longer_padding_is_accepted() -> None:
    blob = encode_payload(b"hello")
    assert decode_blob(blob + bytes(len(blob))) == b"hello"


def _with(blob: bytes, offset: int, value: int) -> bytes:
    return blob[:offset] + bytes([value]) + blob[offset + 1 :]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:-1], "multiple of 32"),
        (lambda b: b"", "multiple of 32"),
        (lambda b: _with(b, 0, 1), "first byte"),
        (lambda b: _with(b, 1, 1), "encoding version"),
        (lambda b: _with(b, 20, 1), "header padding"),
        (lambda b: _with(b, 32, 1), "first byte is not zero"),
        (lambda b: _with(b, 64 + 31, 7), "padding after the payload"),  # inside the last chunk
        (lambda b: _with(b, 127, 7), "padding after the payload"),  # a padding symbol
        (lambda b: b[:2] + (10_000).to_bytes(4, "big") + b[6:], "cannot hold"),
        (lambda b: _with(b, 96, 1), "first byte is not zero"),  # a padding symbol's first byte
    ],
)
def test_malformed_blobs_are_refused(mutate, message: str) -> None:
    blob = encode_payload(bytes(range(1, 40)))
    with pytest.raises(BlobCodecError, match=message):
        decode_blob(mutate(blob))
