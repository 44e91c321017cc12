"""Delivery reports: which members received a burst, collected from their receipts.

At the end of a burst each listening client sends a ``BurstReceipt`` (frames received and
expected). The server, which relays ciphertext but reads the clear voice header, counts the
frames it accepted from the talker, snapshots at the burst's end who of the group is online and
who is not, and waits for the receipts of the online members at most ``RECEIPT_WAIT``; then it
sends the talker one reliable ``DeliveryReport`` (and reports a :class:`DeliveryReported` event
for logs and recordings). An online member whose receipt did not come in time is listed as
*silent*: not confirmed, whatever it may have heard.

In a cluster, a node without the talker's session collects its own listeners' receipts the
same way, but waits at most ``REMOTE_RECEIPT_WAIT`` (half the talker's node's wait, so they
arrive in time) and then sends them, all in one message, to the talker's node
(``FloorHome.receipts``), which counts them with its own (:meth:`Delivery.on_remote_receipts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ptt.protocol import floor as fl
from ptt.protocol import messages as m
from ptt.protocol.server_events import DeliveryReported
from ptt.protocol.server_outbox import Outbox
from ptt.protocol.server_state import GroupEntry, ServerState
from ptt.protocol.session import Session

# a node without the talker: how long after the burst's end it waits for its own listeners'
# receipts before sending them on to the talker's node (which waits RECEIPT_WAIT from its end)
REMOTE_RECEIPT_WAIT = m.RECEIPT_WAIT / 2
MAX_COLLECTING = 4096  # bursts followed at once (every group's current one, and those closing)


@dataclass(slots=True)
class _Collecting:
    group: str
    burst_id: int
    talker: str
    talker_session: int
    deadline: float | None = None  # set when the burst ends
    online: tuple[str, ...] = ()
    offline: tuple[str, ...] = ()
    frames: int = 0
    receipts: dict[str, m.Receipt] = field(default_factory=dict)
    remote: bool = False  # the talker is on another node of the cluster: receipts go there
    # the members online on other nodes of a cluster when the burst began: one who heard it
    # all and left at its end, before the floor's news of the end reached this node, is waited
    # for (its receipt comes from its node after that news reaches it), not called offline
    began_remote: frozenset[str] = frozenset()


class Delivery:
    """Receipts in, one delivery report per burst out to its talker."""

    def __init__(self, state: ServerState, out: Outbox) -> None:
        self.state = state
        self.out = out
        # (group, burst) -> collection; _closing holds those whose burst ended, in deadline order
        self._collecting: dict[tuple[str, int], _Collecting] = {}
        self._closing: dict[tuple[str, int], _Collecting] = {}
        # the same for bursts of talkers on other nodes (a cluster): their wait is shorter, so a
        # dict of their own keeps each in deadline order
        self._sending: dict[tuple[str, int], _Collecting] = {}

    def started(self, g: GroupEntry, ev: fl.Granted, holder: Session | None) -> None:
        """``ev``'s burst begins: its receipts are collected (``holder``: the session granted,
        ``ServerState.floor_session`` of the grantee, which the caller has looked up)."""
        if len(self._collecting) >= MAX_COLLECTING:  # bursts that never ended: forget the oldest
            del self._collecting[next(iter(self._collecting))]
        g.burst_frames = 0
        remote = holder is None and self.state.home is not None
        self._collecting[(g.name, ev.burst_id)] = _Collecting(
            g.name, ev.burst_id, ev.user, holder.session_id if holder is not None else 0,
            remote=remote,
            began_remote=frozenset() if remote else frozenset(g.remote))

    def ended(self, g: GroupEntry, ev: fl.BurstEnded, now: float) -> None:
        key = (g.name, ev.burst_id)
        c = self._collecting.pop(key, None)
        if c is None:
            return
        c.frames = g.burst_frames
        if c.remote:  # this node's listeners only, sent on to the talker's node
            c.online = tuple(sorted(u for u in g.online if u != c.talker))
            c.deadline = now + REMOTE_RECEIPT_WAIT
        else:
            # online on any node of a cluster: a member elsewhere is listed, silent until its
            # receipt comes from its node
            online = g.online.keys() | g.remote.keys() | c.began_remote
            c.online = tuple(sorted(u for u in online if u != c.talker and u in g.members))
            c.offline = tuple(sorted(u for u in g.members
                                     if u not in online and u != c.talker))
            c.deadline = now + m.RECEIPT_WAIT
        (self._sending if c.remote else self._closing)[key] = c
        self._check(c, now)

    def on_burst_receipt(self, s: Session, msg: m.BurstReceipt, now: float) -> None:
        self.out.answer(s, msg.txn, m.Ack(msg.txn), now)
        key = (msg.group, msg.burst_id)
        c = self._closing.get(key) or self._sending.get(key) or self._collecting.get(key)
        g = self.state.groups.get(msg.group)
        member = c is not None and (s.user in c.online or (g is not None and s.user in g.members))
        if c is None or not member or s.user == c.talker:
            self.out.drop(s.addr, f"receipt for a burst not followed: {msg.group} {msg.burst_id}")
            return
        expected = max(0, msg.expected)
        c.receipts[s.user] = m.Receipt(s.user, max(0, min(msg.received, expected)), expected)
        if c.deadline is not None:
            self._check(c, now)

    def left(self, g: GroupEntry, user: str, now: float) -> None:
        """``user``'s last session here left ``g``: its receipt of the current burst of a talker
        on another node goes there now. This node may hear nothing more of that burst (with no
        member left here it leaves the group's relay set), so the burst's end, which sends this
        node's receipts on, may never come."""
        c = self._collecting.get((g.name, self.state.floors.floor(g.name).burst_id))
        if c is None or not c.remote or self.state.home is None:
            return
        r = c.receipts.pop(user, None)
        if r is not None:
            self.state.home.receipts(g, c.burst_id, c.talker, [r], now)

    def on_remote_receipts(self, group: str, burst_id: int, receipts: list[m.Receipt],
                           now: float) -> None:
        """Receipts of this node's talker's burst from the listeners of another node."""
        key = (group, burst_id)
        c = self._closing.get(key) or self._collecting.get(key)
        g = self.state.groups.get(group)
        if c is None or g is None or c.remote:
            return  # reported already (it came too late), or not ours
        for r in receipts:
            if r.user in g.members and r.user != c.talker:
                expected = max(0, r.expected)
                c.receipts[r.user] = m.Receipt(r.user, max(0, min(r.received, expected)),
                                               expected)
        if c.deadline is not None:
            self._check(c, now)

    def _check(self, c: _Collecting, now: float) -> None:
        assert c.deadline is not None
        if now >= c.deadline or all(u in c.receipts for u in c.online):
            if c.remote:
                self._send_on(c, now)
            else:
                self._report(c, now)

    def _send_on(self, c: _Collecting, now: float) -> None:
        self._sending.pop((c.group, c.burst_id), None)
        g = self.state.groups.get(c.group)
        if c.receipts and g is not None and self.state.home is not None:
            self.state.home.receipts(g, c.burst_id, c.talker,
                                     [c.receipts[u] for u in sorted(c.receipts)], now)

    def _report(self, c: _Collecting, now: float) -> None:
        self._closing.pop((c.group, c.burst_id), None)
        # a member who left before the end but sent its receipt counts with it
        heard = [c.receipts[u] for u in sorted(c.receipts)]
        silent = [u for u in c.online if u not in c.receipts]
        offline = [u for u in c.offline if u not in c.receipts]
        frames = max([c.frames, *(r.expected for r in heard)])
        self.out.emit(DeliveryReported(c.group, c.talker, c.burst_id, frames,
                                             tuple(heard), tuple(silent), tuple(offline)))
        s = self.state.sessions.by_id.get(c.talker_session)
        if s is not None:
            # a group of thousands: name the receipts that got least, count the rest
            cap = m.REPORT_NAMES
            least = sorted(sorted(heard, key=lambda r: (r.received, r.user))[:cap],
                           key=lambda r: r.user)
            self.out.send_reliable(s, lambda txn: m.DeliveryReport(
                txn, c.group, c.burst_id, frames, least, silent[:cap], offline[:cap],
                len(heard) - len(least), max(0, len(silent) - cap),
                max(0, len(offline) - cap)), now)

    def get_timer(self) -> float | None:
        times = [next(iter(d.values())).deadline for d in (self._closing, self._sending) if d]
        return min((t for t in times if t is not None), default=None)

    def handle_timer(self, now: float) -> None:
        for closing in (self._closing, self._sending):
            while closing:
                c = next(iter(closing.values()))
                if c.deadline is None or now < c.deadline:
                    break
                self._check(c, now)
