"""A burst comes out of the jitter buffer no longer than it went in (within 100 ms), in virtual
time: loss, the copies that repair it, scheduling jitter, and a lost END_OF_BURST packet."""

from __future__ import annotations

import random

import pytest

from ptt.media.jitter import FRAME_SECONDS, JitterBuffer, JitterConfig, Source
from ptt.media.packet import VoicePayload

F = FRAME_SECONDS
PHASE = 0.0031
MAX_STRETCH = 5  # frames: 100 ms


def frame(seq: int) -> bytes:
    return b"F%05d" % seq + b"." * 60


def spread(seq: int, offsets: tuple[int, ...] = (1, 3)) -> VoicePayload:
    return VoicePayload(frame(seq), tuple((o, frame(seq - o)) for o in offsets if o <= seq))


def play(jb: JitterBuffer, arrivals: list[tuple[float, int, VoicePayload, bool]], ticks: int,
         finish_at: float | None = None) -> list[Source]:
    """Sources of the frames played, one pop per 20 ms tick; ``finish()`` at ``finish_at``."""
    pending = sorted(arrivals, key=lambda a: a[0])
    out: list[Source] = []
    for i in range(ticks):
        now = i * F + PHASE
        while pending and pending[0][0] <= now:
            t, seq, p, end = pending.pop(0)
            jb.add(seq, p, t, end)
        if finish_at is not None and now >= finish_at:
            jb.finish()
            finish_at = None
        item = jb.pop(now)
        if item is not None:
            out.append(item.source)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_a_lossy_jittery_burst_is_not_stretched(seed: int) -> None:
    # 10 s at 10 % loss with copies at (1, 3), on a host whose scheduling delays packets by
    # 0-60 ms: the buffer may grow to wait for copies, but the burst plays at most 100 ms long
    rng = random.Random(seed)
    n = 500
    arrivals = [(i * F + 0.002 + rng.random() * 0.060, i, spread(i), i == n - 1)
                for i in range(n) if rng.random() >= 0.10 or i == n - 1]
    jb = JitterBuffer()
    out = play(jb, arrivals, n + 100)
    assert jb.ended
    assert len(out) - n <= MAX_STRETCH, (len(out), jb.stats)
    assert jb.stats.concealed <= 0.03 * n  # waiting was still allowed where it paid


def test_lost_end_packet_ends_at_the_last_frame_once_finished() -> None:
    # the END_OF_BURST packet (frame 29) is lost; the floor went idle while frames were still
    # held: the buffer plays them and stops, instead of concealing max_conceal frames of nothing
    arrivals = [(i * F + 0.002, i, spread(i), i == 29) for i in range(29)]
    jb = JitterBuffer()
    out = play(jb, arrivals, 60, finish_at=29 * F + 0.005)
    assert out == [Source.RECEIVED] * 29
    assert jb.ended and not jb.playing


def test_finish_restores_missing_frames_between_those_held() -> None:
    # frame 20 is lost, its copies ride in 21 and 23; finish() comes early: 20 is still restored
    arrivals = [(i * F + 0.002, i, spread(i), i == 25) for i in range(26) if i != 20]
    jb = JitterBuffer()
    out = play(jb, arrivals, 60, finish_at=25 * F + 0.003)
    assert len(out) == 26 and out[20] is Source.REDUNDANCY
    assert jb.ended


def test_clock_drift_allowance_is_bounded() -> None:
    cfg = JitterConfig()
    # a 5 s burst may grow by max_growth plus one frame for clock drift: within 100 ms
    assert cfg.max_growth + 250 // cfg.drift_frames <= MAX_STRETCH
