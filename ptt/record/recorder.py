"""The recorder: fed by the server or a recorder client, writes Ogg Opus files and event logs.

Layout of a recording directory (one *session* per group directory)::

    DIR/<group>/events.jsonl                                  every event of the group, in order
    DIR/<group>/<start>-b<burst>-<talker>.opus                one Ogg Opus file per burst
            e.g. 20240501T120000.123Z-b17-alice.opus

One file per burst because a burst is what has one talker and one start time: its tags say who and
when (GROUP, TALKER, BURST, START), ``opusinfo``/``opusdec``/``ffprobe`` see an ordinary file whose
length is the talk time, a crash damages only the burst being written, overlapping bursts (a
pre-empted talker's last packets) need no interleaving, and replay reads bursts in START order.
Names are in any script (``志愿者``, ``north gate``); paths stay plain ASCII. A name that is already
a safe ASCII slug (``volunteers``) is used as it is; any other becomes its slug (accents dropped,
other characters turned into ``-``) plus ``+`` and the group's id when the caller gave it
(``group_ids``: the server's and the recorder client's wire ``group_id``), else ``+`` and a short
hash of the name: ``志愿者`` is ``group+7``, ``north gate`` is ``north-gate+3``, the talker ``zoë``
is ``zoe+a1b2c3``. ``+`` never occurs in a name, so a slugged name cannot meet a real one. The Opus
tags and the event log keep the real names.

Driving it (no sockets, no clock: every call passes the wall time in seconds since the epoch)::

    rec = Recorder("recordings")
    rec.burst_started("ops", "alice", burst_id=17, wall_time=now)
    rec.frame("ops", 17, seq, opus_packet, wall_time=now)      # as each voice datagram arrives
    rec.event("ops", "floor_grant", now, user="alice", burst=17)
    rec.tick(now)                                               # every 100 ms or so
    rec.burst_ended("ops", 17, wall_time=now)
    rec.close(now)

Timing: a packet's place in its file comes from its sequence number (16-bit, wrapping; counted
from ``first_seq`` when the caller gives it, else from the earliest frame received), not from when
it arrived. ``burst_id`` need only be unique within a group while the burst is open (the floor
numbers bursts per group); a file name already taken gets a ``-2`` suffix. Packets are held briefly and written a page
at a time (``page_ms``, 100 ms by default) plus ``reorder_frames`` of slack, so a packet overtaken
by the next one still lands in its slot. A slot with no packet when its page is written gets a
lost-frame packet (see :func:`ptt.record.opus.lost_packet`): decoders conceal it and the
recording keeps its length. Packets arriving after their page was written are dropped and counted
(``late``), as are duplicates and packets that are not valid Opus.

Crash safety: each page is written with one ``write()`` as soon as it is complete (and by
:meth:`Recorder.tick` once its oldest packet has waited ``page_ms``), so a recorder killed mid-burst
leaves a file that plays up to its last page, at most about ``page_ms`` + ``reorder_frames`` short.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Self

from ptt import __version__
from ptt.audio.codec import FRAME_MS, SAMPLE_RATE
from ptt.errors import PttError, RecordingError
from ptt.record.events import EVENTS_FILE, EventFile, EventKind, utc_iso
from ptt.record.opusfile import (
    DEFAULT_PRE_SKIP,
    GRANULE_RATE,
    OpusFileWriter,
    OpusHead,
    OpusTags,
    lost_packet,
    packet_samples,
)
from ptt.record.private import private_dir

PAGE_MS = 100
REORDER_FRAMES = 1
MAX_GAP_FRAMES = 1_500  # 30 s: a larger forward jump in one burst is garbage, not loss
IDLE_TIMEOUT = 5.0  # seconds without a packet before tick() ends a burst nobody ended
UNKNOWN_TALKER = "unknown"
ENCODER_TAG = f"ptt {__version__} recorder (packets stored as received)"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SLUG_MAX = 40


@cache
def encoder_pre_skip() -> int:
    """Pre-skip for packets from ptt's encoder: its look-ahead in 48 kHz samples (312)."""
    try:
        from ptt.audio.codec import OpusEncoder

        return OpusEncoder().lookahead * GRANULE_RATE // SAMPLE_RATE
    except PttError:
        return DEFAULT_PRE_SKIP


