"""Frame sources and sinks: the small protocols every audio end of ptt speaks.

A frame is :data:`~ptt.audio.codec.FRAME_BYTES` bytes: 20 ms of 16-bit little-endian mono PCM at
:data:`~ptt.audio.codec.SAMPLE_RATE`. Sources are read from the event loop (``await src.read()``,
``None`` at the end); sinks take frames without blocking (``sink.write(frame)``). A
:class:`ClockedSink` also tells the caller when it wants its next frame, so a jitter buffer's
playout follows the sink's clock (a sound card's, or :class:`PacedSink`'s wall clock for files).

Implementations: :class:`~ptt.audio.devices.CaptureSource` and
:class:`~ptt.audio.devices.PlaybackSink` (sound devices), :class:`~ptt.audio.wav.WavSource` and
:class:`~ptt.audio.wav.WavSink` (files), and here :class:`SilenceSource`, :class:`ToneSource`,
:class:`FramesSource`, :class:`NullSink`, :class:`MemorySink`, :class:`PacedSink`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import numpy as np

from ptt.audio.codec import FRAME_BYTES, FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE

SILENCE = bytes(FRAME_BYTES)


@runtime_checkable
class FrameSource(Protocol):
    async def read(self) -> bytes | None:
        """The next frame (exactly FRAME_BYTES), or None when the source has ended."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class FrameSink(Protocol):
    def write(self, frame: bytes) -> None:
        """Take one frame; never blocks."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class ClockedSink(FrameSink, Protocol):
    async def wait_ready(self) -> None:
        """Return when the sink wants its next frame (about every 20 ms while it plays)."""
        ...


class Pacer:
    """Releases callers every 20 ms on the loop's clock (no drift: the schedule is absolute)."""

    def __init__(self) -> None:
        self._next: float | None = None

    async def tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._next is None or self._next < now - 0.2:  # first call, or stalled: restart
            self._next = now
        delay = self._next - now
        self._next += FRAME_SECONDS
        if delay > 0:
            await asyncio.sleep(delay)


class FramesSource:
    """Frames from an iterable, optionally paced at real time; ends when the iterable does."""

    def __init__(self, frames: Iterable[bytes], realtime: bool = False) -> None:
        self._it = iter(frames)
        self._pacer = Pacer() if realtime else None
        self._closed = False

    async def read(self) -> bytes | None:
        if self._closed:
            return None
        frame = next(self._it, None)
        if frame is None:
            return None
        if self._pacer:
            await self._pacer.tick()
        return frame

    def close(self) -> None:
        self._closed = True


class SilenceSource:
    """Endless (or ``frames`` long) silence, paced at real time by default."""

    def __init__(self, frames: int | None = None, realtime: bool = True) -> None:
        self._left = frames
        self._pacer = Pacer() if realtime else None
        self._closed = False

    async def read(self) -> bytes | None:
        if self._closed or self._left == 0:
            return None
        if self._left is not None:
            self._left -= 1
        if self._pacer:
            await self._pacer.tick()
        return SILENCE

    def close(self) -> None:
        self._closed = True


class ToneSource:
    """A continuous sine tone (phase-continuous across frames), paced at real time by default."""

    def __init__(
        self,
        freq: float = 440.0,
        level_dbfs: float = -12.0,
        frames: int | None = None,
        realtime: bool = True,
    ) -> None:
        self._step = 2 * math.pi * freq / SAMPLE_RATE
        self._amp = 32767 * 10 ** (level_dbfs / 20)
        self._phase = 0.0
        self._left = frames
        self._pacer = Pacer() if realtime else None
        self._closed = False

    async def read(self) -> bytes | None:
        if self._closed or self._left == 0:
            return None
        if self._left is not None:
            self._left -= 1
        ph = self._phase + self._step * np.arange(FRAME_SAMPLES)
        self._phase = (self._phase + self._step * FRAME_SAMPLES) % (2 * math.pi)
        frame: bytes = np.rint(self._amp * np.sin(ph)).astype("<i2").tobytes()
        if self._pacer:
            await self._pacer.tick()
        return frame

    def close(self) -> None:
        self._closed = True


class NullSink:
    """Discards frames (counts them)."""

    def __init__(self) -> None:
        self.frames = 0

    def write(self, frame: bytes) -> None:
        self.frames += 1

    def close(self) -> None:
        pass


class MemorySink:
    """Keeps every frame in memory (tests, level meters)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closed = False

    def write(self, frame: bytes) -> None:
        self.frames.append(bytes(frame))

    def pcm(self) -> bytes:
        return b"".join(self.frames)

    def close(self) -> None:
        self.closed = True


class PacedSink:
    """Gives any sink a 20 ms wall clock, so playout into a file or nowhere runs at real time."""

    def __init__(self, sink: FrameSink, realtime: bool = True) -> None:
        self.sink = sink
        self._pacer = Pacer() if realtime else None

    async def wait_ready(self) -> None:
        if self._pacer:
            await self._pacer.tick()
        else:
            await asyncio.sleep(0)

    def write(self, frame: bytes) -> None:
        self.sink.write(frame)

    def close(self) -> None:
        self.sink.close()


async def pump(source: FrameSource, sink: FrameSink, max_frames: int | None = None) -> int:
    """Copy frames from source to sink until the source ends; returns the number copied."""
    n = 0
    while max_frames is None or n < max_frames:
        frame = await source.read()
        if frame is None:
            break
        sink.write(frame)
        n += 1
    return n
