"""Signal helpers for the audio tests."""

from __future__ import annotations

import numpy as np


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def best_alignment(reference: np.ndarray, recorded: np.ndarray) -> tuple[int, float]:
    """(lag, normalised correlation) of ``reference`` found inside ``recorded`` (FFT-based)."""
    n = len(reference) + len(recorded)
    size = 1 << (n - 1).bit_length()
    spec = np.fft.rfft(recorded, size) * np.conj(np.fft.rfft(reference, size))
    xc = np.fft.irfft(spec, size)[: len(recorded) - len(reference) + 1]
    if len(xc) <= 0:
        return 0, 0.0
    lag = int(np.argmax(xc))
    seg = recorded[lag : lag + len(reference)]
    denom = np.linalg.norm(seg) * np.linalg.norm(reference)
    return lag, float(np.dot(seg, reference) / denom) if denom else 0.0
