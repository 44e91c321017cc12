"""Runs of lost frames as the talker reads them: the listener's reports (``BurstReceiver.
loss_report``), sent as ``ReceiverReport`` and summed by the server's ``LinkAggregate``, must give
the runs' true mean length wherever the report boundaries fall. Sans-I/O: datagrams and ``now``
in, reports out."""

from __future__ import annotations

import pytest

from ptt.media.jitter import FRAME_SECONDS, JitterConfig, Source
from ptt.media.receiver import BurstReceiver, LossReport, ReceptionReports
from ptt.protocol import messages as m
from ptt.protocol.feedback import LinkAggregate, check_report
from ptt.wire.voice import VoiceFlags
from tests.media.test_receiver import FakeDecoder, gram

F = FRAME_SECONDS
PHASE = 0.0071


def play(n: int, lost: set[int], report_after: set[int], finish_after: int | None = None
         ) -> list[LossReport]:
    """``n`` frames but ``lost``, each 2 ms after its time; a report once each frame of
    ``report_after`` has been played, and one at the end: the burst's reception
    (ReceptionReports.finish) once ``finish_after`` has been played, if given."""
    rx = BurstReceiver(FakeDecoder(), group_id=1)
    clock = ReceptionReports()
    reports = []
    for tick in range(n + 40):
        now = tick * F + PHASE
        if tick < n and tick not in lost:
            flags = VoiceFlags.END_OF_BURST if tick == n - 1 else VoiceFlags.NONE
            rx.receive(gram(7, tick, flags=flags), tick * F + 0.002)
        rx.pop(now)
        if tick == 0:
            clock.poll(rx, now)  # the burst's reports start
        item = rx.last_item
        if item is None or item.source is Source.INSERTED:
            continue
        if item.seq in report_after:
            reports.append(rx.loss_report())
        if item.seq == finish_after:
            return [*reports, clock.finish(rx)]
    return [*reports, rx.loss_report()]


def through_the_server(reports: list[LossReport]) -> list[m.LinkReport]:
    """Each report as the listener sends it and the server reads it, one LinkReport each."""
    links = []
    for i, r in enumerate(reports):
        sent = m.ReceiverReport(9, "g", 7, r.frames, r.lost, r.runs, r.late)
        got = m.decode_message(m.encode_message(sent))
        assert got == sent
        check_report(got)  # the counts can be true: lost <= frames, 0 < runs <= lost
        agg = LinkAggregate(7)
        agg.add(got)
        links.append(agg.take("g", float(i)))
    return links


def test_runs_cut_by_report_boundaries_read_their_true_length() -> None:
    # runs of exactly 3 lost frames every 10; a report every 7 frames falls inside a run 2 times
    # in 5. Each run must count once, with its whole length, in one report: a run counted in
    # both reports it straddles reads as two runs of 1-2 (mean 1.3-1.7 under Gilbert-Elliott,
    # mean 3, which kept the talker's copies adjacent for seconds)
    lost = {i for i in range(10, 290) if i % 10 in (3, 4, 5)}
    reports = play(300, lost, report_after=set(range(12, 300, 7)))
    assert sum(r.frames for r in reports) == 300
    assert sum(r.lost for r in reports) == len(lost)
    assert sum(r.runs for r in reports) == len(lost) // 3
    with_loss = [r for r in reports if r.lost]
    assert with_loss and all(r.mean_loss_run == 3.0 for r in with_loss), \
        [(r.lost, r.runs) for r in with_loss]
    assert all(r.lost == 0 for r in reports if not r.runs)
    links = through_the_server(reports)
    assert {link.run for link in links if link.loss} == {30}  # tenths of a frame


def test_an_outage_is_one_run_of_what_fell_due() -> None:
    # packets 20-49 lost, a report while the buffer conceals them: the buffer conceals
    # max_conceal frames and then plays nothing until packet 50 comes, which ends the run; the
    # report after it has that run whole, and every frame that fell due is in one report
    conceal = JitterConfig().max_conceal
    lost = set(range(20, 50))
    first, second = play(80, lost, report_after={24})
    assert (first.frames, first.lost, first.runs) == (20, 0, 0)
    assert (second.lost, second.runs, second.mean_loss_run) == (conceal, 1, conceal)
    assert first.frames + second.frames == 80 - 30 + conceal
    through_the_server([first, second])


def test_a_run_at_the_bursts_end_is_in_the_bursts_reception() -> None:
    # the talker stops (its floor ends) while frames 34-37 play lost: nothing received after
    # them ends the run, and the burst's reception counts it all the same
    lost = set(range(34, 40))
    *_, done = play(40, lost, report_after={20}, finish_after=37)
    assert (done.lost, done.runs, done.mean_loss_run) == (4, 1, 4.0)


def test_a_run_cut_at_any_of_its_frames_counts_once_whole() -> None:
    # a report after the run's last frame, before the frame that ends it is played, too
    for carry in (1, 3, 8):
        lost = set(range(15, 15 + carry))
        reports = play(60, lost, report_after={15 + carry - 1})
        through_the_server(reports)
        assert sum(r.runs for r in reports) == 1
        assert [r.mean_loss_run for r in reports if r.lost] == [pytest.approx(carry)]
