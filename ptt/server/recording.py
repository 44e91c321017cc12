"""The server's recording (``ptt server --record``): its groups' voice and events, live.

:class:`ServerRecording` feeds a :class:`~ptt.record.live.LiveRecording` from a
:class:`~ptt.server.app.PttServer` through its hooks (``listeners`` for every ServerEvent,
``voice_taps`` for every accepted voice datagram), so the server's code paths stay untouched::

    recording = ServerRecording(server, server.config.record_dir, record_all=True)
    recording.attach()          # after server.start(); recording.close() at shutdown

Which groups: every group with ``record_all`` (``ptt server --record DIR``), else those whose store
record flag is set (``ptt group create/update --record``), re-read after every ``group.*``
administration command. One-to-one calls are private conversations, not groups, and are never
recorded.

End-to-end encrypted groups (every group not created ``--plain``): the server cannot hear
their voice, so it records their floor events only, and notes once per burst (in the log and as a
``voice_encrypted`` event) that the audio is end-to-end encrypted. To record such a group's
audio, a member records it (``ptt record``), with its own key.

Clocks: the server core runs on the loop's monotonic ``now``; recordings need wall time. The
offset between the two is measured once at attach, so the times in a recording keep the same
spacing as the floor's timers even if the wall clock is stepped while the server runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from typing import TYPE_CHECKING

from ptt.errors import ProtocolError, PttError
from ptt.protocol import floor as fl
from ptt.protocol.messages import RevokeCause
from ptt.protocol.server import (
    AdminCommand,
    DeliveryReported,
    FloorEvent,
    FloorRequested,
    MemberJoined,
    MemberLeft,
    PageStored,
    ServerEvent,
)
from ptt.record.events import EventKind
from ptt.record.live import CLOSED_MEMORY, TICK_INTERVAL, LiveRecording
from ptt.wire.voice import VoiceFlags, VoiceHeader, decode_voice, peek_group

if TYPE_CHECKING:
    from ptt.server.app import PttServer

log = logging.getLogger("ptt.recording")

class ServerRecording:
    """Records a running :class:`PttServer`'s groups (see the module docstring)."""

    def __init__(self, server: PttServer, directory: str | os.PathLike[str] | None = None,
                 *, record_all: bool = False) -> None:
        self.server = server
        self.record_all = record_all
        self.live = LiveRecording(directory or server.config.record_dir)
        self._recorded: dict[int, str] = {}  # group id -> name, of the groups being recorded
        self._names: set[str] = set()
        self._sealed: set[str] = set()  # recorded groups whose voice is end-to-end encrypted
        self._noted: deque[tuple[str, int]] = deque(maxlen=CLOSED_MEMORY)  # bursts logged
        self._last_request: dict[str, str] = {}  # group -> last requester (who pre-empted)
        self._offset = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.closer: asyncio.Task[None] | None = None  # closes this when the server closes

    def wall(self, now: float) -> float:
        return now + self._offset

    def attach(self) -> None:
        """Hook into the server (after ``server.start()``) and start the page timer."""
        loop = asyncio.get_running_loop()
        self._offset = time.time() - loop.time()
        self.refresh()
        self.server.listeners.append(self.on_event)
        self.server.voice_taps.append(self.on_voice)
        self._timer = loop.call_later(TICK_INTERVAL, self._tick)
        where = self.live.directory
        if self.record_all:
            log.info("recording every group into %s", where)
        elif self._names:
            log.info("recording %s into %s", ", ".join(sorted(self._names)), where)

    def close(self) -> None:
        """Finish every open burst and close the logs (the files are already playable)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for hooks, fn in ((self.server.listeners, self.on_event),
                          (self.server.voice_taps, self.on_voice)):
            if fn in hooks:
                hooks.remove(fn)  # type: ignore[arg-type]
        self.live.close(self.wall(asyncio.get_running_loop().time())
                        if _loop_running() else time.time())

    def refresh(self) -> None:
        """Re-read which groups record (the store's flags may have changed)."""
        store = self.server.store
        flagged: set[str] = set()
        encrypted: set[str] = set()
        if store is not None:
            try:
                groups = store.list_groups()
                flagged = {g.name for g in groups if g.record}
                encrypted = {g.name for g in groups if g.encrypted}
            except PttError as exc:
                log.error("recording: cannot read the groups' record flags: %s", exc)
        recorded = {}
        for name, g in self.server.core.groups.items():
            if g.private:
                continue
            if self.record_all or name in flagged:
                recorded[g.group_id] = name
                self.live.set_group_id(name, g.group_id)
        stopped = self._names - set(recorded.values())
        self._recorded = recorded
        self._names = set(recorded.values())
        self._sealed = {name for name in self._names
                        if name in encrypted
                        or self.server.core.groups[name].key_epoch > 0}
        wall = time.time() if not _loop_running() else self.wall(asyncio.get_running_loop().time())
        for name in stopped:
            self.live.end_group(name, wall)

    # -- hooks --------------------------------------------------------------------------------
    def on_voice(self, data: bytes, now: float) -> None:
        gid = peek_group(data)
        group = self._recorded.get(gid)
        if group is None:
            return  # the hot path for groups that do not record: one dict lookup
        try:
            header, payload = decode_voice(data)
        except ProtocolError:
            return
        if group in self._sealed or header.flags & VoiceFlags.ENCRYPTED:
            self._note_sealed(group, header, now)
            return
        s = self.server.core.sessions.by_id.get(header.sender)
        self.live.voice(group, s.user if s is not None else None, header, payload,
                        self.wall(now))

    def _note_sealed(self, group: str, header: VoiceHeader, now: float) -> None:
        """Once per burst: say that its audio is not recorded, and why."""
        if header.flags & VoiceFlags.PROBE or (group, header.burst_id) in self._noted:
            return
        self._noted.append((group, header.burst_id))
        log.info("[%s] burst %d is end-to-end encrypted: events recorded, audio not (a member "
                 "records it with 'ptt record')", group, header.burst_id)
        self.live.event(group, "voice_encrypted", self.wall(now), burst=header.burst_id)

    def on_event(self, ev: ServerEvent, now: float) -> None:
        if isinstance(ev, AdminCommand):
            if ev.op.startswith("group."):
                self.refresh()
            return
        wall = self.wall(now)
        if isinstance(ev, FloorEvent):
            self._floor(ev.event, wall)
        elif isinstance(ev, FloorRequested) and ev.group in self._names:
            self._last_request[ev.group] = ev.user
            self.live.event(ev.group, EventKind.FLOOR_REQUEST, wall, user=ev.user,
                            priority=int(ev.priority))
        elif isinstance(ev, MemberJoined) and ev.group in self._names:
            self.live.event(ev.group, EventKind.JOIN, wall, user=ev.user)
        elif isinstance(ev, MemberLeft) and ev.group in self._names:
            self.live.event(ev.group, EventKind.LEAVE, wall, user=ev.user)
        elif isinstance(ev, PageStored) and ev.page.group in self._names:
            p = ev.page
            content: dict[str, object] = {"sealed": True} if p.epoch else {"text": _text(p.body)}
            self.live.event(p.group, EventKind.PAGE, wall, user=p.sender, page=p.page_id,
                            recipients=len(p.recipients), urgent=p.urgent, **content)
        elif isinstance(ev, DeliveryReported) and ev.group in self._names:
            self.live.event(ev.group, EventKind.DELIVERY, wall, talker=ev.talker,
                            burst=ev.burst_id, frames=ev.frames,
                            heard=[{"user": r.user, "received": r.received,
                                    "expected": r.expected} for r in ev.heard],
                            silent=list(ev.silent), offline=list(ev.offline))

    def _floor(self, ev: object, wall: float) -> None:
        group = getattr(ev, "group", None)
        if group not in self._names:
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

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        self.live.tick(self.wall(loop.time()))
        self._timer = loop.call_later(TICK_INTERVAL, self._tick)


def attach_recording(server: PttServer, *, record_all: bool = False,
                     directory: str | os.PathLike[str] | None = None) -> ServerRecording:
    """Attach a :class:`ServerRecording` and close it when the server closes."""
    recording = ServerRecording(server, directory, record_all=record_all)
    recording.attach()

    async def close_when_done() -> None:
        try:
            await server.wait_closed()
        finally:  # also when asyncio.run cancels this task at shutdown
            recording.close()

    recording.closer = asyncio.get_running_loop().create_task(close_when_done())
    return recording


def _text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")  # the core checked it was UTF-8


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


__all__ = ["ServerRecording", "attach_recording"]
