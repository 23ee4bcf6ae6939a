"""Frames, batcher calldata, channels and singular batches: round trips and refusals."""

from __future__ import annotations

import os
import zlib

import pytest
import rlp

from lorachain.node.rollup.batches import BatchError, SingularBatch
from lorachain.node.rollup.channels import (
    ChannelAssembler,
    ChannelError,
    Compression,
    channel_frames,
    compress_batches,
    decompress_channel,
    split_batches,
)
from lorachain.node.rollup.frames import (
    FRAME_OVERHEAD,
    MAX_FRAME_DATA,
    Frame,
    FrameError,
    decode_frames_calldata,
    encode_frames_calldata,
)

CHANNEL = bytes(range(16))


def batch(i: int, txs: int = 3) -> SingularBatch:
    return SingularBatch(
        parent_hash=bytes([i]) * 32,
        epoch_number=100 + i,
        epoch_hash=bytes([i + 1]) * 32,
        timestamp=1_700_000_000 + 2 * i,
        transactions=tuple(b"\x02" + os.urandom(100 + t) for t in range(txs)),
    )


def test_frame_layout_and_round_trip() -> None:
    frame = Frame(CHANNEL, 7, b"abc", True)
    encoded = frame.encode()
    assert encoded == CHANNEL + b"\x00\x07" + b"\x00\x00\x00\x03" + b"abc" + b"\x01"
    assert len(encoded) == FRAME_OVERHEAD + 3
    frames = [frame, Frame(CHANNEL, 0, b"", False), Frame(bytes(16), 65535, os.urandom(1000), False)]
    assert decode_frames_calldata(encode_frames_calldata(frames)) == frames


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x01" + Frame(CHANNEL, 0, b"x", True).encode(), "not frames"),
        (b"\x00", "no frame"),
        (b"\x00" + Frame(CHANNEL, 0, b"xyz", True).encode()[:-2], "truncated"),
        (b"\x00" + CHANNEL + b"\x00", "truncated frame header"),
        (b"\x00" + Frame(CHANNEL, 0, b"x", True).encode()[:-1] + b"\x02", "is_last"),
        (b"\x00" + CHANNEL + b"\x00\x00" + (MAX_FRAME_DATA + 1).to_bytes(4, "big"), "exceeds"),
        (b"\x00" + Frame(CHANNEL, 0, b"x", True).encode() + b"\x00" * 5, "truncated"),  # one bad frame: none
    ],
)
def test_malformed_calldata_yields_no_frames(data: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        decode_frames_calldata(data)


def test_frame_field_limits() -> None:
    with pytest.raises(FrameError):
        Frame(b"short", 0, b"", True)
    with pytest.raises(FrameError):
        Frame(CHANNEL, 1 << 16, b"", True)


def test_singular_batch_round_trip_and_refusals() -> None:
    original = batch(3)
    encoded = original.encode()
    assert encoded[0] == 0
    assert SingularBatch.decode(encoded) == original
    assert SingularBatch.decode(batch(1, txs=0).encode()).transactions == ()
    with pytest.raises(BatchError, match="span"):
        SingularBatch.decode(b"\x01" + encoded[1:])
    with pytest.raises(BatchError, match="unknown"):
        SingularBatch.decode(b"\x05" + encoded[1:])
    with pytest.raises(BatchError, match="malformed"):
        SingularBatch.decode(encoded[:-4])
    with pytest.raises(BatchError, match="malformed"):
        SingularBatch.decode(b"\x00" + rlp.encode([b"\x01" * 31, 1, b"\x02" * 32, 5, []]))  # short parent hash


@pytest.mark.parametrize("compression", list(Compression))
def test_channel_round_trip(compression: Compression) -> None:
    batches = [batch(i) for i in range(20)]
    data = compress_batches([b.encode() for b in batches], compression)
    assert (data[0] == 0x01) == (compression is Compression.BROTLI)
    if compression is Compression.ZLIB:
        assert data[0] & 0x0F in (8, 15)
    frames = channel_frames(os.urandom(16), data, max_frame_data=500)
    assert frames[-1].is_last and not any(f.is_last for f in frames[:-1])
    assembler = ChannelAssembler(frames[0].channel_id)
    for frame in reversed(frames):  # any arrival order
        assert assembler.add(frame)
    assert assembler.ready
    decoded = [SingularBatch.decode(raw) for raw in split_batches(decompress_channel(assembler.data()))]
    assert decoded == batches


def test_assembler_follows_the_channel_bank_rules() -> None:
    frames = channel_frames(CHANNEL, os.urandom(3000), max_frame_data=1000)  # frames 0, 1, 2 (last)
    assembler = ChannelAssembler(CHANNEL)
    assert assembler.add(frames[0])
    assert not assembler.add(Frame(CHANNEL, 0, b"other", False))  # duplicate number: first wins
    assert not assembler.add(Frame(bytes(16), 1, b"", False))  # another channel
    assert assembler.add(Frame(CHANNEL, 5, b"beyond", False))
    assert not assembler.ready
    assert assembler.add(frames[2])  # closing frame prunes frame 5
    assert 5 not in assembler.frames and not assembler.ready
    assert not assembler.add(Frame(CHANNEL, 3, b"", False))  # past the closing frame
    assert not assembler.add(Frame(CHANNEL, 1, b"", True))  # a second closing frame
    with pytest.raises(ChannelError, match="not complete"):
        assembler.data()
    assert assembler.add(frames[1]) and assembler.ready
    assert assembler.data() == b"".join(f.data for f in frames)


def test_bounded_and_corrupt_channels() -> None:
    bomb = zlib.compress(bytes(10_000_000), 9)
    with pytest.raises(ChannelError, match="more than"):
        decompress_channel(bomb, max_size=1_000_000)
    with pytest.raises(ChannelError, match="more than"):
        decompress_channel(compress_batches([bytes(2_000_000)]), max_size=1_000_000)
    with pytest.raises(ChannelError, match="unknown channel compression"):
        decompress_channel(b"\x02abc")
    with pytest.raises(ChannelError, match="corrupt"):
        decompress_channel(b"\x78\x9c" + os.urandom(50))
    with pytest.raises(ChannelError, match="empty"):
        decompress_channel(b"")


def test_split_batches_refuses_malformed_rlp() -> None:
    good = rlp.encode(b"x" * 100)
    assert split_batches(good + rlp.encode(b"\x05")) == [b"x" * 100, b"\x05"]
    with pytest.raises(ChannelError, match="ends inside"):
        split_batches(good[:-1])
    with pytest.raises(ChannelError, match="list"):
        split_batches(rlp.encode([b"a"]))
    with pytest.raises(ChannelError, match="non-canonical"):
        split_batches(b"\x81\x05")
    with pytest.raises(ChannelError, match="malformed RLP length"):
        split_batches(b"\xb8\x05hello")


def test_batcher_tx_gas_covers_the_calldata_floor() -> None:
    from lorachain.node.rollup.batcher import batcher_tx_gas

    assert batcher_tx_gas(b"") == 21_000
    assert batcher_tx_gas(bytes(100)) == 21_000 + 10 * 100  # zero bytes: the floor (10/byte) beats 4/byte
    assert batcher_tx_gas(b"\x01" * 100) == 21_000 + 40 * 100  # other bytes: 40/byte beats 16/byte
