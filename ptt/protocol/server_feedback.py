"""Loss feedback on the server: listeners' ReceiverReports in, the talker's LinkReport out.

A report counts only from a session that has joined the group, is not the talker itself, names
the burst the floor holds now and comes at most every ``MIN_REPORT_GAP``; its counts must be
possible (``ptt.protocol.feedback.check_report``). Anything else is dropped and reported as
:class:`~ptt.protocol.server_events.Dropped` with one of the fixed kinds below. The summary goes
to the holder's session only, never to anyone else (``ptt.protocol.feedback``).
"""

from __future__ import annotations

from ptt.errors import ProtocolError
from ptt.protocol import messages as m
from ptt.protocol.feedback import LinkAggregate, LinkCounts, check_report
from ptt.protocol.server_outbox import Outbox
from ptt.protocol.server_state import GroupEntry, ServerState
from ptt.protocol.session import Session

# drop kinds ("kind: detail"); the server's counters key on the kind
MALFORMED = "malformed receiver report"
NOT_LISTENING = "receiver report from a non-listener"
TOO_OFTEN = "receiver report over its rate"
PAST_BURST = "receiver report for a past burst"


class Feedback:
    """Aggregates ReceiverReports per group and burst; sends LinkReports to the talker."""

    def __init__(self, state: ServerState, out: Outbox) -> None:
        self.state = state
        self.out = out

    def on_receiver_report(self, s: Session, r: m.ReceiverReport, now: float) -> None:
        g = self.state.groups.get(r.group)
        if g is None or g.joined.get(s.session_id) is not s:
            self.out.drop(s.addr, NOT_LISTENING)
            return
        f = self.state.floors.floor(g.name)
        if f.holder is None or f.burst_id != r.burst_id:
            self.out.drop(s.addr, PAST_BURST)
            return
        if f.holder == s.user:
            self.out.drop(s.addr, NOT_LISTENING)
            return
        try:
            check_report(r)
        except ProtocolError as exc:
            self.out.drop(s.addr, f"{MALFORMED}: {exc}")
            return
        agg = g.link
        if agg is None or agg.burst_id != r.burst_id:
            agg = g.link = LinkAggregate(r.burst_id)
        if not agg.allow(s.session_id, now):
            self.out.drop(s.addr, TOO_OFTEN)
            return
        agg.add(r)
        self._due(g, f.holder, agg, now)

    def on_remote_counts(self, group: str, burst_id: int, counts: LinkCounts,
                         now: float) -> None:
        """Another node's listeners' window of the current burst (a cluster): counted as
        this node's own listeners' reports are (ProtocolError when it cannot be true)."""
        g = self.state.groups.get(group)
        if g is None:
            return
        f = self.state.floors.floor(g.name)
        if f.holder is None or f.burst_id != burst_id:
            return  # a past burst: the talker has moved on
        agg = g.link
        if agg is None or agg.burst_id != burst_id:
            agg = g.link = LinkAggregate(burst_id)
        agg.merge(counts)
        self._due(g, f.holder, agg, now)

    def _due(self, g: GroupEntry, holder: str, agg: LinkAggregate, now: float) -> None:
        """The talker hears the window when it is due: its own session here, else (a cluster,
        the talker on another node) the window goes there as it is."""
        if not agg.due(now):
            return
        talker = self.state.floor_session(g, holder)
        if talker is not None:
            self.out.send(talker, agg.take(g.name, now))
        elif self.state.home is not None:
            self.state.home.link_counts(g, agg.burst_id, holder, agg.take_counts(now), now)
        else:
            agg.take(g.name, now)  # nobody to tell: the window starts again all the same
