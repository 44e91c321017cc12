"""Jitter buffer on opaque payloads, in virtual time: packets at ``seq * 20 ms`` plus a delay,
one ``pop`` per 20 ms tick."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptt.media.jitter import (
    FRAME_SECONDS,
    JitterBuffer,
    JitterConfig,
    PlayoutItem,
    Source,
    seq_add,
    seq_diff,
    seq_gt,
)
from ptt.media.packet import VoicePayload

F = FRAME_SECONDS
PHASE = 0.0031  # ticks fall between arrivals


def frame(seq: int) -> bytes:
    return b"F%05d" % seq + b"." * 60  # a "speech-sized" frame named after its seq


def payload(seq: int, k: int = 0, first: int = 0) -> VoicePayload:
    """Frame ``seq`` with copies of up to ``k`` previous frames (not before the burst's
    ``first``)."""
    n = min(k, seq_diff(seq, first))
    return VoicePayload(frame(seq), tuple((i, frame(seq_add(seq, -i))) for i in range(1, n + 1)))


def run(
    jb: JitterBuffer,
    arrivals: list[tuple[float, int, VoicePayload, bool]],
    ticks: int,
    t0: float = 0.0,
) -> list[PlayoutItem | None]:
    """Deliver ``(time, seq, payload, end)`` arrivals and pop once per tick from ``t0``."""
    pending = sorted(arrivals, key=lambda a: a[0])
    out: list[PlayoutItem | None] = []
    for i in range(ticks):
        now = t0 + i * F + PHASE
        while pending and pending[0][0] <= now:
            t, seq, p, end = pending.pop(0)
            jb.add(seq, p, t, end)
        out.append(jb.pop(now))
    return out


def burst(
    n: int,
    first: int = 0,
    k: int = 0,
    delay: float = 0.002,
    drop: frozenset[int] = frozenset(),
    t0: float = 0.0,
) -> list[tuple[float, int, VoicePayload, bool]]:
    """Arrivals of an n-frame burst starting at seq ``first``, minus the indices in ``drop``."""
    return [
        (t0 + i * F + delay, seq_add(first, i), payload(seq_add(first, i), k, first), i == n - 1)
        for i in range(n)
        if i not in drop
    ]


def played(items: list[PlayoutItem | None]) -> list[PlayoutItem]:
    """The frames played, in order, without the ones inserted to grow the delay."""
    return [it for it in items if it is not None and it.source is not Source.INSERTED]


# -- sequence helpers ------------------------------------------------------------------------------


def test_seq_helpers_wrap() -> None:
    assert seq_add(65535, 1) == 0
    assert seq_add(0, -1) == 65535
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_gt(2, 65534)
    assert not seq_gt(65534, 2)


@given(st.integers(0, 65535), st.integers(-32768, 32767))
def test_seq_diff_inverts_seq_add(a: int, d: int) -> None:
    assert seq_diff(seq_add(a, d), a) == d


def test_capacity_must_be_power_of_two() -> None:
    with pytest.raises(ValueError):
        JitterConfig(capacity=100)


# -- ordinary playout -----------------------------------------------------------------------------


def test_in_order_burst_plays_every_frame_then_ends() -> None:
    jb = JitterBuffer()
    out = run(jb, burst(20), 30)
    items = played(out)
    assert [it.seq for it in items] == list(range(20))
    assert all(it.source is Source.RECEIVED and it.packet == frame(it.seq) for it in items)
    assert [it.last for it in items] == [False] * 19 + [True]
    assert jb.ended and not jb.playing
    # the first frame waits for the initial target of 40 ms after its arrival
    first_tick = next(i for i, it in enumerate(out) if it is not None)
    assert first_tick * F + PHASE >= 0.002 + 0.040
    assert (first_tick - 1) * F + PHASE < 0.002 + 0.040
    assert jb.stats.received == 20 and jb.stats.lost == 0


def test_nothing_to_play_before_a_burst() -> None:
    jb = JitterBuffer()
    assert jb.pop(0.0) is None
    assert not jb.playing


def test_reordered_packets_play_in_order() -> None:
    arrivals = burst(30)
    # swap the arrival times of neighbours: 5 overtakes 4, 11 arrives after 12 and 13
    t = {a[1]: a[0] for a in arrivals}
    t[4], t[5] = t[5], t[4]
    t[11] = t[13] + 0.001
    arrivals = [(t[seq], seq, p, end) for _, seq, p, end in arrivals]
    jb = JitterBuffer()
    items = played(run(jb, arrivals, 40))
    assert [it.seq for it in items] == list(range(30))
    assert all(it.source is Source.RECEIVED for it in items)
    assert jb.stats.late == 0


def test_duplicates_are_dropped_and_counted() -> None:
    arrivals = burst(10)
    arrivals += [(t + 0.003, seq, p, end) for t, seq, p, end in arrivals if seq in (2, 3, 9)]
    jb = JitterBuffer()
    items = played(run(jb, arrivals, 20))
    assert [it.seq for it in items] == list(range(10))
    assert jb.stats.duplicates == 3
    assert jb.stats.received == 10


def test_duplicate_of_a_played_frame_is_a_duplicate_not_late() -> None:
    jb = JitterBuffer()
    arrivals = burst(10)
    arrivals.append((0.150, 1, payload(1), False))  # frame 1 has long been played by then
    run(jb, arrivals, 20)
    assert jb.stats.duplicates == 1
    assert jb.stats.late == 0


def test_late_frame_is_dropped_and_counted() -> None:
    arrivals = burst(20, drop=frozenset({8}))
    arrivals.append((8 * F + 0.002 + 0.200, 8, payload(8), False))  # 200 ms late
    jb = JitterBuffer()
    items = played(run(jb, arrivals, 40))
    assert [it.seq for it in items] == list(range(20))
    assert items[8].source is Source.FEC  # due before it came: the next packet stands in
    assert jb.stats.late == 1
    assert jb.stats.lost == 1


# -- loss and recovery order ---------------------------------------------------------------------


def test_lost_frame_uses_fec_of_the_next_packet_without_redundancy() -> None:
    jb = JitterBuffer()
    items = played(run(jb, burst(12, drop=frozenset({5})), 20))
    assert items[5] == PlayoutItem(5, Source.FEC, frame(6))
    assert items[6] == PlayoutItem(6, Source.RECEIVED, frame(6))
    assert jb.stats.recovered_fec == 1 and jb.stats.lost == 1


def test_redundancy_is_preferred_to_fec() -> None:
    jb = JitterBuffer()
    items = played(run(jb, burst(12, k=1, drop=frozenset({5})), 20))
    assert items[5] == PlayoutItem(5, Source.REDUNDANCY, frame(5))
    assert jb.stats.recovered_redundancy == 1 and jb.stats.recovered_fec == 0


def test_two_losses_in_a_row_recovered_from_the_second_copy() -> None:
    # two packets lost: frame 5 exists only in packet 7's redundancy; the buffer must look that
    # far ahead, which it does once losses raise its target (here: a generous fixed start)
    jb = JitterBuffer(JitterConfig(initial_delay=0.080))
    items = played(run(jb, burst(12, k=2, drop=frozenset({5, 6})), 25))
    assert items[5] == PlayoutItem(5, Source.REDUNDANCY, frame(5))
    assert items[6] == PlayoutItem(6, Source.REDUNDANCY, frame(6))


def test_fec_only_when_no_copy_and_plc_last() -> None:
    # k=1: frames 5 and 6 lost. 5 has no copy (6 is lost) but 7's FEC is for 6, not 5: conceal.
    # 6 is then restored exactly from 7's redundancy. Frame 9 lost with 10 lost too and 11
    # absent from k=1's reach -> 9 concealed; 10 from 11's copy.
    jb = JitterBuffer(JitterConfig(initial_delay=0.080))
    items = played(run(jb, burst(14, k=1, drop=frozenset({5, 6, 9, 10})), 25))
    assert [items[i].source for i in (5, 6, 9, 10)] == [
        Source.CONCEALED,
        Source.REDUNDANCY,
        Source.CONCEALED,
        Source.REDUNDANCY,
    ]
    assert items[5].packet is None
    # without redundancy: frame 5 lost, 6 present -> FEC of 6; frame 9 and 10 lost -> 9 PLC, 10 FEC
    jb = JitterBuffer(JitterConfig(initial_delay=0.080))
    items = played(run(jb, burst(14, k=0, drop=frozenset({5, 9, 10})), 25))
    assert [items[i].source for i in (5, 9, 10)] == [Source.FEC, Source.CONCEALED, Source.FEC]
    s = jb.stats
    assert (s.recovered_redundancy, s.recovered_fec, s.concealed, s.lost) == (0, 2, 1, 3)


def test_lost_first_frames_restored_from_redundancy_at_burst_start() -> None:
    jb = JitterBuffer()
    items = played(run(jb, burst(10, k=2, drop=frozenset({0, 1})), 20))
    assert [it.seq for it in items] == list(range(10))
    assert [it.source for it in items[:3]] == [Source.REDUNDANCY] * 2 + [Source.RECEIVED]


def test_recovery_looks_ahead_once_losses_are_seen() -> None:
    # 10% loss: the target grows by the redundancy depth, so double losses get exact copies too
    rng = random.Random(3)
    drop = frozenset(i for i in range(500) if rng.random() < 0.10)
    jb = JitterBuffer()
    items = played(run(jb, burst(500, k=2, drop=drop), 520))
    assert [it.seq for it in items] == list(range(500))
    assert jb.target_delay >= 2 * F + jb.config.margin
    later = [it for it in items[100:] if it.seq in drop]
    assert sum(it.source is Source.REDUNDANCY for it in later) >= len(later) - 2


# -- sequence wrap and resets --------------------------------------------------------------------


def test_sequence_wraps_around() -> None:
    jb = JitterBuffer()
    first = 65530
    arrivals = burst(15, first=first, k=1, drop=frozenset({6}))  # index 6 is seq 0
    items = played(run(jb, arrivals, 25))
    assert [it.seq for it in items] == [seq_add(first, i) for i in range(15)]
    assert items[6] == PlayoutItem(0, Source.REDUNDANCY, frame(0))
    assert items[-1].last


def test_large_misorder_restarts_the_stream() -> None:
    jb = JitterBuffer()
    run(jb, burst(10, first=100)[:-1], 8)  # playing, no END yet
    # the sender restarted far away: the buffer follows it instead of waiting forever
    arrivals = burst(10, first=30_000, t0=0.2)
    items = played(run(jb, arrivals, 20, t0=0.2))
    assert jb.stats.resets == 1
    assert [it.seq for it in items if it.seq >= 30_000] == list(range(30_000, 30_010))


# -- burst boundaries ---------------------------------------------------------------------------


def test_after_the_end_stragglers_are_late_and_reset_starts_the_next_burst() -> None:
    jb = JitterBuffer()
    run(jb, burst(10), 20)
    assert jb.ended
    assert not jb.add(9, payload(9), 0.5)  # duplicate of the END packet
    assert not jb.add(3, payload(3), 0.5)
    assert jb.pop(0.52) is None
    jb.reset()
    items = played(run(jb, burst(5, first=0, t0=1.0), 12, t0=1.0))
    assert [it.seq for it in items] == list(range(5))
    assert jb.stats.bursts == 2


def test_lost_end_packet_stops_after_max_conceal() -> None:
    cfg = JitterConfig(max_conceal=4)
    jb = JitterBuffer(cfg)
    out = run(jb, burst(10, drop=frozenset({9})), 30)
    items = played(out)
    assert [it.source for it in items[9:]] == [Source.CONCEALED] * 4
    assert out[-1] is None and not jb.playing


def test_playout_resumes_after_an_outage() -> None:
    cfg = JitterConfig(max_conceal=5)
    jb = JitterBuffer(cfg)
    out = run(jb, burst(60, drop=frozenset(range(10, 30))), 80)
    items = played(out)
    seqs = [it.seq for it in items if it.source is Source.RECEIVED]
    assert seqs == list(range(10)) + list(range(30, 60))
    assert sum(it.source is Source.CONCEALED for it in items) == 5
    assert items[-1].last


# -- adaptive delay ------------------------------------------------------------------------------


def test_delay_grows_under_jitter_and_shrinks_when_calm() -> None:
    rng = random.Random(11)
    # 5 s of a steady path, 10 s of 0-60 ms jitter, then 30 s steady again
    n_calm, n_jitter, n_after = 250, 500, 1500
    delays = (
        [0.002] * n_calm
        + [0.002 + rng.random() * 0.060 for _ in range(n_jitter)]
        + [0.002] * n_after
    )
    arrivals = [(i * F + d, i & 0xFFFF, payload(i & 0xFFFF), False) for i, d in enumerate(delays)]
    jb = JitterBuffer()
    pending = sorted(arrivals, key=lambda a: a[0])
    targets: list[float] = []
    currents: list[float] = []
    inserted: list[int] = []
    late: list[int] = []
    for i in range(len(delays)):
        now = i * F + PHASE
        while pending and pending[0][0] <= now:
            t, seq, p, end = pending.pop(0)
            jb.add(seq, p, t, end)
        jb.pop(now)
        targets.append(jb.target_delay)
        currents.append(jb.current_delay or 0.0)
        inserted.append(jb.stats.inserted)
        late.append(jb.stats.late)
    calm_end, jitter_end = n_calm - 1, n_calm + n_jitter - 1
    assert currents[calm_end] <= 0.060
    # grown within the first second of jitter, by inserting frames
    assert targets[n_calm + 50] >= 0.050
    assert targets[jitter_end] >= 0.055
    assert currents[jitter_end] >= 0.055
    assert inserted[jitter_end] >= 1
    # frames came late only while the delay was growing
    assert late[jitter_end] - late[n_calm + 100] <= 0.02 * n_jitter
    # shrunk once calm, slowly: not within the first second, back near the floor at the end
    assert targets[jitter_end + 50] >= 0.050
    assert targets[-1] <= 0.025
    assert currents[-1] <= 0.045
    assert jb.stats.skipped >= 2
    assert jb.stats.lost == jb.stats.late  # nothing was lost but what came too late


def test_delay_estimate_survives_reset() -> None:
    rng = random.Random(5)
    arrivals = [(i * F + 0.002 + rng.random() * 0.060, i, payload(i), i == 299) for i in range(300)]
    jb = JitterBuffer()
    run(jb, arrivals, 320)
    grown = jb.target_delay
    assert grown > 0.050
    jb.reset()
    out = run(jb, burst(5, t0=10.0), 10, t0=10.0)
    first_tick = next(i for i, it in enumerate(out) if it is not None)
    assert first_tick * F + PHASE >= 0.002 + grown - F  # the new burst starts as deep


def spread(seq: int, offsets: tuple[int, ...] = (1, 3)) -> VoicePayload:
    """Frame ``seq`` with copies at ``offsets`` (none before seq 0), as the sender makes them."""
    return VoicePayload(frame(seq), tuple((o, frame(seq - o)) for o in offsets if o <= seq))


def test_missing_frame_waits_for_a_later_copy_once_losses_are_seen() -> None:
    # a first loss switches look-ahead on (target + 3 frames); then frames 10 and 11 are lost:
    # 10's only copy rides in packet 13, three frames on. The buffer plays concealed frames
    # before frame 10 until that copy is in, and then frame 10 itself, exactly.
    jb = JitterBuffer(JitterConfig(loss_on=0.001))
    arrivals = [(i * F + 0.002, i, spread(i), i == 29) for i in range(30) if i not in (3, 10, 11)]
    out = [it for it in run(jb, arrivals, 50) if it is not None]
    sources = [(it.seq, it.source) for it in out]
    assert (3, Source.REDUNDANCY) in sources
    i10 = sources.index((10, Source.REDUNDANCY))
    assert sources[i10 - 1] == (10, Source.INSERTED)
    assert sources[i10 + 1] == (11, Source.REDUNDANCY)
    assert [it.seq for it in out if it.source is not Source.INSERTED] == list(range(30))
    assert jb.stats.concealed == 0
    assert 1 <= jb.stats.inserted <= 3
    assert jb.target_delay >= 3 * F


def test_no_waiting_on_a_clean_path() -> None:
    # without losses a lone late packet is given up (concealed) rather than growing the delay
    arrivals = burst(30)
    arrivals = [(t + (0.060 if seq == 12 else 0.0), seq, p, end) for t, seq, p, end in arrivals]
    jb = JitterBuffer()
    out = [it for it in run(jb, arrivals, 50) if it is not None]
    assert jb.stats.inserted == 0
    assert jb.stats.late == 1
    assert [it.source for it in out if it.seq == 12] == [Source.FEC]


def test_copies_spread_against_runs_grow_the_delay_in_a_pause_not_in_speech() -> None:
    # copies at (2, 4, 6), as the talker sends them against runs of loss. A first run of three
    # lost frames switches look-ahead on; then a pause (small packets); then speech again with
    # a run of four lost frames. The buffer grows to the copies' reach inside the pause, so the
    # second run is repaired from copies with no frame inserted in the speech around it.
    quiet = set(range(60, 100))

    def pl(seq: int) -> VoicePayload:
        def f(s: int) -> bytes:
            return b"q" * 6 if s in quiet else frame(s)
        return VoicePayload(f(seq), tuple((o, f(seq - o)) for o in (2, 4, 6) if o <= seq))

    lost = {20, 21, 22, 130, 131, 132, 133}
    arrivals = [(i * F + 0.002, i, pl(i), i == 199) for i in range(200) if i not in lost]
    jb = JitterBuffer()
    out = [it for it in run(jb, arrivals, 240) if it is not None]
    inserted_before = [it.seq for it in out if it.source is Source.INSERTED]
    grown_in_pause = [s for s in inserted_before if s in quiet]
    assert grown_in_pause, inserted_before
    assert not [s for s in inserted_before if s >= 100], inserted_before  # none in speech
    sources = {it.seq: it.source for it in out if it.source is not Source.INSERTED}
    assert [sources[s] for s in (130, 131, 132, 133)] == [Source.REDUNDANCY] * 4
    assert [it.seq for it in out if it.source is not Source.INSERTED] == list(range(200))
    # growth stays within what waiting for the copies needs: two frames short of their reach
    assert jb.stats.inserted - jb.stats.skipped <= 4


def test_a_long_burst_with_spread_copies_grows_no_more_than_their_reach_allows() -> None:
    # 14 s with copies at (2, 4, 6) and a run of three lost packets every 40, the talker's
    # clock 0.4 % slower than the player's (the drift allowance's case): the copies' reach
    # bounds the growth (four frames, 80 ms), the drift allowance does not come on top of it
    def pl(seq: int) -> VoicePayload:
        return VoicePayload(frame(seq), tuple((o, frame(seq - o)) for o in (2, 4, 6) if o <= seq))

    n = 700
    lost = {i for i in range(10, n - 10) if i % 40 < 3}
    arrivals = [(i * F * 1.004 + 0.002, i, pl(i), i == n - 1) for i in range(n) if i not in lost]
    jb = JitterBuffer()
    run(jb, arrivals, n + 60)
    assert jb.stats.inserted - jb.stats.skipped <= 4, (jb.stats.inserted, jb.stats.skipped)


def test_spread_copies_grow_the_delay_past_their_reach_whatever_the_start() -> None:
    # copies at (2, 4, 6); the path's packets come 0-3 ms late (a loaded host's scheduling).
    # Where the player's ticks fall against the talker's frames sets the burst's start delay
    # (40-60 ms); four frames of growth on a start just above 40 ms leave the copy at offset 6
    # later than its frame, and a run of five lost packets then loses the frames only that copy
    # carries. Such a start grows a fifth frame; a start well above 40 ms stays at four.
    import random

    def pl(seq: int) -> VoicePayload:
        return VoicePayload(frame(seq), tuple((o, frame(seq - o)) for o in (2, 4, 6) if o <= seq))

    lost = {20, 21, 22} | {i for i in range(60, 300, 40) for i in range(i, i + 5)}
    for phase, grown in ((0.0025, 5), (0.012, 4)):
        rng = random.Random(7)
        arrivals = [(i * F + 0.002 + 0.003 * rng.random(), i, pl(i), i == 349)
                    for i in range(350) if i not in lost]
        jb = JitterBuffer()
        pending = sorted(arrivals, key=lambda a: a[0])
        out = []
        for k in range(420):
            now = k * F + phase
            while pending and pending[0][0] <= now:
                t, seq, p, end = pending.pop(0)
                jb.add(seq, p, t, end)
            out.append(jb.pop(now))
        assert jb.stats.inserted - jb.stats.skipped == grown, (phase, jb.stats)
        late = [it.seq for it in out if it is not None and it.source is Source.CONCEALED
                and it.seq >= 140]
        assert not late, (phase, late)  # once grown, every run of five is repaired


def test_random_loss_copies_do_not_grow_the_delay_ahead_of_need() -> None:
    # copies at (1, 3) (random loss): after a loss switches look-ahead on, a pause is no reason
    # to insert frames; the delay grows only when a frame needs it
    quiet = set(range(40, 80))

    def pl(seq: int) -> VoicePayload:
        body = b"q" * 6 if seq in quiet else frame(seq)
        return VoicePayload(body, tuple((o, frame(seq - o)) for o in (1, 3) if o <= seq))

    lost = {10, 20, 21}
    arrivals = [(i * F + 0.002, i, pl(i), i == 119) for i in range(120) if i not in lost]
    jb = JitterBuffer()
    out = [it for it in run(jb, arrivals, 150) if it is not None]
    assert not [it.seq for it in out if it.source is Source.INSERTED and it.seq in quiet]


def test_a_frame_in_a_pause_is_dropped_to_shrink() -> None:
    # start deep (initial 100 ms) on a steady path: the target falls to the minimum, and the
    # buffer drops frames only where the packets are small (a pause), never inside speech
    quiet = set(range(100, 120)) | set(range(300, 320))

    def pl(seq: int) -> VoicePayload:
        return VoicePayload(b"q" * 10 if seq in quiet else frame(seq))

    arrivals = [(i * F + 0.002, i, pl(i), i == 499) for i in range(500)]
    jb = JitterBuffer(JitterConfig(initial_delay=0.100, forget=0.95))
    out = [it for it in run(jb, arrivals, 520) if it is not None]
    seqs = [it.seq for it in out]
    dropped = set(range(500)) - set(seqs)
    assert dropped and dropped <= quiet
    assert jb.stats.skipped == len(dropped)
    assert jb.current_delay is not None
    assert jb.current_delay == pytest.approx(0.100 + PHASE + 0.0 - len(dropped) * F, abs=0.02)


def test_a_burst_starts_when_its_fastest_packet_says() -> None:
    # the first packet comes 15 ms late (a relay waking up), the rest 2 ms after they were
    # sent; the ticks fall 16 ms after a frame's send: the first frame plays on the first tick
    # after 2 ms + the 40 ms target, not after the late packet's 17 ms + 40 ms
    cfg = JitterConfig()
    arrivals = burst(100)
    arrivals[0] = (0.017, *arrivals[0][1:])
    t0 = 0.016 - PHASE  # ticks 16 ms after each frame's send
    out = run(JitterBuffer(cfg), arrivals, 140, t0)
    first = next(i for i, it in enumerate(out) if it is not None)
    assert out[first] is not None and out[first].seq == 0
    first_at = t0 + first * F + PHASE
    assert 0.002 + cfg.initial_delay <= first_at < 0.002 + cfg.initial_delay + F


@settings(max_examples=60, deadline=None)
@given(
    first=st.integers(0, 65535),
    n=st.integers(1, 80),
    k=st.integers(0, 3),
    seed=st.integers(0, 2**32 - 1),
    loss=st.floats(0.0, 0.5),
    jitter=st.floats(0.0, 0.100),
    dup=st.floats(0.0, 0.3),
)
def test_any_arrival_pattern_plays_each_frame_once_in_order(
    first: int, n: int, k: int, seed: int, loss: float, jitter: float, dup: float
) -> None:
    rng = random.Random(seed)
    arrivals = []
    for i in range(n):
        if rng.random() < loss:
            continue
        seq = seq_add(first, i)
        t = i * F + 0.002 + rng.random() * jitter
        arrivals.append((t, seq, payload(seq, k, first), i == n - 1))
        if rng.random() < dup:
            arrivals.append((t + rng.random() * 0.05, seq, payload(seq, k, first), i == n - 1))
    jb = JitterBuffer()
    out = [it for it in run(jb, arrivals, n + 80) if it is not None]
    frames_out = [it for it in out if it.source is not Source.INSERTED]
    offsets = [seq_diff(it.seq, first) for it in frames_out]
    assert offsets == sorted(set(offsets))  # in order, each at most once
    # past the end only concealment, when the END packet was lost, and not for long
    assert all(0 <= o < n or it.source is Source.CONCEALED for o, it in zip(offsets, frames_out,
                                                                           strict=True))
    assert all(o < n + jb.config.max_conceal for o in offsets)
    for it in frames_out:
        if it.source in (Source.RECEIVED, Source.REDUNDANCY):
            assert it.packet == frame(it.seq)  # the right frame, whichever packet carried it
        elif it.source is Source.FEC:
            assert it.packet == frame(seq_add(it.seq, 1))
    s = jb.stats
    assert s.received + s.duplicates + s.late == len(arrivals)
    assert s.recovered_redundancy + s.recovered_fec + s.concealed == s.lost
    if arrivals:
        assert not jb.playing  # every burst ends, with or without its END packet


@pytest.mark.parametrize("drift", [-0.005, 0.005])
def test_sink_clock_drift_is_absorbed(drift: float) -> None:
    # the sound card's 20 ms is 0.5 % off the talker's for a minute (3000 frames, 300 ms of
    # drift): the buffer adds or drops frames (in pauses, where it can) and loses nothing
    quiet = {i for i in range(3000) if i % 100 >= 90}  # a pause every 2 s

    def pl(seq: int) -> VoicePayload:
        return VoicePayload(b"q" * 10 if seq in quiet else frame(seq))

    pending = [(i * F + 0.002, i & 0xFFFF, pl(i & 0xFFFF), i == 2999) for i in range(3000)]
    jb = JitterBuffer()
    out = []
    tick = F * (1 + drift)
    for i in range(3200):
        now = i * tick + PHASE
        while pending and pending[0][0] <= now:
            t, seq, p, end = pending.pop(0)
            jb.add(seq, p, t, end)
        it = jb.pop(now)
        if it is not None:
            out.append(it)
        if jb.current_delay is not None and i > 100:
            assert jb.current_delay < 0.100
    s = jb.stats
    assert s.concealed + s.late <= 3
    if drift > 0:  # slow sink: frames pile up, a dozen or so dropped in pauses
        assert s.skipped >= 10 and s.inserted == 0
        assert {it.seq for it in out} | quiet >= set(range(3000))
    else:  # fast sink: it runs dry now and then, and waits a frame
        assert s.inserted >= 10 and s.skipped <= 2
