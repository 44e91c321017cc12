"""Signalling tones and level metering."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ptt.audio import tones
from ptt.audio.codec import FRAME_BYTES, SAMPLE_RATE
from ptt.audio.levels import (
    SILENCE_DBFS,
    Level,
    LevelMeter,
    frame_level,
    peak_dbfs,
    rms_dbfs,
    vu_bar,
)
from tests.audio.helpers import samples


def spectrum_peaks(x: np.ndarray, count: int) -> list[float]:
    spec = np.abs(np.fft.rfft(x, 1 << 16))
    freqs = np.fft.rfftfreq(1 << 16, 1 / SAMPLE_RATE)
    peaks = []
    for _ in range(count):
        i = int(np.argmax(spec))
        peaks.append(float(freqs[i]))
        spec[max(0, i - 400) : i + 400] = 0
    return sorted(peaks)


@pytest.mark.parametrize(
    ("name", "ms", "level", "freqs"),
    [
        ("talk_permit", 160, -14, [880, 1320]),
        ("busy", 560, -16, [480, 620]),
        ("end_of_burst", 120, -20, [990, 1320]),
        ("emergency", 1200, -8, [950, 1400]),
    ],
)
def test_tones_as_documented(name: str, ms: int, level: float, freqs: list[int]) -> None:
    frames = tones.TONES[name]()
    assert frames and all(len(f) == FRAME_BYTES for f in frames)
    x = samples(b"".join(frames))
    nonzero = np.nonzero(x)[0]
    length_ms = (nonzero[-1] + 1) * 1000 / SAMPLE_RATE
    assert length_ms == pytest.approx(ms, abs=2)
    assert max(frame_level(f).peak_dbfs for f in frames) == pytest.approx(level, abs=0.1)
    assert spectrum_peaks(x, len(freqs)) == pytest.approx(freqs, abs=3)
    # soft edges: no click at the start or the end
    assert abs(x[0]) < 50 and abs(x[nonzero[-1]]) < 500


def test_tones_are_distinct() -> None:
    rendered = {name: b"".join(make()) for name, make in tones.TONES.items()}
    assert len(set(rendered.values())) == len(tones.TONES) == 5
    assert len({len(v) for v in rendered.values()}) == 5


def test_tone_set_turns_tones_off() -> None:
    quiet = tones.ToneSet(busy=False)
    assert quiet.frames("busy") == []
    assert quiet.frames("talk_permit") == tones.talk_permit()
    assert all(tones.ToneSet.none().frames(n) == [] for n in tones.TONES)
    with pytest.raises(KeyError):
        quiet.frames("fanfare")


def test_tones_at_other_rates() -> None:
    frames = tones.talk_permit(rate=48_000)
    assert all(len(f) == 1920 for f in frames)


def frame_of(x: np.ndarray) -> bytes:
    return np.asarray(x).astype("<i2").tobytes()


def test_levels_of_known_signals() -> None:
    silence = bytes(FRAME_BYTES)
    assert rms_dbfs(silence) == peak_dbfs(silence) == SILENCE_DBFS
    square = frame_of(np.where(np.arange(320) % 2, 32767, -32768))
    assert rms_dbfs(square) == pytest.approx(0.0, abs=0.01)
    assert peak_dbfs(square) == pytest.approx(0.0, abs=0.01)
    t = np.arange(320) / SAMPLE_RATE
    sine = frame_of(np.round(32767 * np.sin(2 * np.pi * 1000 * t)))
    lv = frame_level(sine)
    assert lv.rms_dbfs == pytest.approx(-3.01, abs=0.02)
    assert lv.peak_dbfs == pytest.approx(0.0, abs=0.01)
    quiet = frame_of(np.round(328 * np.sin(2 * np.pi * 1000 * t)))
    assert frame_level(quiet).peak_dbfs == pytest.approx(-40.0, abs=0.05)
    assert frame_level(b"") == Level(SILENCE_DBFS, SILENCE_DBFS)


def test_vu_bar() -> None:
    assert vu_bar(Level(-30.0, -12.0), width=20, ascii=True) == "[##########-----|----]  -30.0 dBFS"
    assert vu_bar(Level(SILENCE_DBFS, SILENCE_DBFS), width=10, ascii=True) == (
        "[----------]   -inf dBFS"
    )
    assert vu_bar(0.0, width=10, ascii=True, numbers=False) == "[##########]"
    assert vu_bar(-60.0, width=10, ascii=True, numbers=False) == "[----------]"
    bar = vu_bar(Level(-20.0, -6.0), width=30)
    assert bar.startswith("[\u2588") and "|" in bar and bar.endswith("-20.0 dBFS")
    assert len(vu_bar(Level(-20.0, -6.0), width=30, numbers=False)) == 32


def test_level_meter_ballistics() -> None:
    t = np.arange(320) / SAMPLE_RATE
    loud = frame_of(np.round(16384 * np.sin(2 * np.pi * 440 * t)))
    meter = LevelMeter()
    lv = meter.update(loud)
    assert lv.rms_dbfs == pytest.approx(-9.03, abs=0.05)  # instant attack
    silence = bytes(FRAME_BYTES)
    after = [meter.update(silence) for _ in range(100)]
    assert after[0].peak_dbfs == lv.peak_dbfs  # peak hold
    assert after[49].peak_dbfs == lv.peak_dbfs  # held for 1 s
    assert after[60].peak_dbfs < lv.peak_dbfs  # then falls
    assert after[60].peak_dbfs == pytest.approx(lv.peak_dbfs - 0.4 * 10, abs=0.5)
    assert after[14].rms_dbfs == pytest.approx(
        lv.rms_dbfs - 10 * np.log10(np.e) * 15 * 20 / 300, abs=0.1
    )
    assert all(a.rms_dbfs >= b.rms_dbfs for a, b in itertools.pairwise(after))
    meter.reset()
    assert meter.rms_dbfs == meter.peak_dbfs == SILENCE_DBFS
