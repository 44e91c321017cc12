"""Loss feedback through the cores: listeners' ReceiverReports, the server's LinkReport to the
talker; what is dropped, what it costs."""

from __future__ import annotations

import random

import pytest

from ptt.errors import ProtocolError
from ptt.protocol import messages as m
from ptt.protocol.client import LinkReported, Participation
from ptt.protocol.feedback import (
    LINK_REPORT_INTERVAL,
    LOSS_BINS,
    LinkAggregate,
    LinkCounts,
    check_report,
)
from ptt.protocol.messages import encode_message
from ptt.protocol.server import Dropped
from tests.protocol.simnet import SimNet


def _site(n_listeners: int, seed: int = 7) -> tuple[SimNet, list[str], int]:
    """ann holds the floor of g; n listeners joined; returns (net, listeners, burst)."""
    net = SimNet(seed=seed)
    listeners = [f"l{i:03d}" for i in range(n_listeners)]
    for u in ["ann", *listeners, "out"]:
        net.add_user(u)
    net.add_group("g", ["ann", *listeners], 1)
    net.add_group("other", ["out"], 2)
    for u, c in net.clients.items():
        c.connect(net.now)
        c.join("other" if u == "out" else "g", net.now)
    net.run_until(1.0)
    ann = net.clients["ann"]
    ann.request_floor("g", net.now)
    net.run_until(1.2)
    assert ann.participation("g") is Participation.HAS_PERMISSION
    return net, listeners, ann.groups["g"].my_burst


def _links(net: SimNet) -> list[LinkReported]:
    return [e for e in net.client_events["ann"] if isinstance(e, LinkReported)]


def _drops(net: SimNet) -> list[str]:
    return [e.reason for e in net.server_events if isinstance(e, Dropped)]


def test_the_talker_hears_the_90th_percentile_listener_and_the_mean_run() -> None:
    net, listeners, burst = _site(40)
    # 34 listeners at 2 % loss in single frames, 6 behind a bad link: 20 % in runs of 2

    def report_all(late: int) -> None:
        for i, u in enumerate(listeners):
            bad = i >= 34
            net.clients[u].report_reception("g", burst, 50, 10 if bad else 1, 5 if bad else 1,
                                            late)

    report_all(0)
    net.run_until(1.3)
    first, *rest = _links(net)
    # the first report of a burst goes to the talker at once, alone; the rest wait a window
    assert first.listeners == 1 and rest == []
    net.run_until(1.2 + LINK_REPORT_INTERVAL + 0.1)
    report_all(2)  # a second later, every listener again: the first of these closes the window
    net.run_until(net.now + 0.1)
    second = _links(net)[1]
    assert second.group == "g" and second.burst_id == burst
    assert second.listeners == 40  # 39 of the first round, 1 of the second
    # nearest rank 36 of 40: at least 5 of them are behind the bad link
    assert second.loss == pytest.approx(0.20)
    assert second.worst == pytest.approx(0.20)
    assert 1.3 <= second.mean_run <= 1.6  # (33..35 + 50..70 lost) / (33..35 + 25..35 runs)
    assert second.late == pytest.approx(2 / 2000)
    assert _drops(net) == []


def test_listeners_on_a_clean_path_report_zero_loss_to_the_talker() -> None:
    net, listeners, burst = _site(3)
    for u in listeners:
        net.clients[u].report_reception("g", burst, 50, 0, 0)
    net.run_until(1.3)
    (link,) = _links(net)
    assert (link.loss, link.worst, link.mean_run) == (0.0, 0.0, 0.0)


def test_only_the_talker_is_told_and_the_summary_is_small() -> None:
    net, listeners, burst = _site(5)
    for u in listeners:
        net.clients[u].events()
    net.clients[listeners[0]].report_reception("g", burst, 50, 25, 3, 1)
    net.run_until(1.3)
    assert len(_links(net)) == 1
    for u in listeners:
        assert not [e for e in net.client_events[u] if isinstance(e, LinkReported)]
    worst_case = m.LinkReport("g" * 64, 2**32 - 1, 10_000, 1000, 1000, 5000, 1000)
    assert len(encode_message(worst_case)) < 100  # sealed, one small datagram a second


def test_reports_from_non_members_other_bursts_or_the_talker_are_dropped_with_a_kind() -> None:
    net, listeners, burst = _site(2)
    out, ann = net.clients["out"], net.clients["ann"]
    out.groups.setdefault("g", type(out.groups["other"])("g"))  # claims g without joining it
    out.report_reception("g", burst, 50, 5, 1)
    ann.report_reception("g", burst, 50, 5, 1)  # the talker does not listen to itself
    net.clients[listeners[0]].report_reception("g", burst + 1, 50, 5, 1)
    net.run_until(1.3)
    assert _links(net) == []
    assert sorted(_drops(net)) == ["receiver report for a past burst",
                                   "receiver report from a non-listener",
                                   "receiver report from a non-listener"]


