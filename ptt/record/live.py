"""Recording of live groups: voice datagrams and events, with wall times, into a :class:`Recorder`.

:class:`LiveRecording` turns what a network endpoint sees into ``ptt.record`` calls: voice
datagrams (header + redundancy payload, ``ptt.wire.voice`` and ``ptt.media.packet``) become Opus
packets stored exactly as received, and a frame lost on the way is taken from a later packet's
redundant copy (a copy is the same bytes, not an approximation). Two endpoints feed one: the
server (``ptt server --record``, :mod:`ptt.server.recording`) and a member recording a group
(``ptt record``, :mod:`ptt.client.recorder`)::

    live = LiveRecording(directory)
    live.set_group_id("volunteers", 3)
    live.voice("volunteers", talker, header, payload, wall)   # every voice datagram
    live.event("volunteers", EventKind.FLOOR_GRANT, wall, user="ann", burst=7)
    live.tick(wall)                                           # every TICK_INTERVAL
    live.close(wall)                                          # bursts finished, logs closed
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ptt.audio.codec import FRAME_SECONDS
from ptt.errors import ProtocolError, RecordingError
from ptt.media.packet import parse_payload
from ptt.record.events import EventKind
from ptt.record.recorder import UNKNOWN_TALKER, Recorder
from ptt.wire.voice import VoiceFlags, VoiceHeader

__all__ = ["CLOSED_MEMORY", "END_GRACE", "TICK_INTERVAL", "LiveRecording"]

log = logging.getLogger("ptt.recording")

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
