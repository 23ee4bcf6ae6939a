"""Frames and batcher-transaction data, as OP Stack derivation reads them (``../shared/specs/op-stack.md``).

    batcher tx data  = 0x00 (frames version) | frame | frame | ...
    frame            = channel_id (16) | frame_number (u16) | frame_data_length (u32) | frame_data | is_last (u8)

Big-endian integers, 23 bytes of overhead per frame, ``frame_data_length`` at most 1,000,000. A
transaction whose data holds one malformed frame contributes no frame at all (derivation drops it whole).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

FRAMES_VERSION = 0x00
CHANNEL_ID_SIZE = 16
FRAME_OVERHEAD = CHANNEL_ID_SIZE + 2 + 4 + 1
MAX_FRAME_DATA = 1_000_000


class FrameError(ValueError):
    """Bytes that are not well-formed frames."""


@dataclass(frozen=True)
class Frame:
    channel_id: bytes
    number: int
    data: bytes
    is_last: bool

    def __post_init__(self) -> None:
        if len(self.channel_id) != CHANNEL_ID_SIZE:
            raise FrameError(f"channel id must be {CHANNEL_ID_SIZE} bytes, got {len(self.channel_id)}")
        if not 0 <= self.number < 1 << 16:
            raise FrameError(f"frame number {self.number} out of range")
        if len(self.data) > MAX_FRAME_DATA:
            raise FrameError(f"frame data of {len(self.data)} bytes exceeds {MAX_FRAME_DATA}")

    def encode(self) -> bytes:
        return (
            self.channel_id
            + self.number.to_bytes(2, "big")
            + len(self.data).to_bytes(4, "big")
            + self.data
            + (b"\x01" if self.is_last else b"\x00")
        )

    @classmethod
    def decode_from(cls, data: bytes, offset: int) -> tuple[Frame, int]:
        """The frame at ``offset`` and the offset after it."""
        header_end = offset + CHANNEL_ID_SIZE + 6
        if header_end > len(data):
            raise FrameError("truncated frame header")
        channel_id = data[offset : offset + CHANNEL_ID_SIZE]
        number = int.from_bytes(data[offset + CHANNEL_ID_SIZE : offset + CHANNEL_ID_SIZE + 2], "big")
        length = int.from_bytes(data[offset + CHANNEL_ID_SIZE + 2 : header_end], "big")
        if length > MAX_FRAME_DATA:
            raise FrameError(f"frame data length {length} exceeds {MAX_FRAME_DATA}")
        end = header_end + length
        if end + 1 > len(data):
            raise FrameError("truncated frame data")
        flag = data[end]
        if flag > 1:
            raise FrameError(f"is_last byte must be 0 or 1, got {flag}")
        return cls(bytes(channel_id), number, bytes(data[header_end:end]), flag == 1), end + 1


def encode_frames_calldata(frames: Iterable[Frame]) -> bytes:
    """Batcher transaction data carrying ``frames``."""
    return bytes((FRAMES_VERSION,)) + b"".join(frame.encode() for frame in frames)


def decode_frames_calldata(data: bytes) -> list[Frame]:
    """The frames of a version-0 batcher transaction (all of them, or :class:`FrameError`)."""
    if not data:
        raise FrameError("empty batcher transaction data")
    if data[0] != FRAMES_VERSION:
        raise FrameError(f"batcher data version 0x{data[0]:02x} is not frames (0x00)")
    frames, offset = [], 1
    if offset == len(data):
        raise FrameError("batcher transaction carries no frame")
    while offset < len(data):
        frame, offset = Frame.decode_from(data, offset)
        frames.append(frame)
    return frames
