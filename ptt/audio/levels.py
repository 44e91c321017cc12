"""Level metering: RMS and peak per frame in dBFS, meter ballistics, and a text VU bar.

0 dBFS is a full-scale square wave (RMS 32768); a full-scale sine reads -3 dBFS RMS and 0 dBFS
peak. Digital silence reads :data:`SILENCE_DBFS` instead of minus infinity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ptt.audio.codec import FRAME_MS

SILENCE_DBFS = -96.0
FULL_SCALE = 32768.0
# a file whose loudest sample stays below this holds nothing a listener could hear: paging
# with it would take the floor for silence (dither and DC offsets sit far below it)
AUDIBLE_PEAK_DBFS = -60.0


@dataclass(frozen=True, slots=True)
class Level:
    rms_dbfs: float
    peak_dbfs: float


def _db(value: float) -> float:
    if value <= 0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20 * math.log10(value / FULL_SCALE))


def _samples(frame: bytes) -> np.ndarray:
    return np.frombuffer(frame, dtype="<i2", count=len(frame) // 2).astype(np.float64)


def rms_dbfs(frame: bytes) -> float:
    x = _samples(frame)
    return _db(float(np.sqrt(np.mean(x * x)))) if len(x) else SILENCE_DBFS


def peak_dbfs(frame: bytes) -> float:
    x = _samples(frame)
    return _db(float(np.max(np.abs(x)))) if len(x) else SILENCE_DBFS


def audible(pcm: bytes) -> bool:
    """True when ``pcm`` (16-bit) has a sample at or above :data:`AUDIBLE_PEAK_DBFS`."""
    return peak_dbfs(pcm) >= AUDIBLE_PEAK_DBFS


def frame_level(frame: bytes) -> Level:
    """RMS and peak of one frame of 16-bit PCM."""
    x = _samples(frame)
    if not len(x):
        return Level(SILENCE_DBFS, SILENCE_DBFS)
    return Level(_db(float(np.sqrt(np.mean(x * x)))), _db(float(np.max(np.abs(x)))))


class LevelMeter:
    """Meter ballistics for a display: fast attack, 300 ms RMS release, 1 s peak hold then -20 dB/s.

    Feed every frame with :meth:`update`; read :attr:`rms_dbfs` and :attr:`peak_dbfs`.
    """

    def __init__(
        self, release_ms: float = 300.0, hold_ms: float = 1000.0, fall_db_per_s: float = 20.0
    ) -> None:
        self._release = math.exp(-FRAME_MS / release_ms)
        self._hold_frames = int(hold_ms / FRAME_MS)
        self._fall = fall_db_per_s * FRAME_MS / 1000
        self.rms_dbfs = SILENCE_DBFS
        self.peak_dbfs = SILENCE_DBFS
        self._held = 0

    def update(self, frame: bytes) -> Level:
        lv = frame_level(frame)
        if lv.rms_dbfs >= self.rms_dbfs:
            self.rms_dbfs = lv.rms_dbfs
        else:  # exponential release, in the power domain
            p = 10 ** (self.rms_dbfs / 10) * self._release
            self.rms_dbfs = max(lv.rms_dbfs, 10 * math.log10(p) if p > 0 else SILENCE_DBFS)
        if lv.peak_dbfs >= self.peak_dbfs:
            self.peak_dbfs, self._held = lv.peak_dbfs, 0
        elif self._held < self._hold_frames:
            self._held += 1
        else:
            self.peak_dbfs = max(lv.peak_dbfs, self.peak_dbfs - self._fall, SILENCE_DBFS)
        return Level(self.rms_dbfs, self.peak_dbfs)

    def reset(self) -> None:
        self.rms_dbfs = self.peak_dbfs = SILENCE_DBFS
        self._held = 0


def vu_bar(
    level: Level | float,
    width: int = 30,
    floor_dbfs: float = -60.0,
    ascii: bool = False,
    numbers: bool = True,
) -> str:
    """A one-line meter: filled to the RMS level, ``|`` at the peak, and the RMS in dBFS.

    >>> vu_bar(Level(-30.0, -12.0), width=20, ascii=True)
    '[##########-----|----]  -30.0 dBFS'
    """
    if isinstance(level, Level):
        rms, peak = level.rms_dbfs, level.peak_dbfs
    else:
        rms, peak = float(level), None

    def cells(db: float) -> int:
        frac = (min(0.0, db) - floor_dbfs) / -floor_dbfs
        return max(0, min(width, round(frac * width)))

    full, empty = ("#", "-") if ascii else ("\u2588", "\u00b7")
    n = cells(rms)
    bar = [full] * n + [empty] * (width - n)
    if peak is not None and peak > floor_dbfs:
        p = min(width - 1, max(0, cells(peak) - 1))
        if p >= n:
            bar[p] = "|"
    text = "[" + "".join(bar) + "]"
    if numbers:
        shown = "  -inf" if rms <= SILENCE_DBFS else f"{rms:6.1f}"
        text += f" {shown} dBFS"
    return text
