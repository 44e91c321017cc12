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
from ptt.protocol.feedback import LinkAggregate, check_report
from ptt.protocol.server_base import ServerBase
from ptt.protocol.session import Session

# drop kinds ("kind: detail"); the server's counters key on the kind
MALFORMED = "malformed receiver report"
NOT_LISTENING = "receiver report from a non-listener"
TOO_OFTEN = "receiver report over its rate"
PAST_BURST = "receiver report for a past burst"


class LinkFeedback(ServerBase):
    """Aggregates ReceiverReports per group and burst; sends LinkReports to the talker."""

    def _on_receiver_report(self, s: Session, r: m.ReceiverReport, now: float) -> None:
        g = self.groups.get(r.group)
        if g is None or g.joined.get(s.session_id) is not s:
            self._drop(s.addr, NOT_LISTENING)
            return
        f = self.floors.floor(g.name)
        if f.holder is None or f.burst_id != r.burst_id:
            self._drop(s.addr, PAST_BURST)
            return
        if f.holder == s.user:
            self._drop(s.addr, NOT_LISTENING)
            return
        try:
            check_report(r)
        except ProtocolError as exc:
            self._drop(s.addr, f"{MALFORMED}: {exc}")
            return
        agg = g.link
        if agg is None or agg.burst_id != r.burst_id:
            agg = g.link = LinkAggregate(r.burst_id)
        if not agg.allow(s.session_id, now):
            self._drop(s.addr, TOO_OFTEN)
            return
        agg.add(r)
        if agg.due(now):
            report = agg.take(g.name, now)
            talker = self._floor_session(g, f.holder)
            if talker is not None:
                self._send(talker, report)