def slug(name: str, empty: str = "x") -> str:
    """The ASCII core of a name for paths: ``Zoë`` -> ``zoe``, ``north gate`` -> ``north-gate``."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    return _SAFE.sub("-", plain.lower()).strip("-.")[:_SLUG_MAX].strip("-.") or empty


def safe_name(name: str, ident: int | None = None, *, empty: str = "x") -> str:
    """A file-name-safe form of a group or user name (see the module docstring).

    A safe ASCII name is itself; any other is ``slug+ident`` (``ident``: the group id), or
    ``slug+hash`` without one, so two names never share a path.
    """
    if _SAFE.search(name) is None and not name.startswith(".") and len(name) <= 64 and name:
        return name
    tag = str(ident) if ident is not None else hashlib.sha1(name.encode()).hexdigest()[:6]
    return f"{slug(name, empty)}+{tag}"


def file_stamp(wall_time: float) -> str:
    """Compact UTC time for file names: ``20240501T120000.123Z`` (no colons)."""
    dt = datetime.fromtimestamp(wall_time, UTC)
    return dt.strftime("%Y%m%dT%H%M%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class BurstSummary:
    """What :meth:`Recorder.burst_ended` (or tick/close) reports about a finished burst file."""

    group: str
    talker: str
    burst_id: int
    path: Path
    start: float
    frames: int  # packets received and stored
    lost: int  # slots filled with lost-frame packets
    late: int
    duplicate: int
    invalid: int
    samples: int  # 48 kHz samples stored (talk time)
    reason: str  # "ended", "idle", "closed"

    @property
    def duration(self) -> float:
        return self.samples / GRANULE_RATE


@dataclass(slots=True)
class _Burst:
    group: str
    talker: str
    burst_id: int
    start: float
    path: Path
    writer: OpusFileWriter
    next_slot: int  # extended sequence number of the next slot to write
    anchored: bool  # next_slot came from the caller's first_seq, not from the first packet
    high: int | None = None  # highest extended sequence number received
    pending: dict[int, bytes] = field(default_factory=dict)
    template: bytes | None = None  # the last real packet written: lost slots copy its TOC
    pending_since: float | None = None
    last_seen: float = 0.0
    frames: int = 0
    lost: int = 0
    late: int = 0
    duplicate: int = 0
    invalid: int = 0

    def unwrap(self, seq: int) -> int:
        ref = self.high if self.high is not None else self.next_slot
        return ref + ((seq - ref + 0x8000) & 0xFFFF) - 0x8000


class Recorder:
    """Writes each burst to its own Ogg Opus file and each group's events to ``events.jsonl``.

    Every method may raise :class:`RecordingError` (disk full, permissions); a burst whose file
    failed is dropped and its later packets ignored, so a caller may log the error and go on.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        page_ms: int = PAGE_MS,
        reorder_frames: int = REORDER_FRAMES,
        idle_timeout: float = IDLE_TIMEOUT,
        pre_skip: int | None = None,
        input_rate: int = SAMPLE_RATE,
        fsync: bool = False,
        group_ids: Mapping[str, int] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.page_frames = max(1, page_ms // FRAME_MS)
        self.page_seconds = self.page_frames * FRAME_MS / 1000
        self.reorder_frames = max(0, reorder_frames)
        self.idle_timeout = idle_timeout
        self.pre_skip = encoder_pre_skip() if pre_skip is None else pre_skip
        self.input_rate = input_rate
        self.fsync = fsync
        self._bursts: dict[tuple[str, int], _Burst] = {}
        self._failed: set[tuple[str, int]] = set()
        self._logs: dict[str, EventFile] = {}
        self.group_ids: dict[str, int] = dict(group_ids or {})
        self._dirs: dict[str, Path] = {}
        self._last_time: float | None = None
        self._closed = False
        try:
            private_dir(self.directory, tighten=False)
        except OSError as exc:
            raise RecordingError(f"cannot create {self.directory}: {exc.strerror or exc}") from exc

    # -- where things go --------------------------------------------------------------------------
    def group_dir(self, group: str) -> Path:
        """Where ``group`` is recorded; fixed at first use, so one session stays in one place."""
        where = self._dirs.get(group)
        if where is None:
            name = safe_name(group, self.group_ids.get(group), empty="group")
            where = self._dirs[group] = self.directory / name
        return where

    def events_path(self, group: str) -> Path:
        return self.group_dir(group) / EVENTS_FILE

    @property
    def active_bursts(self) -> list[tuple[str, int]]:
        return list(self._bursts)

    # -- events -----------------------------------------------------------------------------------
    def event(self, group: str, kind: str | EventKind, wall_time: float, /, **fields: Any) -> None:
        """Append one event to the group's log (flushed at once). See ptt.record.events for kinds."""
        self._check_open()
        self._seen(wall_time)
        self._log(group, wall_time).log(group, str(kind), wall_time, **fields)

    def _log(self, group: str, wall_time: float) -> EventFile:
        log = self._logs.get(group)
        if log is None:
            log = EventFile(self.events_path(group), fsync=self.fsync)
            self._logs[group] = log
            log.log(group, EventKind.RECORDER_START, wall_time, version=__version__)
        return log

    # -- bursts -----------------------------------------------------------------------------------
    def burst_started(
        self,
        group: str,
        talker: str,
        burst_id: int,
        wall_time: float,
        *,
        first_seq: int | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Path:
        """Open the burst's file (headers written and flushed); returns its path.

        ``first_seq`` is the sequence number of the burst's first frame, when the caller knows it:
        frames lost before the first one received are then filled in. Without it the earliest
        frame received before the first page is written starts the file. Extra ``tags`` are added
        to the Opus comments. Starting a burst that is already open changes nothing.
        """
        self._check_open()
        self._seen(wall_time)
        key = (group, burst_id)
        if key in self._bursts:
            return self._bursts[key].path
        self._failed.discard(key)
        folder = self.group_dir(group)
        try:
            private_dir(folder)
        except OSError as exc:
            raise RecordingError(f"cannot create {folder}: {exc.strerror or exc}") from exc
        stem = f"{file_stamp(wall_time)}-b{burst_id}-{safe_name(talker, empty='user')}"
        path = folder / f"{stem}.opus"
        n = 1
        while path.exists():
            n += 1
            path = folder / f"{stem}-{n}.opus"
        comments = [
            ("TITLE", f"{talker} in {group}, burst {burst_id}"),
            ("GROUP", group),
            ("TALKER", talker),
            ("BURST", str(burst_id)),
            ("START", utc_iso(wall_time)),
            ("ENCODER", ENCODER_TAG),
        ]
        comments += [(k.upper(), str(v)) for k, v in (tags or {}).items()]
        head = OpusHead(channels=1, pre_skip=self.pre_skip, input_rate=self.input_rate)
        try:
            writer = OpusFileWriter(path, head, OpusTags("ptt", tuple(comments)), fsync=self.fsync)
        except RecordingError:
            self._failed.add(key)
            raise
        burst = _Burst(
            group,
            talker,
            burst_id,
            wall_time,
            path,
            writer,
            next_slot=first_seq or 0,
            anchored=first_seq is not None,
        )
        burst.last_seen = wall_time
        self._bursts[key] = burst
        self.event(
            group, EventKind.BURST_START, wall_time, talker=talker, burst=burst_id, file=path.name
        )
        return path

    def frame(
        self, group: str, burst_id: int, seq: int, opus_packet: bytes, wall_time: float
    ) -> None:
        """One received Opus packet of a burst. Unknown bursts start implicitly (talker unknown)."""
        self._check_open()
        self._seen(wall_time)
        key = (group, burst_id)
        if key in self._failed:
            return
        burst = self._bursts.get(key)
        if burst is None:
            self.burst_started(group, UNKNOWN_TALKER, burst_id, wall_time, tags={"IMPLICIT": "1"})
            burst = self._bursts[key]
        burst.last_seen = wall_time
        packet = bytes(opus_packet)
        try:
            packet_samples(packet)
        except ValueError:
            burst.invalid += 1
            return
        if burst.high is None and not burst.anchored:
            burst.next_slot = seq & 0xFFFF
        slot = burst.unwrap(seq)
        if slot < burst.next_slot:
            window = self.page_frames + self.reorder_frames
            if burst.anchored or burst.writer.packets or burst.next_slot - slot > window:
                burst.late += 1
                return
            burst.next_slot = slot  # an earlier first frame overtaken by later ones
        if slot in burst.pending:
            burst.duplicate += 1
            return
        if slot - burst.next_slot > MAX_GAP_FRAMES:
            if burst.high is None and burst.writer.packets == 0:
                burst.next_slot = slot  # the first frame is far from first_seq: trust the frame
            else:
                burst.invalid += 1
                return
        burst.pending[slot] = packet
        if burst.pending_since is None:
            burst.pending_since = wall_time
        if burst.high is None or slot > burst.high:
            burst.high = slot
        while burst.high - burst.next_slot + 1 >= self.page_frames + self.reorder_frames:
            self._write(burst, burst.next_slot + self.page_frames - 1, wall_time)

    def burst_ended(self, group: str, burst_id: int, wall_time: float) -> BurstSummary | None:
        """Write the burst's remaining packets and the EOS page; None if the burst is unknown."""
        self._check_open()
        self._seen(wall_time)
        self._failed.discard((group, burst_id))
        burst = self._bursts.get((group, burst_id))
        return None if burst is None else self._end(burst, wall_time, "ended")

    def tick(self, wall_time: float) -> list[BurstSummary]:
        """Write pages whose packets have waited ``page_ms``; end bursts idle ``idle_timeout``.

        Call it every 100 ms or so; returns the bursts it ended.
        """
        self._check_open()
        self._seen(wall_time)
        ended = []
        for burst in list(self._bursts.values()):
            if wall_time - burst.last_seen >= self.idle_timeout:
                ended.append(self._end(burst, wall_time, "idle"))
            elif (
                burst.pending_since is not None
                and burst.high is not None
                and wall_time - burst.pending_since >= self.page_seconds
            ):
                self._write(burst, burst.high, wall_time)
        return ended

    def close(self, wall_time: float | None = None) -> list[BurstSummary]:
        """End every open burst and close the logs. Safe to call twice."""
        if self._closed:
            return []
        when = wall_time if wall_time is not None else (self._last_time or 0.0)
        ended = []
        errors: list[RecordingError] = []
        for burst in list(self._bursts.values()):
            try:
                ended.append(self._end(burst, when, "closed"))
            except RecordingError as exc:
                errors.append(exc)
        for group, log in self._logs.items():
            try:
                log.log(group, EventKind.RECORDER_STOP, when)
            except RecordingError as exc:
                errors.append(exc)
            log.close()
        self._logs.clear()
        self._closed = True
        if errors:
            raise errors[0]
        return ended

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RecordingError("the recorder is closed")

    def _seen(self, wall_time: float) -> None:
        if self._last_time is None or wall_time > self._last_time:
            self._last_time = wall_time

    def _slots(self, burst: _Burst, last: int) -> list[bytes]:
        """Take slots next_slot..last out of pending, filling empty ones with lost-frame packets."""
        packets = []
        for slot in range(burst.next_slot, last + 1):
            packet = burst.pending.pop(slot, None)
            if packet is None:
                like = burst.template or burst.pending[min(burst.pending)]
                packets.append(lost_packet(like))
                burst.lost += 1
            else:
                packets.append(packet)
                burst.template = packet
                burst.frames += 1
        burst.next_slot = last + 1
        return packets

    def _write(self, burst: _Burst, last: int, wall_time: float) -> None:
        packets = self._slots(burst, last)
        burst.pending_since = wall_time if burst.pending else None
        try:
            burst.writer.write(packets)
        except RecordingError:
            self._drop(burst)
            raise

    def _end(self, burst: _Burst, wall_time: float, reason: str) -> BurstSummary:
        key = (burst.group, burst.burst_id)
        last = burst.high if burst.high is not None else burst.next_slot - 1
        try:
            burst.writer.close(self._slots(burst, last))
        except RecordingError:
            self._drop(burst)
            raise
        del self._bursts[key]
        summary = BurstSummary(
            burst.group,
            burst.talker,
            burst.burst_id,
            burst.path,
            burst.start,
            burst.frames,
            burst.lost,
            burst.late,
            burst.duplicate,
            burst.invalid,
            burst.writer.granule,
            reason,
        )
        self.event(
            burst.group,
            EventKind.BURST_END,
            wall_time,
            talker=burst.talker,
            burst=burst.burst_id,
            file=burst.path.name,
            frames=burst.frames,
            lost=burst.lost,
            late=burst.late,
            duplicate=burst.duplicate,
            invalid=burst.invalid,
            duration_ms=round(summary.duration * 1000),
            reason=reason,
        )
        return summary

    def _drop(self, burst: _Burst) -> None:
        key = (burst.group, burst.burst_id)
        self._bursts.pop(key, None)
        self._failed.add(key)
        burst.writer.abandon()
