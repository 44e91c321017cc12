"""Floor control on the server: requests checked against roles, floor events turned into messages.

``ptt.protocol.floor`` decides who talks; this module speaks for it. A request is first checked
against the requester's role: HIGH only for HIGH_ROLES (whose NORMAL requests count as HIGH),
EMERGENCY only for ``ServerCoreConfig.emergency_roles``; a refused one is answered
``DenyCause.NOT_ALLOWED`` and reported like any other denial. The requester gets its answer
(granted, queued, denied); everyone else gets the news as pushes: the grantee of a queue grant a
reliable ``FloorGranted``, a revoked talker a reliable ``FloorRevoked``, the group ``FloorTaken`` /
``FloorIdle``, the queued their new ``QueuePosition``. Multicast members get the holder notice
(``server_relay``) before the grantee can start talking.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ptt.protocol import floor as fl
from ptt.protocol import messages as m
from ptt.protocol.server_base import HIGH_ROLES, GroupEntry, ServerBase
from ptt.protocol.server_events import FloorEvent, FloorRequested
from ptt.protocol.session import Session

# bursts the floor ended on its own: the talker is told why, as if revoked
_END_TO_REVOKE = {
    fl.EndReason.SILENCE: m.RevokeCause.SILENCE,
    fl.EndReason.NO_START: m.RevokeCause.NO_START,
    fl.EndReason.REMOVED: m.RevokeCause.REMOVED,
}


class FloorControl(ServerBase):
    """FloorRequest/FloorRelease from sessions; floor events out as answers and pushes."""

    def _on_floor_request(self, s: Session, msg: m.FloorRequest, now: float) -> None:
        g = self.groups.get(msg.group)
        if g is None:
            self._answer(s, msg.txn, m.Error(msg.txn, m.ErrorCode.NOT_FOUND,
                                                  f"unknown group '{msg.group}'"), now)
            return
        prio = msg.priority
        if (prio == m.Priority.HIGH and s.role not in HIGH_ROLES) or (
                prio == m.Priority.EMERGENCY and s.role not in self.config.emergency_roles):
            self._deny_before_floor(s, g, msg, prio, m.DenyCause.NOT_ALLOWED, now)
            return
        if prio == m.Priority.NORMAL and s.role in HIGH_ROLES:
            prio = m.Priority.HIGH
        f = self.floors.floor(g.name)
        if f.holder == s.user and g.holder_sid != s.session_id and (
                g.holder_sid in self.sessions.by_id):
            # the floor is the user's, held by another of its devices: one talks at a time
            self._deny_before_floor(s, g, msg, prio, m.DenyCause.RETRY_LATER, now)
            return
        g.requesters[s.user] = s.session_id  # this device asks (and is queued) for the user
        self._events.append(FloorRequested(g.name, s.user, prio))
        events = self.floors.request(g.name, s.user, prio, now)
        reply: m.FloorResponse | None = None
        rest = []
        direct: fl.Granted | None = None
        for ev in events:
            if reply is None and getattr(ev, "user", None) == s.user:
                if isinstance(ev, fl.Granted) and not ev.from_queue:
                    reply = m.FloorResponse(msg.txn, g.name, m.FloorResult.GRANTED,
                                            burst_id=ev.burst_id,
                                            max_talk_ms=int(ev.max_talk * 1000))
                elif isinstance(ev, fl.Queued):
                    reply = m.FloorResponse(msg.txn, g.name, m.FloorResult.QUEUED,
                                            position=ev.position)
                elif isinstance(ev, fl.Denied):
                    reply = m.FloorResponse(msg.txn, g.name, m.FloorResult.DENIED,
                                            cause=ev.cause)
            if isinstance(ev, fl.Granted) and ev.user == s.user and not ev.from_queue:
                direct = ev
                continue
            rest.append(ev)
        if reply is None:  # cannot happen with a correct floor; never leave a request unanswered
            reply = m.FloorResponse(msg.txn, g.name, m.FloorResult.DENIED,
                                    cause=m.DenyCause.RETRY_LATER)
        if reply.result == m.FloorResult.QUEUED:
            g.last_queue = self.floors.floor(g.name).queue
        # multicast listeners learn the holder before its first frame can reach them; then the
        # answer, which the requester waits on; then the news for everyone else
        if direct is not None:
            g.holder_sid = s.session_id
            self._notice_holder(g, direct)
        self._answer(s, msg.txn, reply, now)
        if direct is not None:
            self._events.append(FloorEvent(direct))
            self._granted(g, direct, now, requester=s)
        self._floor_events(rest, now)

    def _deny_before_floor(self, s: Session, g: GroupEntry, msg: m.FloorRequest,
                           prio: m.Priority, cause: m.DenyCause, now: float) -> None:
        """Refuse a request the floor never sees; reported like any other denial, so logs,
        counters and metrics see it."""
        self._answer(s, msg.txn, m.FloorResponse(msg.txn, g.name, m.FloorResult.DENIED,
                                                 cause=cause), now)
        self._events.append(FloorRequested(g.name, s.user, prio))
        self._events.append(FloorEvent(fl.Denied(g.name, s.user, cause)))

    def _on_floor_release(self, s: Session, msg: m.FloorRelease, now: float) -> None:
        f = self.floors.floor(msg.group) if msg.group in self.groups else None
        # a give-back naming an older burst (a resent grant) must not end the current one
        stale = (f is not None and msg.burst_id != 0 and f.holder == s.user
                 and f.burst_id != msg.burst_id)
        g = self.groups.get(msg.group)
        if g is not None and self._floor_session(g, s.user) is not s:
            stale = True  # another device of the user holds the floor or asked for it
        if f is not None and not stale:
            self._floor_events(self.floors.release(msg.group, s.user, now), now)
        self._answer(s, msg.txn, m.FloorReleased(msg.txn, msg.group), now)

    def _floor_events(self, events: Sequence[object], now: float,
                      group: GroupEntry | None = None) -> None:
        for ev in events:
            self._events.append(FloorEvent(ev))
            g = self.groups.get(getattr(ev, "group", "")) or group
            if g is None:
                continue
            if isinstance(ev, fl.Granted):
                self._granted(g, ev, now)
            elif isinstance(ev, fl.Revoked):
                self._revoke(ev.user, g, ev.burst_id, ev.cause, ev.grace, now)
            elif isinstance(ev, fl.BurstEnded):
                g.targets.clear()
                if g.grant_key is not None and g.grant_burst == ev.burst_id:
                    self._reliable.ack(g.grant_key)  # never resend a grant for a burst that is over
                    g.grant_key = None
                self._delivery_ended(g, ev, now)
                cause = _END_TO_REVOKE.get(ev.reason)
                if cause is m.RevokeCause.REMOVED and g.name not in self.groups:
                    cause = m.RevokeCause.GROUP_DELETED  # the whole group went, not the member
                if cause is not None:
                    self._revoke(ev.user, g, ev.burst_id, cause, 0.0, now)
            elif isinstance(ev, fl.Idle):
                g.version += 1
                self._announce_floor(g, m.FloorIdle(g.name, ev.burst_id, g.version), now)
            elif isinstance(ev, fl.QueueChanged):
                self._queue_changed(g, ev.queue, now)

    def _granted(self, g: GroupEntry, ev: fl.Granted, now: float,
                 requester: Session | None = None) -> None:
        """Tell the grantee (unless it asked just now and has its answer) and the group."""
        g.targets.clear()
        self._delivery_started(g, ev)
        if requester is None:
            g.holder_sid = g.requesters.get(ev.user, 0)  # the device that queued
            self._notice_holder(g, ev)  # before the grantee can start talking
            s = self._floor_session(g, ev.user)
            if s is not None:
                window = int(self.config.floor.start_window * 1000)
                g.grant_key = self._send_reliable(s, lambda txn: m.FloorGranted(
                    txn, g.name, ev.burst_id, int(ev.max_talk * 1000), window), now)
                g.grant_burst = ev.burst_id
        g.version += 1  # the requester hears it too: its version must follow
        self._announce_floor(g, m.FloorTaken(g.name, ev.user, ev.burst_id, ev.priority,
                                             int(ev.max_talk * 1000), g.version,
                                             list(self.floors.floor(g.name).queue)), now)

    def _revoke(self, user: str, g: GroupEntry, burst_id: int, cause: m.RevokeCause,
                grace: float, now: float) -> None:
        s = self._floor_session(g, user)
        group = g.name
        if s is not None:
            self._send_reliable(s, lambda txn: m.FloorRevoked(txn, group, burst_id, cause,
                                                              int(grace * 1000)), now)

    def _queue_changed(self, g: GroupEntry, queue: tuple[str, ...], now: float) -> None:
        """The queued whose place moved get it at once; the whole group gets the floor news
        again with the new queue under a new version, repeated like any floor change, so a
        member that lost either is caught up (by a repeat, or by the heartbeat digest)."""
        before = {u: i for i, u in enumerate(g.last_queue, 1)}
        for i, u in enumerate(queue, 1):
            s = self._floor_session(g, u) if before.get(u) != i else None
            if s is not None:
                self._send(s, m.QueuePosition(g.name, i))
        g.last_queue = queue
        news = g.floor_news
        # a grant from the queue already announced the queue it left
        if isinstance(news, m.FloorTaken) and news.queue != list(queue):
            g.version += 1
            self._announce_floor(g, dataclasses.replace(news, version=g.version,
                                                        queue=list(queue)), now)
