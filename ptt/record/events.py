"""The event log: one JSON object per line (JSON Lines), appended and flushed line by line.

Each line is::

    {"t": 1700000000.123456, "utc": "2023-11-14T22:13:20.123Z", "group": "ops", "kind": "floor_grant",
     "user": "alice", "burst": 7}

``t`` is the wall clock in seconds since the epoch as passed in by the caller (nothing here reads a
clock), ``utc`` the same instant for people, then ``group`` and ``kind``, then the kind's own fields.
Fields by kind (what the server and the replayer exchange; extra fields are kept as they are):

==================  =========================================================================
join, leave         user
floor_request       user, priority (0 normal, 1 high, 2 emergency)
floor_grant         user, burst; ``queued: true`` when granted from the queue
floor_queued        user, position (1 = next)
floor_deny          user, cause
floor_revoke        user, burst, cause (pre-empted, max talk time, ...), by (pre-empting user)
floor_release       user, burst
floor_idle          burst (the burst that ended)
burst_start         talker, burst, file (name of the .opus file beside the log)
burst_end           talker, burst, file, frames, lost, late, duplicate, invalid, duration_ms
delivery            talker, burst, frames (the burst's frames), heard (list of {user, received,
                    expected}), silent (online, no receipt), offline: the talker's delivery report
page                user (the sender), page (its id), recipients (how many), urgent, and
                    text for a plain group; ``sealed: true`` instead for an encrypted one
                    (the server keeps only ciphertext)
recorder_start,     (written by the Recorder when it opens and closes the log)
recorder_stop
==================  =========================================================================

Crash safety: every line is written with one ``write()`` and flushed, so a killed writer leaves at
most one partial last line. Reading tolerates it (and any other unparsable line) and reports it
in ``problems``; reopening a log for appending first ends such a partial line, so the next event
starts on a line of its own.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Self, TextIO

from ptt.errors import RecordingError
from ptt.record.private import open_private, private_dir

EVENTS_FILE = "events.jsonl"
_RESERVED = ("t", "utc", "group", "kind")
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class EventKind(StrEnum):
    JOIN = "join"
    LEAVE = "leave"
    FLOOR_REQUEST = "floor_request"
    FLOOR_GRANT = "floor_grant"
    FLOOR_QUEUED = "floor_queued"
    FLOOR_DENY = "floor_deny"
    FLOOR_REVOKE = "floor_revoke"
    FLOOR_RELEASE = "floor_release"
    FLOOR_IDLE = "floor_idle"
    BURST_START = "burst_start"
    BURST_END = "burst_end"
    DELIVERY = "delivery"
    PAGE = "page"
    RECORDER_START = "recorder_start"
    RECORDER_STOP = "recorder_stop"


def utc_iso(wall_time: float) -> str:
    """ISO 8601 UTC with milliseconds: ``2024-05-01T12:00:00.123Z``."""
    dt = datetime.fromtimestamp(wall_time, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_utc(text: str) -> float:
    """Seconds since the epoch from an ISO 8601 time (``Z`` or an offset; naive means UTC)."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise RecordingError(f"not an ISO 8601 time: {text!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


@dataclass(frozen=True, slots=True)
class Event:
    """One logged event. ``fields`` holds everything but the four common keys."""

    t: float
    group: str
    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0  # 1-based line number when read from a file

    @property
    def utc(self) -> str:
        return utc_iso(self.t)

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def to_json(self) -> str:
        record: dict[str, Any] = {
            "t": round(self.t, 6),
            "utc": self.utc,
            "group": self.group,
            "kind": self.kind,
        }
        record.update(self.fields)
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str, line: int = 0) -> Event:
        record = json.loads(text)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")  # noqa: TRY004 - one error type per bad line
        t, group, kind = record.get("t"), record.get("group"), record.get("kind")
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
            raise ValueError("missing or invalid 't'")
        if not isinstance(group, str) or not isinstance(kind, str):
            raise ValueError("missing 'group' or 'kind'")  # noqa: TRY004
        fields = {k: v for k, v in record.items() if k not in _RESERVED}
        return cls(float(t), group, kind, fields, line)


def make_event(group: str, kind: str, wall_time: float, /, **fields: Any) -> Event:
    """A validated event: kind is lower_snake_case, fields are JSON values, times finite."""
    if not _KIND_RE.match(str(kind)):
        raise RecordingError(f"invalid event kind {kind!r} (lower_snake_case expected)")
    if not math.isfinite(wall_time):
        raise RecordingError(f"invalid event time {wall_time!r}")
    clash = [k for k in fields if k in _RESERVED]
    if clash:
        raise RecordingError(f"event field name(s) {', '.join(clash)} are reserved")
    event = Event(float(wall_time), str(group), str(kind), dict(fields))
    try:
        event.to_json()
    except (TypeError, ValueError) as exc:
        raise RecordingError(f"event {kind} has a field that is not plain JSON: {exc}") from exc
    return event


class EventFile:
    """Appends events to a JSON Lines file, one flushed ``write()`` per line."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self._fsync = fsync
        try:
            private_dir(self.path.parent)
            fd = open_private(self.path, os.O_RDWR | os.O_APPEND)
            self._file: TextIO | None = open(fd, "a+", encoding="utf-8")  # noqa: SIM115
            self._end_partial_line()
        except OSError as exc:
            raise RecordingError(
                f"cannot open event log {self.path}: {exc.strerror or exc}"
            ) from exc

    def _end_partial_line(self) -> None:
        assert self._file is not None
        size = self._file.seek(0, os.SEEK_END)
        if size:
            with open(self.path, "rb") as raw:
                raw.seek(size - 1)
                if raw.read(1) != b"\n":
                    self._file.write("\n")  # a killed writer's partial line stays alone on its line
                    self._file.flush()

    def append(self, event: Event) -> None:
        if self._file is None:
            raise RecordingError(f"event log {self.path} is closed")
        try:
            self._file.write(event.to_json() + "\n")
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            raise RecordingError(
                f"cannot write event log {self.path}: {exc.strerror or exc}"
            ) from exc

    def log(self, group: str, kind: str, wall_time: float, /, **fields: Any) -> Event:
        event = make_event(group, kind, wall_time, **fields)
        self.append(event)
        return event

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(slots=True)
class EventLogContents:
    path: str
    events: list[Event] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    truncated: bool = False  # the last line was cut off (the writer stopped mid-line)

    def of_kind(self, *kinds: str) -> list[Event]:
        return [e for e in self.events if e.kind in kinds]


def parse_events(text: str, name: str = "<events>") -> EventLogContents:
    """Every readable event; bad lines are skipped and reported, a cut-off last line flagged."""
    result = EventLogContents(name)
    lines = text.split("\n")
    ends_cleanly = lines[-1] == ""
    if ends_cleanly:
        lines.pop()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            result.events.append(Event.from_json(line, number))
        except ValueError as exc:
            last = number == len(lines) and not ends_cleanly
            if last:
                result.truncated = True
                result.problems.append(
                    f"{name}: line {number} is truncated (the writer stopped mid-line); "
                    f"the {len(result.events)} events before it are intact"
                )
            else:
                result.problems.append(f"{name}: line {number} is not a valid event ({exc})")
    return result


def read_events(path: str | os.PathLike[str]) -> EventLogContents:
    """Read an event log written by :class:`EventFile`; see :func:`parse_events`."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise RecordingError(f"cannot read event log {name}: {exc.strerror or exc}") from exc
    return parse_events(data.decode("utf-8", "replace"), name)


def iter_events(path: str | os.PathLike[str]) -> Iterator[Event]:
    return iter(read_events(path).events)
