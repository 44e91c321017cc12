"""Loss feedback: what a group's listeners receive, summed up for its talker.

Listeners send a :class:`~ptt.protocol.messages.ReceiverReport` about once a second while a burst
plays; the server cannot read voice (it relays ciphertext) but it knows who is a member and which
burst is current, so it keeps one :class:`LinkAggregate` per group and sends the talker a
:class:`~ptt.protocol.messages.LinkReport` at most every :data:`LINK_REPORT_INTERVAL`.

The cost stays flat however many listen: adding a report is O(1) (a histogram bin and a few sums),
a LinkReport is built from :data:`LOSS_BINS` bins, and the memory is those bins plus one time
stamp per listener that reported this burst (bounded by the group's joined members). The talker
needs only a loss level to protect against and whether losses come in runs, so the 90th
percentile is taken, not the mean: one listener behind a bad link should be heard too, and with
fewer than ten listeners the 90th percentile is the worst of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ptt.errors import ProtocolError
from ptt.protocol import messages as m

__all__ = ["LINK_REPORT_INTERVAL", "LOSS_BINS", "MAX_REPORT_FRAMES", "MIN_REPORT_GAP",
           "PERCENTILE", "LinkAggregate", "LinkCounts", "check_report"]

LINK_REPORT_INTERVAL = 0.75  # a talker hears at most this often (listeners report every ~1 s)
MIN_REPORT_GAP = 0.5  # a listener's reports of one group closer than this are dropped
MAX_REPORT_FRAMES = 500  # 10 s of frames: no honest report covers more
BIN_PER_MILLE = 5  # histogram resolution: 0.5 % of loss per bin ...
LOSS_BINS = 101  # ... up to 50 %; the last bin holds 50 % and more
PERCENTILE = 0.9


def check_report(r: m.ReceiverReport) -> None:
    """ProtocolError unless the counts of ``r`` can be true (lost <= frames, runs <= lost...)."""
    if not 0 <= r.frames <= MAX_REPORT_FRAMES:
        raise ProtocolError(f"frames {r.frames} outside 0..{MAX_REPORT_FRAMES}")
    if not 0 <= r.lost <= r.frames:
        raise ProtocolError(f"lost {r.lost} of {r.frames} frames")
    if not (0 < r.runs <= r.lost if r.lost else r.runs == 0):
        raise ProtocolError(f"{r.runs} runs for {r.lost} lost frames")
    if not 0 <= r.late <= MAX_REPORT_FRAMES:
        raise ProtocolError(f"late {r.late} outside 0..{MAX_REPORT_FRAMES}")


@dataclass(frozen=True, slots=True)
class LinkCounts:
    """One window of a :class:`LinkAggregate`, as a cluster node whose listeners reported sends
    it to the talker's node, which merges it into its own (the histogram merges exactly, so the
    90th percentile is that of every listener on every node)."""

    bins: tuple[int, ...]  # the non-empty bins: (bin, count, bin, count, ...)
    listeners: int
    frames: int
    lost: int
    runs: int
    late: int
    worst: int  # per mille


class LinkAggregate:
    """One group's listener reports for one burst, between two LinkReports."""

    __slots__ = (
        "bins",
        "burst_id",
        "frames",
        "late",
        "listeners",
        "lost",
        "next_at",
        "reported",
        "runs",
        "worst",
    )

    def __init__(self, burst_id: int) -> None:
        self.burst_id = burst_id
        self.bins = [0] * LOSS_BINS
        self.listeners = 0
        self.frames = self.lost = self.runs = self.late = 0
        self.worst = 0  # per mille
        self.reported: dict[int, float] = {}  # session id -> when its last report was taken
        self.next_at = 0.0  # the burst's first report goes to the talker at once

    def allow(self, session_id: int, now: float) -> bool:
        """Rate limit per listener: False for a report closer than MIN_REPORT_GAP to its last."""
        last = self.reported.get(session_id)
        if last is not None and now - last < MIN_REPORT_GAP:
            return False
        self.reported[session_id] = now
        return True

    def add(self, r: m.ReceiverReport) -> None:
        """Count one (checked) report: O(1)."""
        if r.frames == 0:
            return  # nothing fell due: no news about the link
        loss = -(-r.lost * 1000 // r.frames)  # per mille, rounded up
        self.bins[min(LOSS_BINS - 1, -(-loss // BIN_PER_MILLE))] += 1
        self.listeners += 1
        self.frames += r.frames
        self.lost += r.lost
        self.runs += r.runs
        self.late += r.late
        self.worst = max(self.worst, loss)

    def due(self, now: float) -> bool:
        return self.listeners > 0 and now >= self.next_at

    def take(self, group: str, now: float) -> m.LinkReport:
        """The LinkReport of the reports counted since the last one; starts a new window."""
        rank = -(-self.listeners * 9 // 10)  # nearest rank of the 90th percentile, >= 1
        seen = 0
        p90 = LOSS_BINS - 1
        for i, n in enumerate(self.bins):
            seen += n
            if seen >= rank:
                p90 = i
                break
        report = m.LinkReport(
            group, self.burst_id, self.listeners,
            loss=min(p90 * BIN_PER_MILLE, self.worst),
            worst=self.worst,
            run=self.lost * 10 // self.runs if self.runs else 0,
            late=self.late * 1000 // max(self.frames, 1),
        )
        self._restart(now)
        return report

    def _restart(self, now: float) -> None:
        self.bins = [0] * LOSS_BINS
        self.listeners = self.frames = self.lost = self.runs = self.late = 0
        self.worst = 0
        self.next_at = now + LINK_REPORT_INTERVAL

    def take_counts(self, now: float) -> LinkCounts:
        """The reports counted since the last window, as they are, for another node; starts
        a new window (the same cadence as :meth:`take`)."""
        bins = tuple(v for i, n in enumerate(self.bins) if n for v in (i, n))
        counts = LinkCounts(bins, self.listeners, self.frames, self.lost, self.runs, self.late,
                            self.worst)
        self._restart(now)
        return counts

    def merge(self, c: LinkCounts) -> None:
        """Count another node's window (ProtocolError when its numbers cannot be true)."""
        pairs = list(zip(c.bins[::2], c.bins[1::2], strict=False))
        if (len(c.bins) % 2 or any(not 0 <= b < LOSS_BINS or n < 1 for b, n in pairs)
                or sum(n for _, n in pairs) != c.listeners
                or not 0 <= c.lost <= c.frames or not 0 <= c.runs <= c.lost
                or not 0 <= c.worst <= 1000 or c.late < 0):
            raise ProtocolError("link counts that cannot be true")
        for b, n in pairs:
            self.bins[b] += n
        self.listeners += c.listeners
        self.frames += c.frames
        self.lost += c.lost
        self.runs += c.runs
        self.late += c.late
        self.worst = max(self.worst, c.worst)
