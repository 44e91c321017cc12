"""Frame sources and sinks, and the numpy resampler."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from ptt.audio.codec import FRAME_BYTES, SAMPLE_RATE
from ptt.audio.resample import PcmResampler, Resampler, resample
from ptt.audio.streams import (
    SILENCE,
    ClockedSink,
    FrameSink,
    FrameSource,
    FramesSource,
    MemorySink,
    NullSink,
    PacedSink,
    SilenceSource,
    ToneSource,
    pump,
)
from ptt.audio.wav import WavSink, WavSource
from tests.audio.helpers import samples


def test_protocols_are_met(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ptt.audio.wav import write_wav

    write_wav(tmp_path / "x.wav", bytes(FRAME_BYTES))
    for src in (SilenceSource(), ToneSource(), FramesSource([]), WavSource(tmp_path / "x.wav")):
        assert isinstance(src, FrameSource)
    for sink in (NullSink(), MemorySink(), WavSink(tmp_path / "y.wav"), PacedSink(NullSink())):
        assert isinstance(sink, FrameSink)
        sink.close()
    assert isinstance(PacedSink(NullSink()), ClockedSink)
    assert not isinstance(NullSink(), ClockedSink)


def test_silence_and_tone_sources() -> None:
    async def main() -> tuple[list[bytes], list[bytes]]:
        sil = SilenceSource(frames=3, realtime=False)
        tone = ToneSource(1000, -6.0, frames=10, realtime=False)
        a, b = MemorySink(), MemorySink()
        assert await pump(sil, a) == 3
        assert await pump(tone, b) == 10
        return a.frames, b.frames

    sil, tone = asyncio.run(main())
    assert sil == [SILENCE] * 3
    x = samples(b"".join(tone))
    spec = np.abs(np.fft.rfft(x))
    assert np.argmax(spec) * SAMPLE_RATE / len(x) == pytest.approx(1000, abs=1)
    assert np.max(np.abs(x)) == pytest.approx(32767 * 10 ** (-6 / 20), rel=0.01)
    # phase-continuous: no jump at frame edges (max sample step of a 1 kHz sine)
    assert np.max(np.abs(np.diff(x))) < 2 * np.pi * 1000 / SAMPLE_RATE * 16500


def test_realtime_pacing_and_close() -> None:
    async def main() -> float:
        src = SilenceSource()
        t0 = time.monotonic()
        for _ in range(26):
            await src.read()
        elapsed = time.monotonic() - t0
        src.close()
        assert await src.read() is None
        return elapsed

    assert 0.45 <= asyncio.run(main()) < 0.8


def test_paced_sink_clock() -> None:
    async def main() -> tuple[float, float]:
        inner = NullSink()
        sink = PacedSink(inner)
        t0 = time.monotonic()
        for _ in range(26):
            await sink.wait_ready()
            sink.write(SILENCE)
        paced = time.monotonic() - t0
        fast = PacedSink(NullSink(), realtime=False)
        t0 = time.monotonic()
        for _ in range(100):
            await fast.wait_ready()
        assert inner.frames == 26
        return paced, time.monotonic() - t0

    paced, fast = asyncio.run(main())
    assert 0.45 <= paced < 0.8 and fast < 0.1


def test_frames_source_and_pump_limit() -> None:
    async def main() -> MemorySink:
        sink = MemorySink()
        assert await pump(FramesSource([b"a", b"b", b"c"]), sink, max_frames=2) == 2
        return sink

    assert asyncio.run(main()).frames == [b"a", b"b"]


@pytest.mark.parametrize(
    ("src", "dst"),
    [(16_000, 48_000), (48_000, 16_000), (44_100, 16_000), (16_000, 22_050), (8_000, 16_000)],
)
def test_resampler_accuracy_and_streaming(src: int, dst: int) -> None:
    t = np.arange(src) / src
    x = 10_000 * np.sin(2 * np.pi * 700 * t)
    y = resample(x, src, dst)
    assert len(y) == -(-src * dst // src)
    ideal = 10_000 * np.sin(2 * np.pi * 700 * np.arange(len(y)) / dst)
    assert np.max(np.abs(y - ideal)[200:-200]) < 1.0  # no delay, no gain error
    r = Resampler(src, dst)
    rng = np.random.default_rng(1)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 700))
        parts.append(r.process(x[i : i + n]))
        i += n
    parts.append(r.flush())
    assert np.allclose(np.concatenate(parts), y)
    assert len(r.flush()) == 0


def test_resampler_identity_and_pcm() -> None:
    x = np.arange(10.0)
    assert resample(x, 16_000, 16_000) is x
    pcm = (np.arange(320) * 50).astype("<i2").tobytes()
    assert PcmResampler(16_000, 16_000).process(pcm) == pcm
    conv = PcmResampler(16_000, 48_000)
    out = conv.process(pcm) + conv.flush()
    assert len(out) == 3 * len(pcm)
    with pytest.raises(ValueError):
        Resampler(0, 16_000)
