"""Recording on the live system: voice datagrams and floor events into a :class:`Recorder`.

Two pieces, bottom up:

* :class:`LiveRecording` turns what a network endpoint sees into ``ptt.record`` calls with wall
  times: voice datagrams (header + redundancy payload, ``ptt.wire.voice`` and
  ``ptt.media.packet``) become Opus packets stored exactly as received, and a frame lost on the
  way is taken from a later packet's redundant copy (a copy is the same bytes, not an
  approximation). The server uses it here; the recorder client (``ptt record``,
  :mod:`ptt.client.recorder`) uses it too.
* :class:`ServerRecording` attaches one to a :class:`~ptt.server.app.PttServer` through its hooks
  (``listeners`` for every ServerEvent, ``voice_taps`` for every accepted voice datagram), so
  the server's code paths stay untouched::

      recording = ServerRecording(server, server.config.record_dir, record_all=True)
      recording.attach()          # after server.start(); recording.close() at shutdown

Which groups: every group with ``record_all`` (``ptt server --record DIR``), else those whose store
record flag is set (``ptt group create/update --record``), re-read after every ``group.*``
administration command. One-to-one calls are private conversations, not groups, and are never
recorded.

End-to-end encrypted groups (issue 8; every group not created ``--plain``): the server cannot hear
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
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptt.audio.codec import FRAME_MS
from ptt.errors import ProtocolError, PttError, RecordingError
from ptt.media.packet import parse_payload
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
from ptt.record.recorder import UNKNOWN_TALKER, Recorder
from ptt.wire.voice import VoiceFlags, VoiceHeader, decode_voice, peek_group

if TYPE_CHECKING:
    from ptt.server.app import PttServer

log = logging.getLogger("ptt.recording")

FRAME_SECONDS = FRAME_MS / 1000
TICK_INTERVAL = 0.1  # Recorder.tick: pages are written at most this late
END_GRACE = 0.1  # a burst ended by its END_OF_BURST frame waits this long for overtaken frames
SEEN_WINDOW = 64  # sequence numbers remembered per burst, to use only copies of missing frames
START_SEQ_LIMIT = 250  # a first frame with seq beyond this (5 s) means we joined mid-burst
CLOSED_MEMORY = 64  # ended bursts remembered, so their stragglers do not start a new file
RETRY_AFTER = 2.0  # a paused recording tries one real write again this long after the last


@dataclass(slots=True)
class _Open:
    talker: str
    seen: set[int] = field(default_factory=set)
    order: deque[int] = field(default_factory=deque)
    end_at: float | None = None  # wall time at which to end it (END_OF_BURST seen)

    def mark(self, seq: int) -> bool:
        """Remember ``seq``; False if it was already seen."""
        if seq in self.seen:
            return False
        self.seen.add(seq)
        self.order.append(seq)
        if len(self.order) > SEEN_WINDOW:
            self.seen.discard(self.order.popleft())
        return True


class LiveRecording:
    """Voice datagrams and events of live groups -> a :class:`Recorder` (made on first use).

    Every method takes the wall time; nothing raises. A :class:`RecordingError` (disk full,
    permissions) *pauses* the recording: it is logged once, and until a write succeeds again
    nothing is written (voice and events are counted in ``skipped``), but one file or event line
    is tried every ``RETRY_AFTER`` seconds; the first that succeeds resumes recording, which is
    logged once too. A full disk so costs one failed write per ``RETRY_AFTER``, not a new file
    per voice packet, and whoever feeds the recording (the server's relay) never notices.
    """

    def __init__(self, directory: str | os.PathLike[str], **recorder_options: Any) -> None:
        self.directory = Path(directory)
        self._options = recorder_options
        self._recorder: Recorder | None = None
        self._group_ids: dict[str, int] = {}
        self._open: dict[tuple[str, int], _Open] = {}
        self._closed: deque[tuple[str, int]] = deque(maxlen=CLOSED_MEMORY)
        self.errors = 0
        self.skipped = 0  # calls not made while paused (voice frames, events, pages)
        self.finished: list[Any] = []  # BurstSummary of every burst written, in order
        self._paused_at: float | None = None  # wall time of the failure that paused it
        self._retry_at = 0.0

    @property
    def recorder(self) -> Recorder:
        if self._recorder is None:
            self._recorder = Recorder(self.directory, group_ids=self._group_ids, **self._options)
        return self._recorder

    def set_group_id(self, group: str, group_id: int) -> None:
        """The group's wire id: a name that is not a plain ASCII slug is stored as ``slug+id``."""
        self._group_ids[group] = group_id
        if self._recorder is not None:
            self._recorder.group_ids[group] = group_id

    @property
    def active(self) -> bool:
        return self._recorder is not None

    # -- input ------------------------------------------------------------------------------------
    def event(self, group: str, kind: str | EventKind, wall: float, **fields: Any) -> None:
        self._safely(lambda: self.recorder.event(group, kind, wall, **fields), wall)

    def voice(self, group: str, talker: str | None, header: VoiceHeader, payload: bytes,
              wall: float) -> None:
        """One voice datagram of ``group`` (already split by :func:`decode_voice`)."""
        if header.flags & (VoiceFlags.PROBE | VoiceFlags.ENCRYPTED):
            return  # no audio, or audio we cannot store as Opus
        key = (group, header.burst_id)
        if key in self._closed:
            return  # a straggler of a burst already written out
        try:
            parsed = parse_payload(payload)
        except ProtocolError:
            return  # the relay checked the header only; a broken payload is not audio
        b = self._open.get(key)
        if b is None:
            b = self._start(group, talker or UNKNOWN_TALKER, header, wall)
            if b is None:
                return
        rec = self.recorder
        # copies first, oldest first: the primary may complete a page, and a page is written
        # at once, so a missing frame must be in place before its page goes out
        for offset, frame in reversed(parsed.redundancy):
            seq = (header.seq - offset) & 0xFFFF
            if b.mark(seq):  # a frame we never got: its exact copy rides in this packet
                self._safely(partial(rec.frame, group, header.burst_id, seq, frame, wall), wall,
                             probe=False)
        b.mark(header.seq)
        self._safely(lambda: rec.frame(group, header.burst_id, header.seq, parsed.primary, wall),
                     wall, probe=False)
        if header.flags & VoiceFlags.END_OF_BURST:
            b.end_at = wall + END_GRACE

    def _start(self, group: str, talker: str, header: VoiceHeader, wall: float) -> _Open | None:
        # the talker numbers frames from 0: the burst began seq frames before this one
        joined_late = header.seq > START_SEQ_LIMIT
        start = wall if joined_late else wall - header.seq * FRAME_SECONDS
        first = None if joined_late else 0
        ok, _ = self._safely(lambda: self.recorder.burst_started(
            group, talker, header.burst_id, start, first_seq=first), wall)
        if not ok:
            return None
        b = self._open[(group, header.burst_id)] = _Open(talker)
        return b

    def end_burst(self, group: str, burst_id: int, wall: float, grace: float = 0.0) -> None:
        """The burst is over (floor event, new talker): end it now or after ``grace``."""
        b = self._open.get((group, burst_id))
        if b is not None:
            b.end_at = wall + grace
            if grace <= 0:
                self._end((group, burst_id), wall)

    def end_group(self, group: str, wall: float, grace: float = 0.0, keep: int | None = None
                  ) -> None:
        """End every open burst of ``group`` except ``keep``."""
        for g, burst_id in list(self._open):
            if g == group and burst_id != keep:
                self.end_burst(g, burst_id, wall, grace)

    def tick(self, wall: float) -> None:
        """Call every ``TICK_INTERVAL``: writes waiting pages, ends bursts that are due."""
        if self._recorder is None:
            return
        for key, b in list(self._open.items()):
            if b.end_at is not None and wall >= b.end_at:
                self._end(key, wall)
        _, ended = self._safely(lambda: self._recorder.tick(wall) if self._recorder else [],
                                wall, probe=False)
        for summary in ended or []:
            self._open.pop((summary.group, summary.burst_id), None)
            self._closed.append((summary.group, summary.burst_id))
            self.finished.append(summary)

    def close(self, wall: float) -> None:
        if self._recorder is None:
            return
        _, ended = self._safely(lambda: self._recorder.close(wall) if self._recorder else [],
                                wall, probe=False, paused_too=True)
        self.finished.extend(ended or [])
        self._open.clear()

    # -- internals --------------------------------------------------------------------------------
    def _end(self, key: tuple[str, int], wall: float) -> None:
        self._open.pop(key, None)
        self._closed.append(key)
        _, summary = self._safely(lambda: self.recorder.burst_ended(key[0], key[1], wall), wall,
                                  probe=False)
        if summary is not None:
            self.finished.append(summary)

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def _safely(self, fn: Callable[[], Any], wall: float, *, probe: bool = True,
                paused_too: bool = False) -> tuple[bool, Any]:
        """``(True, fn())``, or ``(False, None)`` after a RecordingError (which pauses the
        recording) or while paused. ``probe``: ``fn`` writes for sure (opens a burst's file,
        appends an event), so its success proves writing works again: while paused only such
        calls are made, one per ``RETRY_AFTER``. ``paused_too``: make the call even while
        paused (closing at shutdown)."""
        if self._paused_at is not None and not paused_too and (
                not probe or wall < self._retry_at):
            self.skipped += 1
            return False, None
        try:
            result = fn()
        except RecordingError as exc:
            self.errors += 1
            if self._paused_at is None:
                self._paused_at = wall
                self.skipped = 0
                log.error("recording paused: %s; nothing is recorded until a write succeeds "
                          "again (tried every %g s)", exc, RETRY_AFTER)
            self._retry_at = wall + RETRY_AFTER
            return False, None
        if self._paused_at is not None and probe:
            log.warning("recording resumed after %.1f s (%d voice frames, pages and events "
                        "not recorded meanwhile)", wall - self._paused_at, self.skipped)
            self._paused_at = None
        return True, result


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
                        or getattr(self.server.core.groups[name], "key_epoch", 0) > 0}
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


__all__ = ["LiveRecording", "ServerRecording", "attach_recording"]
