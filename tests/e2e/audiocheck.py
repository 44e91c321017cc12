"""Compare decoded audio with the original: align, then correlate.

A jitter buffer may add or drop a frame in a pause to follow the network's delay (time-scale
adjustment), so one global lag does not fit a whole burst. :func:`aligned_correlation` aligns each
250 ms chunk of the original on its own (searching near the previous chunk's lag) and
correlates the re-assembled signal with the original: waveform fidelity, with playout shifts
forgiven but nothing else.
"""

from __future__ import annotations

import numpy as np

RATE = 16_000
CHUNK = RATE // 4  # 250 ms
SEARCH = RATE // 20  # +-50 ms around the previous chunk's lag


def best_lag(a: np.ndarray, b: np.ndarray) -> int:
    """Lag of ``a`` inside ``b`` maximising their cross-correlation (FFT)."""
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    xc = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)
    return int(np.argmax(xc[: max(1, len(b) - len(a) + 1)]))


def aligned_correlation(original: bytes, decoded: bytes) -> float:
    a = np.frombuffer(original, "<i2").astype(np.float64)
    b = np.frombuffer(decoded, "<i2").astype(np.float64)
    b = np.concatenate([b, np.zeros(len(a) + 2 * SEARCH)])
    lag = best_lag(a, b)  # the global start
    out = np.zeros_like(a)
    for start in range(0, len(a), CHUNK):
        chunk = a[start: start + CHUNK]
        lo = max(0, lag + start - SEARCH)
        window = b[lo: lag + start + len(chunk) + SEARCH]
        if np.any(chunk):
            lag = lo + best_lag(chunk, window) - start
        out[start: start + len(chunk)] = b[lag + start: lag + start + len(chunk)]
    return float(np.corrcoef(a, out)[0, 1])
