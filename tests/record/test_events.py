"""The JSON Lines event log: round trip, a truncated last line, bad lines, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptt.errors import RecordingError
from ptt.record.events import EventFile, EventKind, make_event, parse_utc, read_events, utc_iso
from tests.record.conftest import T0


def fill(path: Path) -> None:
    with EventFile(path) as log:
        log.log("ops", EventKind.JOIN, T0, user="alice")
        log.log("ops", EventKind.FLOOR_REQUEST, T0 + 1.0005, user="alice", priority=0)
        log.log("ops", EventKind.FLOOR_GRANT, T0 + 1.01, user="alice", burst=7)
        log.log("ops", EventKind.FLOOR_QUEUED, T0 + 1.5, user="bob", position=1)
        log.log("ops", "floor_release", T0 + 4, user="alice", burst=7, note="Zoë says hi")


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    fill(path)
    got = read_events(path)
    assert got.problems == [] and not got.truncated
    assert [e.kind for e in got.events] == [
        "join",
        "floor_request",
        "floor_grant",
        "floor_queued",
        "floor_release",
    ]
    e = got.events[1]
    assert e.t == pytest.approx(T0 + 1.0005, abs=1e-6) and e.group == "ops" and e.line == 2
    assert dict(e.fields) == {"user": "alice", "priority": 0}
    assert got.events[4].get("note") == "Zoë says hi"
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == ["t", "utc", "group", "kind", "user"]
    assert first["utc"] == "2024-05-01T12:00:00.000Z"
    assert [e.get("user") for e in got.of_kind("floor_grant", "floor_queued")] == ["alice", "bob"]


def test_truncated_last_line_is_reported_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    fill(path)
    data = path.read_bytes()
    path.write_bytes(data[:-25])  # a writer killed in the middle of its last line
    got = read_events(path)
    assert len(got.events) == 4 and got.truncated
    expected = f"{path}: line 5 is truncated (the writer stopped mid-line); "
    expected += "the 4 events before it are intact"
    assert got.problems == [expected]


def test_appending_after_a_crash_starts_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    fill(path)
    path.write_bytes(path.read_bytes()[:-25])
    with EventFile(path) as log:
        log.log("ops", EventKind.LEAVE, T0 + 9, user="alice")
    got = read_events(path)
    assert [e.kind for e in got.events] == [
        "join",
        "floor_request",
        "floor_grant",
        "floor_queued",
        "leave",
    ]
    assert not got.truncated and len(got.problems) == 1
    assert "line 5 is not a valid event" in got.problems[0]


def test_bad_lines_in_the_middle_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    fill(path)
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(2, "[1, 2]\n")
    lines.insert(3, '{"group": "ops", "kind": "x"}\n')
    path.write_text("".join(lines))
    got = read_events(path)
    assert len(got.events) == 5 and not got.truncated
    assert "line 3 is not a valid event (not a JSON object)" in got.problems[0]
    assert "line 4 is not a valid event (missing or invalid 't')" in got.problems[1]


def test_events_are_validated() -> None:
    with pytest.raises(RecordingError, match="invalid event kind"):
        make_event("ops", "Floor Grant", T0)
    with pytest.raises(RecordingError, match="reserved"):
        make_event("ops", "join", T0, group="other")
    with pytest.raises(RecordingError, match="not plain JSON"):
        make_event("ops", "join", T0, user=object())
    with pytest.raises(RecordingError, match="invalid event time"):
        make_event("ops", "join", float("nan"))


def test_times() -> None:
    assert utc_iso(T0 + 0.1234) == "2024-05-01T12:00:00.123Z"
    assert parse_utc("2024-05-01T12:00:00.123Z") == pytest.approx(T0 + 0.123)
    assert parse_utc("2024-05-01T14:00:00+02:00") == T0
    with pytest.raises(RecordingError, match="not an ISO 8601 time"):
        parse_utc("yesterday")


def test_unreadable_log(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot read event log"):
        read_events(tmp_path / "nope.jsonl")
