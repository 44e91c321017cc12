"""When the jitter buffer plays a frame *before* a missing one (``Source.INSERTED``) to wait for
it: only while a packet that can still bring it back may come, whatever the phase of the
player's 20 ms ticks against the talker's frames.

The case is the real-command smoke test's (tests/bench/test_bench_voice_live.py: English, 10 %
random loss on the listener's path, the proxy's seed 1): copies at offsets (1, 2), and the
proxy drops packets 103, 104 and 105. Frame 103's copies ride in 104 and 105 only, so nothing
can bring it back. Where the burst's first tick fell set its start delay to 40-60 ms; a start
near 45 ms inserted two frames before concealing 103 (2.60 PESQ), a start near 55 ms one
(3.27), about half the runs each."""

from __future__ import annotations

import random

from ptt.media.jitter import FRAME_SECONDS, JitterBuffer, PlayoutItem, Source
from ptt.media.packet import VoicePayload

F = FRAME_SECONDS
TRANSIT = 0.001  # loopback
# the datagrams the proxy dropped in that run (its seed fixes them; the same in every run)
DROPPED = frozenset({9, 28, 32, 38, 47, 50, 65, 82, 85, 92, 100, 103, 104, 105, 108, 110, 112})
# ticks at these phases: the first one due comes 45 or 55 ms after frame 0 arrived
EARLY, LATE = 0.006, 0.016


def frame(seq: int) -> bytes:
    return b"F%05d" % seq + b"." * 60  # speech-sized: no pause anywhere


def copies(seq: int, offsets: tuple[int, ...]) -> VoicePayload:
    return VoicePayload(frame(seq), tuple((o, frame(seq - o)) for o in offsets if o <= seq))


def replay(phase: float, offsets: tuple[int, ...] = (1, 2), n: int = 140,
           dropped: frozenset[int] = DROPPED, jitter: float = 0.0,
           seed: int = 1) -> tuple[JitterBuffer, list[PlayoutItem]]:
    """Frame ``i`` sent at ``i * 20 ms``, arriving ``TRANSIT`` (plus up to ``jitter``) later
    unless dropped; the player pops on ticks at ``phase + k * 20 ms``. Virtual time."""
    rng = random.Random(seed)
    pending = sorted((i * F + TRANSIT + jitter * rng.random(), i) for i in range(n)
                     if i not in dropped)
    jb = JitterBuffer()
    out = []
    for k in range(n + 30):
        now = phase + k * F
        while pending and pending[0][0] <= now:
            t, seq = pending.pop(0)
            jb.add(seq, copies(seq, offsets), t, end=seq == n - 1)
        item = jb.pop(now)
        if item is not None:
            out.append(item)
    return jb, out


def inserted_before(out: list[PlayoutItem], seq: int) -> int:
    return sum(1 for it in out if it.seq == seq and it.source is Source.INSERTED)


def test_the_two_phases_start_45_and_55_ms_deep() -> None:
    for phase, start in ((EARLY, 0.045), (LATE, 0.055)):
        jb, out = replay(phase, n=20, dropped=frozenset())
        assert abs(jb.current_delay - start) < 1e-6, phase  # type: ignore[operator]


def test_a_frame_no_packet_can_bring_back_is_waited_for_once_at_either_phase() -> None:
    # 103's copies were in 104 and 105. At its tick neither is in; a frame later 106 is,
    # carrying copies of 105 and 104 only: the packets before it are lost, and 103 is
    # concealed. One frame inserted at either phase (a stall would hold 106 back too), and the
    # two phases play the same frames from the same sources.
    plays = {}
    for phase in (EARLY, LATE):
        jb, out = replay(phase)
        assert inserted_before(out, 103) == 1, (phase, [(it.seq, it.source.value) for it in out
                                                        if 100 <= it.seq <= 106])
        assert [it.source for it in out if it.seq == 103][-1] is Source.CONCEALED
        assert jb.stats.concealed == 1 and jb.stats.inserted == 1
        plays[phase] = [(it.seq, it.source) for it in out]
    assert plays[EARLY] == plays[LATE]


def test_a_frame_whose_copy_is_still_coming_is_waited_for_at_either_phase() -> None:
    # with a third copy (offsets 1, 2, 3) packet 106 carries 103, 60 ms after 103's own time:
    # below that delay the buffer inserts one frame and then plays 103 from the copy
    for phase in (EARLY, LATE):
        jb, out = replay(phase, offsets=(1, 2, 3))
        assert inserted_before(out, 103) == 1, phase
        assert [it.source for it in out if it.seq == 103][-1] is Source.REDUNDANCY
        assert jb.stats.concealed == 0


def test_on_a_jittery_path_copies_that_may_still_come_are_waited_for() -> None:
    # packets 0-8 ms late at random (a loaded host): a copy a few ms past its time is within
    # the path's jitter and still waited for. With copies at (1, 2, 3) every run of the
    # pattern (three at most) is repaired, at either phase, and the burst grows by what the
    # copies needed only
    for phase in (EARLY, LATE):
        for seed in (1, 2, 3):
            jb, out = replay(phase, offsets=(1, 2, 3), jitter=0.008, seed=seed)
            assert jb.stats.concealed == 0, (phase, seed, jb.stats)
            heard = [it.seq for it in out if it.source in (Source.RECEIVED, Source.REDUNDANCY)]
            assert heard == list(range(140))
            assert jb.stats.inserted <= 3, (phase, seed, jb.stats)