def test_impossible_counts_are_dropped_as_malformed() -> None:
    net, listeners, burst = _site(1)
    c = net.clients[listeners[0]]
    c.report_reception("g", burst, 50, 51, 1)
    net.run_until(1.3)
    c.report_reception("g", burst, 10_000, 5, 1)
    net.run_until(1.4)
    assert _links(net) == []
    assert [r.split(":")[0] for r in _drops(net)] == ["malformed receiver report"] * 2


def test_a_listener_reporting_too_often_is_dropped_and_counted_once_per_window() -> None:
    net, listeners, burst = _site(1)
    c = net.clients[listeners[0]]
    for i in range(20):  # 20 reports in 0.2 s: only the first counts
        c.report_reception("g", burst, 50, 5, 1)
        net.run_until(1.2 + 0.01 * (i + 1))
    assert len(_links(net)) == 1
    assert _drops(net) == ["receiver report over its rate"] * 19


def test_reports_of_a_burst_that_ended_are_dropped() -> None:
    net, listeners, burst = _site(1)
    net.clients["ann"].release_floor("g", net.now)
    net.run_until(1.4)
    net.clients[listeners[0]].report_reception("g", burst, 50, 5, 1)
    net.run_until(1.5)
    assert _drops(net) == ["receiver report for a past burst"]


@pytest.mark.parametrize("bad", [
    m.ReceiverReport(1, "g", 1, -1, 0, 0),
    m.ReceiverReport(1, "g", 1, 50, 51, 1),
    m.ReceiverReport(1, "g", 1, 50, 5, 0),  # lost frames come in at least one run
    m.ReceiverReport(1, "g", 1, 50, 5, 6),  # no more runs than lost frames
    m.ReceiverReport(1, "g", 1, 50, 0, 1),
    m.ReceiverReport(1, "g", 1, 50, 0, 0, -3),
])
def test_check_report_refuses_counts_that_cannot_be(bad: m.ReceiverReport) -> None:
    with pytest.raises(ProtocolError):
        check_report(bad)


def test_aggregation_cost_does_not_grow_with_listeners() -> None:
    # 10,000 listener reports into one window: constant-size state, an exact nearest-rank p90
    rng = random.Random(3)
    agg = LinkAggregate(9)
    losses = []
    for sid in range(10_000):
        lost = rng.choice([0, 0, 0, 1, 2, 5, 10, 25])
        runs = 0 if lost == 0 else max(1, lost // 2)
        r = m.ReceiverReport(sid, "g", 9, 50, lost, runs)
        check_report(r)
        assert agg.allow(sid, 1.0)
        agg.add(r)
        losses.append(lost * 1000 // 50)
    assert len(agg.bins) == LOSS_BINS
    report = agg.take("g", 1.0)
    assert report.listeners == 10_000
    assert report.loss == sorted(losses)[9_000 - 1]
    assert report.worst == 500
    # the window starts afresh; the per-listener rate limit stays for the burst
    assert agg.listeners == 0 and sum(agg.bins) == 0
    assert not agg.allow(5, 1.2) and agg.allow(5, 1.6)


def test_another_node_s_window_merges_as_if_its_listeners_reported_here() -> None:
    """A cluster: node b's listeners' window, merged into the talker's node's aggregate, gives
    the report one aggregate of all the reports would give; counts that cannot be true are
    refused."""
    reports = [m.ReceiverReport(1, "g", 9, 50, lost, -(-lost // 2), 0) for lost in range(0, 20, 2)]
    one, here, there = LinkAggregate(9), LinkAggregate(9), LinkAggregate(9)
    for i, r in enumerate(reports):
        one.add(r)
        (here if i % 3 else there).add(r)
    here.merge(there.take_counts(0.0))
    assert here.take("g", 0.0) == one.take("g", 0.0)
    for bad in (LinkCounts((3,), 1, 50, 1, 1, 0, 20), LinkCounts((3, 1), 2, 50, 1, 1, 0, 20),
                LinkCounts((3, 1), 1, 50, 60, 1, 0, 20), LinkCounts((200, 1), 1, 50, 1, 1, 0, 2)):
        with pytest.raises(ProtocolError):
            LinkAggregate(9).merge(bad)
