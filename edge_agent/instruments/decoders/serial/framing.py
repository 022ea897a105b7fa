"""Framers: cut a serial byte stream into frames. Pure and incremental.

Each ``feed`` returns what the new bytes completed: frames (``bytes``) and
:class:`Garbage` (bytes skipped to resynchronise). Feeding a stream one byte at a
time gives exactly what feeding it at once gives. Buffers are bounded: a device that
floods bytes without ever completing a frame costs at most ``max_length`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol


@dataclass(frozen=True, slots=True)
class Garbage:
    size: int
    reason: str


FrameEvent = bytes | Garbage


class Framer(Protocol):
    def feed(self, data: bytes) -> list[FrameEvent]: ...


class LineFramer:
    """Lines ended by CR, LF or CR LF; empty lines are dropped, over-long ones skipped
    and reported every ``max_length`` bytes, so a flood without line ends shows."""

    def __init__(self, max_length: int = 512) -> None:
        self.max_length = max_length
        self._buffer = bytearray()
        self._dropping = False  # inside an over-long line, until its end
        self._dropped = 0  # bytes of it dropped and not yet reported

    def feed(self, data: bytes) -> list[FrameEvent]:
        events: list[FrameEvent] = []
        for byte in data:
            if byte in (0x0D, 0x0A):
                if self._dropping:
                    self._report(events)
                    self._dropping = False
                elif self._buffer:
                    events.append(bytes(self._buffer))
                self._buffer.clear()
            elif self._dropping:
                self._dropped += 1
                if self._dropped >= self.max_length:
                    self._report(events)
            elif len(self._buffer) >= self.max_length:
                self._dropping, self._dropped = True, len(self._buffer) + 1
                self._buffer.clear()
            else:
                self._buffer.append(byte)
        return events

    def _report(self, events: list[FrameEvent]) -> None:
        if self._dropped:
            events.append(Garbage(self._dropped, "line too long"))
            self._dropped = 0


#: Nonin Data Format 2: 5-byte frames, 25 to a packet (Nonin OEM III specification,
#: "Data Format #2").
DF2_FRAME: Final = 5
DF2_FRAMES_PER_PACKET: Final = 25
DF2_PACKET: Final = DF2_FRAME * DF2_FRAMES_PER_PACKET
DF2_START: Final = 0x01
DF2_STATUS_ALWAYS: Final = 0x80
DF2_SYNC: Final = 0x01


def df2_frame_ok(frame: bytes) -> bool:
    """Start byte, status bit 7, and checksum (sum of bytes 1-4 modulo 256)."""
    return (
        len(frame) == DF2_FRAME
        and frame[0] == DF2_START
        and frame[1] & DF2_STATUS_ALWAYS != 0
        and sum(frame[:4]) & 0xFF == frame[4]
    )


class NoninDf2Framer:
    """Whole 25-frame packets starting at the frame with the SYNC bit.

    A byte that does not start a valid frame is skipped (resynchronisation); a packet
    interrupted by a bad frame or an early SYNC is dropped as garbage and a new one
    starts at the next SYNC frame.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._packet = bytearray()
        self._skipped = 0

    def feed(self, data: bytes) -> list[FrameEvent]:
        events: list[FrameEvent] = []
        self._buffer += data
        while len(self._buffer) >= DF2_FRAME:
            frame = bytes(self._buffer[:DF2_FRAME])
            if not df2_frame_ok(frame):
                del self._buffer[0]
                self._skipped += 1
                if self._packet:  # a packet broken in the middle is lost whole
                    self._skipped += len(self._packet)
                    self._packet.clear()
                continue
            del self._buffer[:DF2_FRAME]
            sync = frame[1] & DF2_SYNC
            if sync and self._packet:
                self._skipped += len(self._packet)
                self._packet.clear()
            if not sync and not self._packet:
                self._skipped += DF2_FRAME  # a frame before the first SYNC: wait for one
                continue
            self._flush_skipped(events)
            self._packet += frame
            if len(self._packet) == DF2_PACKET:
                events.append(bytes(self._packet))
                self._packet.clear()
        self._flush_skipped(events)
        return events

    def _flush_skipped(self, events: list[FrameEvent]) -> None:
        if self._skipped:
            events.append(Garbage(self._skipped, "resynchronised on Nonin frames"))
            self._skipped = 0
