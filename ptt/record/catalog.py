"""What is in a recording directory: sessions (one per group directory) and their bursts.

:func:`scan` accepts the recorder's top directory, one group directory, or a single Ogg Opus file
(ptt's or anyone's, chained or not) and never gives up on damage: an unreadable stretch of a file
becomes a problem message (file, byte offset, cause) and everything readable is still listed.

A :class:`Burst` is one Ogg Opus link: its talker, group and start come from the TALKER, GROUP and
START tags, or from the file name ptt gives it (``<start>-b<burst>-<talker>.opus``) when the tags
were lost, or stay unknown for foreign files. A :class:`Session` places its bursts on one timeline:
by start time when known, else one after another (the links of a chained file).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ptt.errors import RecordingError
from ptt.record.events import EVENTS_FILE, parse_utc, read_events, utc_iso
from ptt.record.opusfile import GRANULE_RATE, OpusFile, OpusStream, read_opus
from ptt.textwidth import ljust

OPUS_SUFFIXES = (".opus", ".ogg", ".oga")
_NAME_RE = re.compile(r"^(\d{8}T\d{6}\.\d{3}Z)-b(\d+)-(.+?)(?:-\d+)?$")


@dataclass(slots=True)
class Burst:
    """One recorded transmission (one logical Ogg Opus stream)."""

    path: Path
    link: int  # index of the stream within its file (chained files have several)
    stream: OpusStream
    group: str | None
    talker: str | None
    burst_id: int | None
    start: float | None  # wall time of the first frame, seconds since the epoch
    offset: float = 0.0  # seconds from the start of its session (set by Session.layout)

    @property
    def duration(self) -> float:
        """Playable seconds (what opusdec and ffprobe report)."""
        return self.stream.duration

    @property
    def base_granule(self) -> int:
        """The granule position at which the burst begins.

        In a burst with a known start (ptt's recordings), granule 0 is that start, so audio after a
        destroyed first page keeps its true time. Otherwise (e.g. a capture of a live stream that
        began mid-way) the burst begins at its first readable packet.
        """
        return 0 if self.start is not None else self.stream.start_granule

    @property
    def span(self) -> float:
        """Seconds from the burst's beginning to the end of its last packet (the talk time)."""
        return max(0, self.stream.end_granule - self.base_granule) / GRANULE_RATE

    @property
    def end(self) -> float:
        return self.offset + self.span

    @property
    def complete(self) -> bool:
        return self.stream.complete

    @property
    def problems(self) -> list[str]:
        return self.stream.problems

    @property
    def label(self) -> str:
        who = self.talker or "unknown talker"
        return f"{who} (burst {self.burst_id})" if self.burst_id is not None else who


@dataclass(slots=True)
class Session:
    """The bursts of one group directory (or one file), on one timeline."""

    group: str
    source: Path
    bursts: list[Burst] = field(default_factory=list)
    events_path: Path | None = None
    problems: list[str] = field(default_factory=list)
    event_count: int = 0

    @property
    def start(self) -> float | None:
        starts = [b.start for b in self.bursts if b.start is not None]
        return min(starts) if starts else None

    @property
    def duration(self) -> float:
        """Seconds from the first burst's start to the last burst's end."""
        return max((b.end for b in self.bursts), default=0.0)

    @property
    def talk_time(self) -> float:
        return sum(b.span for b in self.bursts)

    @property
    def talkers(self) -> list[str]:
        seen: dict[str, None] = {}
        for b in self.bursts:
            seen.setdefault(b.talker or "unknown", None)
        return list(seen)

    @property
    def complete(self) -> bool:
        return all(b.complete for b in self.bursts)

    def all_problems(self) -> list[str]:
        out = list(self.problems)
        for b in self.bursts:
            out.extend(p for p in b.problems if p not in out)
        return out

    def layout(self) -> None:
        """Sort bursts and set their offsets: by start time, else one after another."""
        timed = [b for b in self.bursts if b.start is not None]
        if timed and len(timed) == len(self.bursts):
            self.bursts.sort(key=lambda b: (b.start, b.path.name, b.link))
            first = self.bursts[0].start
            assert first is not None
            for b in self.bursts:
                assert b.start is not None
                b.offset = b.start - first
        else:
            self.bursts.sort(key=lambda b: (b.path.name, b.link))
            at = 0.0
            for b in self.bursts:
                b.offset = at
                at += b.span


def _name_fields(path: Path) -> tuple[float | None, int | None, str | None]:
    match = _NAME_RE.match(path.stem)
    if not match:
        return None, None, None
    stamp = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    return stamp.timestamp(), int(match.group(2)), match.group(3)


def bursts_of(opus: OpusFile, path: Path) -> list[Burst]:
    """The bursts of one read file, with metadata from its tags or, failing that, its name."""
    name_start, name_burst, name_talker = _name_fields(path)
    bursts = []
    for link, stream in enumerate(opus.streams):
        tags = stream.tags
        start: float | None = None
        if tags.get("START"):
            try:
                start = parse_utc(tags.get("START") or "")
            except RecordingError:
                stream.problems.append(f"{path}: unreadable START tag {tags.get('START')!r}")
        burst_text = tags.get("BURST")
        burst_id = int(burst_text) if burst_text and burst_text.isdigit() else None
        if len(opus.streams) == 1:
            start = start if start is not None else name_start
            burst_id = burst_id if burst_id is not None else name_burst
        talker = tags.get("TALKER") or (name_talker if len(opus.streams) == 1 else None)
        bursts.append(Burst(path, link, stream, tags.get("GROUP"), talker, burst_id, start))
    return bursts


def load_file(path: str | os.PathLike[str]) -> Session:
    """One Ogg Opus file as a session (a chained file gives one burst per link)."""
    p = Path(path)
    opus = read_opus(p)
    bursts = bursts_of(opus, p)
    group = next((b.group for b in bursts if b.group), None) or p.stem
    session = Session(group, p, bursts, problems=list(opus.problems))
    if not opus.streams and not opus.problems:
        session.problems.append(f"{p}: no Opus audio in this file")
    session.layout()
    return session


def load_group_dir(path: str | os.PathLike[str]) -> Session:
    """A recorder group directory: every Ogg Opus file in it, plus its events.jsonl."""
    folder = Path(path)
    session = Session(folder.name, folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in OPUS_SUFFIXES)
    for file in files:
        try:
            opus = read_opus(file)
        except RecordingError as exc:
            session.problems.append(str(exc))
            continue
        session.problems.extend(opus.problems)
        found = bursts_of(opus, file)
        if not found and not opus.problems:
            session.problems.append(f"{file}: no Opus audio in this file")
        session.bursts.extend(found)
    events = folder / EVENTS_FILE
    if events.exists():
        session.events_path = events
        log = read_events(events)
        session.problems.extend(log.problems)
        session.event_count = len(log.events)
        group = next((e.group for e in log.events), None)
        if group:
            session.group = group
    group = next((b.group for b in session.bursts if b.group), None)
    if group:
        session.group = group
    session.layout()
    return session


def _is_group_dir(path: Path) -> bool:
    return (path / EVENTS_FILE).exists() or any(
        p.suffix.lower() in OPUS_SUFFIXES for p in path.iterdir() if p.is_file()
    )


def scan(path: str | os.PathLike[str]) -> list[Session]:
    """Sessions under ``path``: a file, a group directory, or a directory of group directories."""
    p = Path(path)
    if not p.exists():
        raise RecordingError(f"{p}: no such file or directory")
    if p.is_file():
        return [load_file(p)]
    sessions = []
    if _is_group_dir(p):
        sessions.append(load_group_dir(p))
    for sub in sorted(q for q in p.iterdir() if q.is_dir()):
        if _is_group_dir(sub):
            sessions.append(load_group_dir(sub))
    return sessions


def load(path: str | os.PathLike[str]) -> Session:
    """Exactly one session: a file or a group directory (a top directory must hold just one)."""
    sessions = scan(path)
    if len(sessions) == 1:
        return sessions[0]
    if not sessions:
        raise RecordingError(f"{path}: no recordings here")
    names = ", ".join(s.group for s in sessions)
    raise RecordingError(f"{path} holds several sessions ({names}); name one group directory")


def _clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{sec:06.3f}" if hours else f"{minutes}:{sec:06.3f}"


def format_sessions(sessions: list[Session], *, verbose: bool = False) -> str:
    """A table for ``ptt sessions``; problems follow each session, bursts with ``verbose``."""
    lines = []
    header = (
        f"{'GROUP':<16} {'START (UTC)':<24} {'DURATION':>10} {'TALK':>10} {'BURSTS':>6}  TALKERS"
    )
    lines.append(header)
    for s in sessions:
        start = utc_iso(s.start) if s.start is not None else "-"
        flag = "" if s.complete else "  [incomplete]"
        lines.append(
            f"{ljust(s.group, 16)} {start:<24} {_clock(s.duration):>10} {_clock(s.talk_time):>10} "
            f"{len(s.bursts):>6}  {', '.join(s.talkers) or '-'}{flag}"
        )
        if verbose:
            for b in s.bursts:
                state = "" if b.complete else " (no end page: writer stopped)"
                lines.append(
                    f"    +{_clock(b.offset)}  {_clock(b.span)}  {b.label}  {b.path.name}{state}"
                )
        for problem in s.all_problems():
            lines.append(f"    ! {problem}")
    return "\n".join(lines)
