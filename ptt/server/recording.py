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

What becomes of the events and the voice, and of end-to-end encrypted groups (every group not
created ``--plain``), is :mod:`ptt.record.server`'s to decide.

Clocks: the server core runs on the loop's monotonic ``now``; recordings need wall time. The
offset between the two is measured once at attach, so the times in a recording keep the same
spacing as the floor's timers even if the wall clock is stepped while the server runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

from ptt.errors import ProtocolError, PttError
from ptt.protocol.server import AdminCommand, ServerEvent
from ptt.record.live import TICK_INTERVAL, LiveRecording
from ptt.record.server import ServerGroupsRecording
from ptt.wire.voice import decode_voice, peek_group

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
        self.groups = ServerGroupsRecording(self.live)
        self._recorded: dict[int, str] = {}  # group id -> name, of the groups being recorded
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
        elif self.groups.names:
            log.info("recording %s into %s", ", ".join(sorted(self.groups.names)), where)

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
        self._recorded = recorded
        names = set(recorded.values())
        sealed = {name for name in names
                  if name in encrypted or self.server.core.groups[name].key_epoch > 0}
        wall = time.time() if not _loop_running() else self.wall(asyncio.get_running_loop().time())
        self.groups.record(names, sealed, wall)

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
        s = self.server.core.sessions.by_id.get(header.sender)
        self.groups.voice(group, s.user if s is not None else None, header, payload,
                          self.wall(now))

    def on_event(self, ev: ServerEvent, now: float) -> None:
        if isinstance(ev, AdminCommand):
            if ev.op.startswith("group."):
                self.refresh()
            return
        self.groups.event(ev, self.wall(now))

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


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


__all__ = ["ServerRecording", "attach_recording"]
