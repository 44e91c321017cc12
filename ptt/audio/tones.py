"""Signalling tones as lists of 20 ms PCM frames, played locally (never sent on the wire).

Short, soft-edged (5 ms raised-cosine ramps, no clicks) and distinct by contour, in the style of
desk phones and Zello:

=================  ==================================================  ========  =========
tone               sound                                               length    level
=================  ==================================================  ========  =========
talk permit        rising two-note chirp, 880 then 1320 Hz ("bee-deep")  160 ms    -14 dBFS
busy               three short 480+620 Hz pulses (the telephone busy     560 ms    -16 dBFS
                   pair), "you may not talk now"
end of burst       falling two-note, 1320 then 990 Hz, quieter           120 ms    -20 dBFS
                   (a roger beep for listeners)
emergency          alternating 1400 / 950 Hz warble, 4 cycles, loud     1200 ms    -8 dBFS
page               three rising notes, 1047 / 1319 / 1568 Hz ("ding-    330 ms    -16 dBFS
                   ding-ding"): a written page came in
=================  ==================================================  ========  =========

Each tone can be turned off through :class:`ToneSet` (a disabled tone is an empty frame list).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ptt.audio.codec import FRAME_BYTES, SAMPLE_RATE
from ptt.audio.resample import to_int16

RAMP_MS = 5.0


def _samples(ms: float, rate: int) -> int:
    return round(rate * ms / 1000)


def note(
    freqs: Sequence[float], ms: float, level_dbfs: float, rate: int = SAMPLE_RATE
) -> np.ndarray:
    """A tone of one or more summed sine frequencies with raised-cosine ramps; peak at level."""
    n = _samples(ms, rate)
    t = np.arange(n) / rate
    x = sum(np.sin(2 * np.pi * f * t) for f in freqs)
    x = np.asarray(x, dtype=np.float64)
    ramp = min(_samples(RAMP_MS, rate), n // 2)
    if ramp:
        env = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        x[:ramp] *= env
        x[n - ramp :] *= env[::-1]
    peak = np.max(np.abs(x)) if n else 0.0
    if peak > 0:
        x *= 32767 * 10 ** (level_dbfs / 20) / peak
    return x


def gap(ms: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    return np.zeros(_samples(ms, rate))


def to_frames(samples: np.ndarray, frame_bytes: int = FRAME_BYTES) -> list[bytes]:
    """Float samples (int16 scale) as 16-bit frames, the last one padded with silence."""
    pcm = to_int16(samples).tobytes()
    pad = (-len(pcm)) % frame_bytes
    pcm += bytes(pad)
    return [pcm[i : i + frame_bytes] for i in range(0, len(pcm), frame_bytes)]


def talk_permit(rate: int = SAMPLE_RATE) -> list[bytes]:
    """Played to the talker when the floor is granted: a rising 'bee-deep'."""
    x = np.concatenate([note([880], 60, -14, rate), gap(15, rate), note([1320], 85, -14, rate)])
    return to_frames(x, _frame_bytes(rate))


def busy(rate: int = SAMPLE_RATE) -> list[bytes]:
    """Played to the talker when the floor is denied or queued: three low dual-tone pulses."""
    pulse = note([480, 620], 120, -16, rate)
    x = np.concatenate([pulse, gap(100, rate), pulse, gap(100, rate), pulse])
    return to_frames(x, _frame_bytes(rate))


def end_of_burst(rate: int = SAMPLE_RATE) -> list[bytes]:
    """Played to listeners when a talker's burst ends: a soft falling roger beep."""
    x = np.concatenate([note([1320], 50, -20, rate), gap(10, rate), note([990], 60, -20, rate)])
    return to_frames(x, _frame_bytes(rate))


def emergency(rate: int = SAMPLE_RATE) -> list[bytes]:
    """Played on an emergency call: a loud two-tone warble, 1.2 s."""
    cycle = np.concatenate([note([1400], 150, -8, rate), note([950], 150, -8, rate)])
    return to_frames(np.tile(cycle, 4), _frame_bytes(rate))


def page(rate: int = SAMPLE_RATE) -> list[bytes]:
    """Played when a text page comes in (an urgent one plays the emergency tone instead)."""
    x = np.concatenate([note([1047], 90, -16, rate), gap(30, rate), note([1319], 90, -16, rate),
                        gap(30, rate), note([1568], 90, -16, rate)])
    return to_frames(x, _frame_bytes(rate))


def _frame_bytes(rate: int) -> int:
    return rate * 20 // 1000 * 2


TONES = {
    "talk_permit": talk_permit,
    "busy": busy,
    "end_of_burst": end_of_burst,
    "emergency": emergency,
    "page": page,
}


@dataclass(frozen=True, slots=True)
class ToneSet:
    """Which tones are on; ``frames(name)`` is empty for a tone that is off."""

    talk_permit: bool = True
    busy: bool = True
    end_of_burst: bool = True
    emergency: bool = True
    page: bool = True

    def frames(self, name: str) -> list[bytes]:
        if name not in TONES:
            raise KeyError(f"unknown tone {name!r} (one of {', '.join(TONES)})")
        return TONES[name]() if getattr(self, name) else []

    @classmethod
    def none(cls) -> ToneSet:
        return cls(False, False, False, False, False)


def overlay(frame: bytes, tone: bytes) -> bytes:
    """``tone`` mixed over ``frame`` (same length, 16-bit PCM), clipped to the sample range."""
    mixed = np.frombuffer(frame, "<i2").astype(np.int32) + np.frombuffer(tone, "<i2")
    return bytes(np.clip(mixed, -32768, 32767).astype("<i2").tobytes())
