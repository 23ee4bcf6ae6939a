"""Channels: compressed sequences of batches, cut into frames (``../shared/specs/op-stack.md``).

    channel data = compress(rlp_bytes(batch_1) | rlp_bytes(batch_2) | ...)

each encoded batch wrapped as an RLP byte string; ``compress`` is zlib (RFC 1950, whose first byte has
low nibble 8 or 15) or, from Fjord, ``0x01 | brotli``. Reading is bounded: a channel may not decompress
to more than ``max_size`` bytes (Fjord's 100,000,000), so a compression bomb costs nothing.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Iterable

import brotli
import rlp

from lorachain.node.rollup.frames import CHANNEL_ID_SIZE, MAX_FRAME_DATA, Frame

BROTLI_PREFIX = 0x01
MAX_RLP_BYTES_PER_CHANNEL = 100_000_000  # Fjord


class ChannelError(ValueError):
    """A channel that cannot be read."""


class Compression(enum.Enum):
    ZLIB = "zlib"
    BROTLI = "brotli"


def compress_batches(encoded_batches: Iterable[bytes], compression: Compression = Compression.BROTLI) -> bytes:
    """Channel data for ``encoded_batches`` (each :meth:`SingularBatch.encode` bytes)."""
    raw = b"".join(rlp.encode(batch) for batch in encoded_batches)
    if compression is Compression.ZLIB:
        return zlib.compress(raw, 9)
    return bytes((BROTLI_PREFIX,)) + brotli.compress(raw, quality=10, lgwin=22)


def decompress_channel(data: bytes, max_size: int = MAX_RLP_BYTES_PER_CHANNEL) -> bytes:
    """The batches' bytes in channel ``data``, whichever compression it uses."""
    if not data:
        raise ChannelError("empty channel")
    first = data[0]
    try:
        if first & 0x0F in (8, 15):
            inflater = zlib.decompressobj()
            raw = inflater.decompress(data, max_size + 1)
        elif first == BROTLI_PREFIX:
            raw = brotli.Decompressor().process(data[1:], output_buffer_limit=max_size + 1)
        else:
            raise ChannelError(f"unknown channel compression (first byte 0x{first:02x})")
    except (zlib.error, brotli.error) as exc:
        raise ChannelError(f"corrupt channel data: {exc}") from exc
    if len(raw) > max_size:
        raise ChannelError(f"channel decompresses to more than {max_size} bytes")
    return raw


def split_batches(raw: bytes) -> list[bytes]:
    """The RLP byte strings of decompressed channel data, in order (a truncated tail is an error)."""
    batches, offset = [], 0
    while offset < len(raw):
        prefix = raw[offset]
        if prefix < 0x80:
            start, length = offset, 1
        elif prefix <= 0xB7:
            start, length = offset + 1, prefix - 0x80
        elif prefix <= 0xBF:
            size = prefix - 0xB7
            start = offset + 1 + size
            length = int.from_bytes(raw[offset + 1 : start], "big")
            if start > len(raw) or length < 56 or raw[offset + 1] == 0:
                raise ChannelError("malformed RLP length in channel")
        else:
            raise ChannelError("channel holds an RLP list where a batch (byte string) belongs")
        end = start + length
        if end > len(raw):
            raise ChannelError("channel data ends inside a batch")
        if length == 1 and prefix == 0x81 and raw[start] < 0x80:
            raise ChannelError("non-canonical RLP in channel")
        batches.append(bytes(raw[start:end]))
        offset = end
    return batches


def channel_frames(channel_id: bytes, data: bytes, max_frame_data: int = MAX_FRAME_DATA) -> list[Frame]:
    """``data`` cut into frames of at most ``max_frame_data`` bytes, the last one marked."""
    if len(channel_id) != CHANNEL_ID_SIZE:
        raise ChannelError(f"channel id must be {CHANNEL_ID_SIZE} bytes")
    if not 0 < max_frame_data <= MAX_FRAME_DATA:
        raise ChannelError(f"max frame data must be in 1..{MAX_FRAME_DATA}")
    pieces = [data[i : i + max_frame_data] for i in range(0, len(data), max_frame_data)] or [b""]
    return [Frame(channel_id, n, piece, n == len(pieces) - 1) for n, piece in enumerate(pieces)]


class ChannelAssembler:
    """The frames of one channel as they arrive, in any order; ready once every frame up to the last is in.

    As op-node's channel does: a frame number seen before is ignored (the first one wins), and so are a
    second closing frame and frames numbered past the closing one; a closing frame that arrives after
    higher-numbered frames prunes them.
    """

    def __init__(self, channel_id: bytes) -> None:
        self.channel_id = channel_id
        self.frames: dict[int, Frame] = {}
        self.last: int | None = None

    def add(self, frame: Frame) -> bool:
        """Take ``frame``; True if it was used."""
        if frame.channel_id != self.channel_id or frame.number in self.frames:
            return False
        if self.last is not None and (frame.number > self.last or frame.is_last):
            return False
        if frame.is_last:
            self.last = frame.number
            self.frames = {n: f for n, f in self.frames.items() if n < frame.number}
        self.frames[frame.number] = frame
        return True

    @property
    def ready(self) -> bool:
        return self.last is not None and len(self.frames) == self.last + 1

    def data(self) -> bytes:
        if not self.ready:
            raise ChannelError("channel is not complete")
        return b"".join(self.frames[n].data for n in range(self.last + 1))  # type: ignore[operator]
