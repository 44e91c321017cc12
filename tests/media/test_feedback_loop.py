"""The loss feedback loop in virtual time, with the real parts but no sockets: Opus frames, the
packetiser, a seeded lossy channel, the listener's receiver and its report clock, the server's
aggregate (``ptt.protocol.feedback``) and the talker's policy."""

from __future__ import annotations

import random

import pytest

from ptt.audio.codec import FRAME_BYTES, OpusDecoder, OpusEncoder
from ptt.audio.samples import SHORT_TEXT, speech_pcm
from ptt.media.impair import BernoulliLoss, Channel, ConstantDelay, GilbertElliott, NoLoss
from ptt.media.jitter import FRAME_SECONDS
from ptt.media.receiver import BurstReceiver, ReceptionReports
from ptt.media.sender import OFFSETS, RUN_OFFSETS, START_REDUNDANCY, Packetizer, RedundancyPolicy
from ptt.protocol import messages as m
from ptt.protocol.feedback import LinkAggregate

F = FRAME_SECONDS
REPORT_DELAY = 0.03  # listener -> server -> talker


@pytest.fixture(scope="module")
def packets() -> list[bytes]:
    pcm = speech_pcm(SHORT_TEXT)
    enc = OpusEncoder(bitrate=32_000)
    return [enc.encode(pcm[i:i + FRAME_BYTES])
            for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def run_loop(packets: list[bytes], loss: object, seconds: float, listeners: int = 1,
             seed: int = 1) -> list[tuple[float, tuple[int, ...], int]]:
    """One burst of ``seconds``; [(time, offsets in use, bytes sent in that tick)] per frame."""
    policy = RedundancyPolicy()
    policy.start(START_REDUNDANCY)
    pk = Packetizer(1, 2, 3, offsets=policy.settings.offsets)
    rxs = [BurstReceiver(OpusDecoder(), group_id=1) for _ in range(listeners)]
    clocks = [ReceptionReports() for _ in range(listeners)]
    channels = [Channel(random.Random(seed * 100 + i), loss=loss,  # type: ignore[arg-type]
                        delay=ConstantDelay(0.004)) for i in range(listeners)]
    agg = LinkAggregate(3)
    in_flight: list[tuple[float, int, bytes]] = []
    links: list[tuple[float, m.LinkReport]] = []
    trace = []
    n = int(seconds / F)
    for tick in range(n):
        now = tick * F
        while links and links[0][0] <= now:
            link = links.pop(0)[1]
            pk.offsets = policy.update(link.loss / 1000, link.run / 10).offsets
        before = pk.bytes_sent
        gram = pk.packetize(packets[tick % len(packets)], last=tick == n - 1)
        trace.append((now, pk.offsets, pk.bytes_sent - before))
        for i, ch in enumerate(channels):
            in_flight.extend((t, i, gram) for t in ch.transmit(now))
        in_flight.sort(key=lambda x: x[0])
        tick_at = now + 0.0071
        while in_flight and in_flight[0][0] <= tick_at:
            t, i, g = in_flight.pop(0)
            rxs[i].receive(g, t)
        for i, (rx, clock) in enumerate(zip(rxs, clocks, strict=True)):
            rx.pop(tick_at)
            due = clock.poll(rx, tick_at)
            if due is None:
                continue
            burst, r = due
            report = m.ReceiverReport(i, "g", burst, r.frames, r.lost, r.runs, r.late)
            if agg.allow(i, tick_at):
                agg.add(report)
                if agg.due(tick_at):
                    links.append((tick_at + REPORT_DELAY, agg.take("g", tick_at)))
    return trace


def offsets_at(trace: list[tuple[float, tuple[int, ...], int]], t: float) -> tuple[int, ...]:
    return next(o for at, o, _ in trace if at >= t)


def kbps(trace: list[tuple[float, tuple[int, ...], int]], start: float, end: float) -> float:
    return sum(b for t, _, b in trace if start <= t < end) * 8 / (end - start) / 1000


def test_no_report_keeps_the_safe_start(packets: list[bytes]) -> None:
    trace = run_loop(packets, NoLoss(), 4.0, listeners=0)
    assert {o for _, o, _ in trace} == {OFFSETS[START_REDUNDANCY]}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_lossy_link_gets_more_protection_within_2_s(packets: list[bytes], seed: int) -> None:
    trace = run_loop(packets, BernoulliLoss(0.20), 6.0, listeners=3, seed=seed)
    start = OFFSETS[START_REDUNDANCY]
    assert offsets_at(trace, 0.0) == start
    # more copies than the start from 2 s on, and it stays protected (the wire grows less than
    # the copies: under heavy random loss Opus runs at LOSSY_BITRATE)
    assert all(len(o) > len(start) for t, o, _ in trace if t >= 2.0)
    assert kbps(trace, 4.0, 6.0) > kbps(trace, 0.0, 0.5) * 1.15


@pytest.mark.parametrize("seed", [1, 2])
def test_a_clean_link_sends_bare_frames_within_5_s(packets: list[bytes], seed: int) -> None:
    trace = run_loop(packets, NoLoss(), 7.0, listeners=5, seed=seed)
    assert all(o == () for t, o, _ in trace if t >= 5.0)
    # one copy costs about a frame's worth: the clean wire rate falls by a third or more
    assert kbps(trace, 5.0, 7.0) < kbps(trace, 0.0, 0.5) * 0.67


def test_losses_in_runs_spread_the_copies(packets: list[bytes]) -> None:
    # Gilbert-Elliott, 10 % in runs of 3 on average: one more copy, reaching further back
    for seed in (1, 2):
        trace = run_loop(packets, GilbertElliott.from_mean(0.10, burst=3.0), 10.0, listeners=2,
                         seed=seed)
        late = [o for t, o, _ in trace if t >= 5.0]
        spread = [o for o in late if o in (RUN_OFFSETS[2], RUN_OFFSETS[3])]
        assert len(spread) >= 0.8 * len(late), sorted(set(late))


def play_dropping(packets: list[bytes], offsets: tuple[int, ...], drop: set[int]
                  ) -> BurstReceiver:
    """300 frames sent with copies at ``offsets``, the packets numbered in ``drop`` lost; the
    receiver after it played them all (4 ms transit, ticks between the talker's frames)."""
    pk = Packetizer(1, 2, 3, offsets=offsets)
    rx = BurstReceiver(OpusDecoder(), group_id=1)
    grams = [pk.packetize(p) for p in (packets * 3)[:300]]
    for tick in range(340):
        now = tick * F + 0.0071
        if tick < 300 and tick not in drop:
            rx.receive(grams[tick], tick * F + 0.004)
        rx.pop(now)
    return rx


def test_spread_offsets_repair_runs_that_adjacent_ones_miss(packets: list[bytes]) -> None:
    # runs of 4 lost packets every 15: (1, 3) cannot restore the first frame of a run, (2, 4)
    # can (what it still conceals is the same for both: the jitter buffer learning to wait)
    drop = {i for i in range(10, 290) if i % 15 < 4}

    def concealed(offsets: tuple[int, ...]) -> int:
        return play_dropping(packets, offsets, drop).stats.concealed

    assert concealed(OFFSETS[2]) >= concealed(RUN_OFFSETS[2]) + 15


def test_copies_spread_against_runs_repair_runs_of_five(packets: list[bytes]) -> None:
    # runs of 5 lost packets every 20: no copy at offsets up to 4 survives for a run's first
    # frame; the run offsets reach 6 back and the receiver learns to wait for them (within the
    # 100 ms a burst may grow)
    drop = {i for i in range(10, 290) if i % 20 < 5}

    def run(offsets: tuple[int, ...]) -> tuple[int, int]:
        stats = play_dropping(packets, offsets, drop).stats
        return stats.concealed, stats.inserted - stats.skipped

    adjacent, _ = run(OFFSETS[3])
    spread, growth = run(RUN_OFFSETS[3])
    assert adjacent >= 14 * 2  # 14 runs, each losing at least its first two frames
    assert spread <= adjacent // 3, (spread, adjacent)
    assert growth <= 4  # 80 ms
