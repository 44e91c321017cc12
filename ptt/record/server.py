"""A server's groups recorded: what ``ptt server --record`` makes of its events and relayed voice.

:class:`ServerGroupsRecording` is sans-I/O (wall times in); the server's adapter
(:class:`~ptt.server.recording.ServerRecording`) says which groups record and feeds it every
:class:`~ptt.protocol.server.ServerEvent` and every accepted voice datagram of those groups:

* voice: Opus packets as relayed, into the group's burst files (:mod:`ptt.record.live`);
* the floor as the arbiter decided it (requests, grants, queue positions, denials, revokes with
  who pre-empted, releases, idle), joins and leaves, text pages (sealed ones without their text)
  and delivery reports, into ``events.jsonl``.

End-to-end encrypted groups: the server cannot hear their voice, so it records their floor events
only, and notes once per burst (in the log and as a ``voice_encrypted`` event) that the audio is
end-to-end encrypted. To record such a group's audio, a member records it (``ptt record``), with
its own key.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable

from ptt.protocol import floor as fl
from ptt.protocol.messages import RevokeCause
from ptt.protocol.server import (
    DeliveryReported,
    FloorEvent,
    FloorRequested,
    MemberJoined,
    MemberLeft,
    PageStored,
    ServerEvent,
)
from ptt.record.events import EventKind
from ptt.record.live import CLOSED_MEMORY, LiveRecording
from ptt.wire.voice import VoiceFlags, VoiceHeader

__all__ = ["ServerGroupsRecording"]

log = logging.getLogger("ptt.recording")


class ServerGroupsRecording:
    """The recorded groups of a server, into ``live`` (see the module docstring)."""

    def __init__(self, live: LiveRecording) -> None:
        self.live = live
        self.names: set[str] = set()  # the groups being recorded
        self.sealed: set[str] = set()  # of those, the groups whose voice is end-to-end encrypted
        self._noted: deque[tuple[str, int]] = deque(maxlen=CLOSED_MEMORY)  # bursts logged
        self._last_request: dict[str, str] = {}  # group -> last requester (who pre-empted)

    def record(self, names: Iterable[str], sealed: Iterable[str], wall: float) -> None:
        """Record ``names`` from now on (``sealed``: those of them that are encrypted); the
        open bursts of groups that stop recording end now."""
        names = set(names)
        stopped = self.names - names
        self.names = names
        self.sealed = set(sealed) & names
        for name in stopped:
            self.live.end_group(name, wall)

    def voice(self, group: str, talker: str | None, header: VoiceHeader, payload: bytes,
              wall: float) -> None:
        """One relayed voice datagram of the recorded ``group``, split."""
        if group in self.sealed or header.flags & VoiceFlags.ENCRYPTED:
            self._note_sealed(group, header, wall)
            return
        self.live.voice(group, talker, header, payload, wall)

    def _note_sealed(self, group: str, header: VoiceHeader, wall: float) -> None:
        """Once per burst: say that its audio is not recorded, and why."""
        if header.flags & VoiceFlags.PROBE or (group, header.burst_id) in self._noted:
            return
        self._noted.append((group, header.burst_id))
        log.info("[%s] burst %d is end-to-end encrypted: events recorded, audio not (a member "
                 "records it with 'ptt record')", group, header.burst_id)
        self.live.event(group, "voice_encrypted", wall, burst=header.burst_id)

    def event(self, ev: ServerEvent, wall: float) -> None:
        """One event of the server core (those of groups not recorded are left out)."""
        names, live = self.names, self.live
        if isinstance(ev, FloorEvent):
            self._floor(ev.event, wall)
        elif isinstance(ev, FloorRequested) and ev.group in names:
            self._last_request[ev.group] = ev.user
            live.event(ev.group, EventKind.FLOOR_REQUEST, wall, user=ev.user,
                       priority=int(ev.priority))
        elif isinstance(ev, MemberJoined) and ev.group in names:
            live.event(ev.group, EventKind.JOIN, wall, user=ev.user)
        elif isinstance(ev, MemberLeft) and ev.group in names:
            live.event(ev.group, EventKind.LEAVE, wall, user=ev.user)
        elif isinstance(ev, PageStored) and ev.page.group in names:
            p = ev.page
            content: dict[str, object] = {"sealed": True} if p.epoch else {"text": _text(p.body)}
            live.event(p.group, EventKind.PAGE, wall, user=p.sender, page=p.page_id,
                       recipients=len(p.recipients), urgent=p.urgent, **content)
        elif isinstance(ev, DeliveryReported) and ev.group in names:
            live.event(ev.group, EventKind.DELIVERY, wall, talker=ev.talker,
                       burst=ev.burst_id, frames=ev.frames,
                       heard=[{"user": r.user, "received": r.received,
                               "expected": r.expected} for r in ev.heard],
                       silent=list(ev.silent), offline=list(ev.offline))

    def _floor(self, ev: object, wall: float) -> None:
        group = getattr(ev, "group", None)
        if group not in self.names:
            return
        live = self.live
        if isinstance(ev, fl.Granted):
            live.event(group, EventKind.FLOOR_GRANT, wall, user=ev.user, burst=ev.burst_id,
                       priority=int(ev.priority), queued=ev.from_queue)
        elif isinstance(ev, fl.Queued):
            live.event(group, EventKind.FLOOR_QUEUED, wall, user=ev.user, position=ev.position)
        elif isinstance(ev, fl.Denied):
            live.event(group, EventKind.FLOOR_DENY, wall, user=ev.user,
                       cause=ev.cause.name.lower())
        elif isinstance(ev, fl.Revoked):
            extra = {}
            if ev.cause is RevokeCause.PREEMPTED and self._last_request.get(group):
                extra["by"] = self._last_request[group]
            live.event(group, EventKind.FLOOR_REVOKE, wall, user=ev.user, burst=ev.burst_id,
                       cause=ev.cause.name.lower(), **extra)
        elif isinstance(ev, fl.BurstEnded):
            # the relay refuses the burst's voice from now on: nothing more can arrive for it
            live.end_burst(group, ev.burst_id, wall)
            live.event(group, EventKind.FLOOR_RELEASE, wall, user=ev.user, burst=ev.burst_id,
                       reason=ev.reason.value)
        elif isinstance(ev, fl.Idle):
            live.event(group, EventKind.FLOOR_IDLE, wall, burst=ev.burst_id)
        elif isinstance(ev, fl.QueueChanged):
            live.event(group, "floor_queue", wall, queue=list(ev.queue))


def _text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")  # the core checked it was UTF-8
