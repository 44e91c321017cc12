"""Floor control on the server: floor requests and releases in, floor events out as messages.

``ptt.protocol.floor`` holds every floor rule (who talks, the queue, the timers, which priority a
role may ask for, a release naming an older burst); this module translates. A request's priority
is the one :class:`~ptt.protocol.floor.RolePolicy` gives the requester's role, and one it refuses
is answered ``DenyCause.NOT_ALLOWED`` and reported like any other denial. The floor knows users;
this module maps the sessions (a user's devices) onto them: the device that holds the floor or
asked for it speaks for its user, and another device of the same user is told to retry later.
The requester gets its answer (granted, queued, denied); everyone else gets the news as pushes:
the grantee of a queue grant a reliable ``FloorGranted``, a revoked talker a reliable
``FloorRevoked``, the group ``FloorTaken`` / ``FloorIdle`` (repeated, ``STATE_REPEATS``), the
queued their new ``QueuePosition``. Multicast members get the holder notice (``server_relay``)
before the grantee can start talking.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Sequence

from ptt.protocol import floor as fl
from ptt.protocol import messages as m
from ptt.protocol.server_delivery import Delivery
from ptt.protocol.server_events import FloorEvent, FloorRequested
from ptt.protocol.server_outbox import Outbox
from ptt.protocol.server_relay import Relay
from ptt.protocol.server_state import GroupEntry, ServerState
from ptt.protocol.session import Session

# bursts the floor ended on its own: the talker is told why, as if revoked (the metrics count
# these with the revokes, from this table)
END_TO_REVOKE = {
    fl.EndReason.SILENCE: m.RevokeCause.SILENCE,
    fl.EndReason.NO_START: m.RevokeCause.NO_START,
    fl.EndReason.REMOVED: m.RevokeCause.REMOVED,
    fl.EndReason.FAILOVER: m.RevokeCause.FAILOVER,
}
# floor news (taken, idle) goes to the group again this long after it changed, unless it changed
# again: at 30% random loss all 8 copies are lost one time in 15,000, and the heartbeat digest
# catches that member up. Blind copies beat acknowledged ones here (an ack can be lost too), and
# cost a few control datagrams per member per change, against 50 voice packets a second.
STATE_REPEATS = (0.2, 0.4, 0.6, 0.8, 1.1, 1.4, 1.7)


class FloorControl:
    """FloorRequest/FloorRelease from sessions; floor events out as answers and pushes."""

    def __init__(self, state: ServerState, out: Outbox, relay: Relay, delivery: Delivery
                 ) -> None:
        self.state = state
        self.out = out
        self.relay = relay
        self.delivery = delivery
        self.policy = fl.RolePolicy(emergency_roles=state.config.emergency_roles)
        self._repeats: list[tuple[float, int, int]] = []  # (when, group id, version) to repeat

    def get_timer(self) -> float | None:
        """When floor news is due again (the floors' own timers: ``state.floors``). Repeats of
        news that newer news replaced are dropped here, unfired: each change queues
        ``len(STATE_REPEATS)`` of them, and a floor taken and released every few tens of ms
        woke the server for a dozen stale ones per cycle, each a turn of its loop (a timer
        turn on every node of a cluster, inside other floor requests' paths)."""
        heap, by_id = self._repeats, self.state.by_id
        while heap:
            _, gid, version = heap[0]
            g = by_id.get(gid)
            if g is not None and g.floor_news is not None and g.version == version:
                return heap[0][0]
            heapq.heappop(heap)  # a version only grows: never due again
        return None

    def handle_timer(self, now: float) -> None:
        """The floors' due timers, then the floor news due again."""
        self.floor_events(self.state.floors.handle_timer(now), now)
        heap = self._repeats
        while heap and heap[0][0] <= now:
            _, gid, version = heapq.heappop(heap)
            g = self.state.by_id.get(gid)
            if g is not None and g.floor_news is not None and g.version == version:
                self.out.announce(g, g.floor_news)

    def on_floor_request(self, s: Session, msg: m.FloorRequest, now: float) -> None:
        g = self.state.groups.get(msg.group)
        if g is None:
            self.out.answer(s, msg.txn, m.Error(msg.txn, m.ErrorCode.NOT_FOUND,
                                                  f"unknown group '{msg.group}'"), now)
            return
        prio = self.policy.priority(s.role, msg.priority)
        if prio is None:
            self._deny_before_floor(s, g, msg, msg.priority, m.DenyCause.NOT_ALLOWED, now)
            return
        if self.state.held_by_another_device(g, s.user, s.session_id, s.device):  # one at a time
            self._deny_before_floor(s, g, msg, prio, m.DenyCause.RETRY_LATER, now)
            return
        g.requesters[s.user] = s.session_id  # this device asks (and is queued) for the user
        self.out.emit(FloorRequested(g.name, s.user, prio))
        home = self.state.home
        if home is not None and home.elsewhere(g.name, now):
            home.request(s, g, msg.txn, prio, now)  # answered by answer_request
            return
        self.answer_request(s, msg.txn, g, self.state.floors.request(g.name, s.user, prio, now),
                            now)

    def answer_request(self, s: Session, txn: int, g: GroupEntry,
                       events: Sequence[fl.FloorEvent], now: float) -> None:
        """The floor's decision on ``s``'s request: its answer, then the news for the rest."""
        reply: m.FloorResponse | None = None
        rest = []
        direct: fl.Granted | None = None
        for ev in events:
            if reply is None and getattr(ev, "user", None) == s.user:
                if isinstance(ev, fl.Granted) and not ev.from_queue:
                    reply = m.FloorResponse(txn, g.name, m.FloorResult.GRANTED,
                                            burst_id=ev.burst_id,
                                            max_talk_ms=int(ev.max_talk * 1000))
                elif isinstance(ev, fl.Queued):
                    reply = m.FloorResponse(txn, g.name, m.FloorResult.QUEUED,
                                            position=ev.position)
                elif isinstance(ev, fl.Denied):
                    reply = m.FloorResponse(txn, g.name, m.FloorResult.DENIED,
                                            cause=ev.cause)
            if isinstance(ev, fl.Granted) and ev.user == s.user and not ev.from_queue:
                direct = ev
                continue
            rest.append(ev)
        if reply is None:  # cannot happen with a correct floor; never leave a request unanswered
            reply = m.FloorResponse(txn, g.name, m.FloorResult.DENIED,
                                    cause=m.DenyCause.RETRY_LATER)
        if reply.result == m.FloorResult.QUEUED:
            g.last_queue = self.state.floors.floor(g.name).queue
        # multicast listeners learn the holder before its first frame can reach them; then the
        # answer, which the requester waits on; then the news for everyone else
        if direct is not None:
            g.holder_sid = s.session_id
            self.relay.notice_holder(g, direct)
        self.out.answer(s, txn, reply, now)
        if direct is not None:
            self.out.emit(FloorEvent(direct))
            self._granted(g, direct, now, requester=s)
        self.floor_events(rest, now)

    def _deny_before_floor(self, s: Session, g: GroupEntry, msg: m.FloorRequest,
                           prio: m.Priority, cause: m.DenyCause, now: float) -> None:
        """Refuse a request the floor never sees; reported like any other denial, so logs,
        counters and metrics see it."""
        self.out.answer(s, msg.txn, m.FloorResponse(msg.txn, g.name, m.FloorResult.DENIED,
                                                 cause=cause), now)
        self.out.emit(FloorRequested(g.name, s.user, prio))
        self.out.emit(FloorEvent(fl.Denied(g.name, s.user, cause)))

    def on_floor_release(self, s: Session, msg: m.FloorRelease, now: float) -> None:
        g = self.state.groups.get(msg.group)
        # the floor is the user's: only the device that holds it or asked for it gives it up
        if g is not None and self.state.floor_session(g, s.user) is s:
            home = self.state.home
            if home is not None and home.elsewhere(g.name, now):
                home.release(g.name, s.user, s.device, msg.burst_id, now)
            else:
                self.floor_events(self.state.floors.release(msg.group, s.user, now,
                                                            msg.burst_id), now)
        self.out.answer(s, msg.txn, m.FloorReleased(msg.txn, msg.group), now)

    def floor_events(self, events: Sequence[object], now: float,
                      group: GroupEntry | None = None) -> None:
        for ev in events:
            self.out.emit(FloorEvent(ev))
            g = self.state.groups.get(getattr(ev, "group", "")) or group
            if g is None:
                continue
            if isinstance(ev, fl.Granted):
                self._granted(g, ev, now)
            elif isinstance(ev, fl.Revoked):
                self._revoke(ev.user, g, ev.burst_id, ev.cause, ev.grace, now)
            elif isinstance(ev, fl.BurstEnded):
                g.targets.clear()
                if g.grant_key is not None and g.grant_burst == ev.burst_id:
                    # never resend a grant for a burst that is over
                    self.out.reliable.ack(g.grant_key)
                    g.grant_key = None
                self.delivery.ended(g, ev, now)
                cause = END_TO_REVOKE.get(ev.reason)
                if cause is m.RevokeCause.REMOVED and g.name not in self.state.groups:
                    cause = m.RevokeCause.GROUP_DELETED  # the whole group went, not the member
                if cause is not None:
                    self._revoke(ev.user, g, ev.burst_id, cause, 0.0, now)
            elif isinstance(ev, fl.Idle):
                g.busy_since = None  # its members may relax (ptt.protocol.keepalive)
                g.version += 1
                self._announce_floor(g, m.FloorIdle(g.name, ev.burst_id, g.version), now)
            elif isinstance(ev, fl.QueueChanged):
                self._queue_changed(g, ev.queue, now)

    def _announce_floor(self, g: GroupEntry, news: m.FloorTaken | m.FloorIdle, now: float
                        ) -> None:
        """Floor news for the whole group, repeated at STATE_REPEATS while it is the latest:
        one lost datagram must not leave a member showing a talker who is long gone."""
        self.out.announce(g, news)
        g.floor_news = news
        if not g.joined:  # nobody to repeat it to (a cluster's home with no member of its
            return  # own): no timers to push now and pop later; a member joining is sent it
        for delay in STATE_REPEATS:
            heapq.heappush(self._repeats, (now + delay, g.group_id, news.version))

    def _granted(self, g: GroupEntry, ev: fl.Granted, now: float,
                 requester: Session | None = None) -> None:
        """Tell the grantee (unless it asked just now and has its answer) and the group."""
        g.targets.clear()
        holder = requester  # the session granted (None: on another node of a cluster)
        if requester is None:
            g.holder_sid = g.requesters.get(ev.user, 0)  # the device that queued
            self.relay.notice_holder(g, ev)  # before the grantee can start talking
            s = holder = self.state.floor_session(g, ev.user)
            if s is not None:
                window = int(self.state.config.floor.start_window * 1000)
                g.grant_key = self.out.send_reliable(s, lambda txn: m.FloorGranted(
                    txn, g.name, ev.burst_id, int(ev.max_talk * 1000), window), now)
                g.grant_burst = ev.burst_id
        # after holder_sid names the grantee's device: the previous holder's (on another node
        # of a cluster, ASKED_ELSEWHERE) would take this node's talker for a remote one, and
        # the report would never be sent
        self.delivery.started(g, ev, holder)
        if g.busy_since is None:  # the floor news below tightens its members' cadence
            g.busy_since = now
            tightened = self.state.sessions.tightened
            for member in g.joined.values():
                tightened(member)
        g.version += 1  # the requester hears it too: its version must follow
        self._announce_floor(g, m.FloorTaken(g.name, ev.user, ev.burst_id, ev.priority,
                                             int(ev.max_talk * 1000), g.version,
                                             list(self.state.floors.floor(g.name).queue)), now)

    def _revoke(self, user: str, g: GroupEntry, burst_id: int, cause: m.RevokeCause,
                grace: float, now: float) -> None:
        s = self.state.floor_session(g, user)
        group = g.name
        if s is not None:
            self.out.send_reliable(s, lambda txn: m.FloorRevoked(txn, group, burst_id, cause,
                                                              int(grace * 1000)), now)

    def _queue_changed(self, g: GroupEntry, queue: tuple[str, ...], now: float) -> None:
        """The queued whose place moved get it at once; the whole group gets the floor news
        again with the new queue under a new version, repeated like any floor change, so a
        member that lost either is caught up (by a repeat, or by the heartbeat digest)."""
        before = {u: i for i, u in enumerate(g.last_queue, 1)}
        for i, u in enumerate(queue, 1):
            s = self.state.floor_session(g, u) if before.get(u) != i else None
            if s is not None:
                self.out.send(s, m.QueuePosition(g.name, i))
        g.last_queue = queue
        news = g.floor_news
        # a grant from the queue already announced the queue it left
        if isinstance(news, m.FloorTaken) and news.queue != list(queue):
            g.version += 1
            self._announce_floor(g, dataclasses.replace(news, version=g.version,
                                                        queue=list(queue)), now)
