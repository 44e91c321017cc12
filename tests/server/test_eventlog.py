"""The event log: one line per server event, key=value text or JSON, on a live server too."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptt.client.connection import Connection
from ptt.client.keys import add_user
from ptt.config import ServerConfig
from ptt.protocol import floor as fl
from ptt.protocol import messages as m
from ptt.protocol.client import Participation
from ptt.protocol.server import Dropped, FloorEvent, FloorRequested, SessionStarted
from ptt.server.app import PttServer
from ptt.server.eventlog import (
    EventLogger,
    JsonLinesFormatter,
    attach_event_log,
    configure_event_log,
    iso_utc,
    logfmt,
)

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A private logger writing bare messages to a buffer (the handler's format is swappable)."""
    logger = logging.getLogger(f"test.events.{id(object())}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    yield logger, buf, handler
    logger.removeHandler(handler)


def lines(buf: io.StringIO) -> list[str]:
    return buf.getvalue().splitlines()


def test_each_event_is_one_key_value_line(captured: tuple[logging.Logger, io.StringIO,
                                                          logging.Handler]) -> None:
    logger, buf, _ = captured
    ev = EventLogger(logger, offset=T0)
    ev.on_event(FloorRequested("ops", "ann", m.Priority.NORMAL), 1.0)
    ev.on_event(FloorEvent(fl.Granted("ops", "ann", 917, m.Priority.NORMAL, 30.0, False)), 1.0)
    ev.on_event(FloorEvent(fl.Revoked("ops", "ann", 917, m.RevokeCause.PREEMPTED, 0.5)), 2.0)
    ev.on_event(FloorEvent(fl.BurstEnded("ops", "ann", 917, fl.EndReason.PREEMPTED)), 2.5)
    ev.on_event(FloorEvent(fl.Idle("ops", 917)), 2.5)
    ev.on_event(Dropped(("127.0.0.1", 4000), 'malformed datagram: "x=1" said the peer'), 3.0)
    assert lines(buf) == [
        "event=floor_requested group=ops user=ann priority=normal",
        "event=floor_granted group=ops user=ann burst=917 priority=normal queued=false",
        "event=floor_revoked group=ops user=ann burst=917 cause=preempted grace=0.500",
        "event=burst_ended group=ops user=ann burst=917 reason=preempted",
        "event=floor_idle group=ops burst=917",
        # free text from the wire is quoted, so the line still splits on spaces
        'event=dropped addr=127.0.0.1:4000 reason="malformed datagram: \\"x=1\\" said the peer"',
    ]
    assert logfmt({"a": "two\nlines", "b": None}) == 'a="two\\nlines"'


def test_json_lines_carry_ts_and_fields(captured: tuple[logging.Logger, io.StringIO,
                                                        logging.Handler]) -> None:
    logger, buf, handler = captured
    configure_event_log(json=True, handler=handler)
    ev = EventLogger(logger, offset=T0)
    ev.on_event(SessionStarted("ann", 42, ("::1", 5000, 0, 0)), 0.25)
    ev.on_event(FloorEvent(fl.Denied("ops", "cat", m.DenyCause.QUEUE_FULL)), 1.5)
    logger.info("not an event")
    first, second, other = map(json.loads, lines(buf))
    assert first == {"ts": "2024-05-01T12:00:00.250Z", "event": "session_started",
                     "user": "ann", "session": 42, "addr": "[::1]:5000"}
    assert second == {"ts": "2024-05-01T12:00:01.500Z", "event": "floor_denied",
                      "group": "ops", "user": "cat", "cause": "queue_full"}
    assert other["msg"] == "not an event" and other["level"] == "info" and "ts" in other
    assert iso_utc(T0) == "2024-05-01T12:00:00.000Z"


def test_a_record_is_what_logger_log_makes_timed_at_its_event(
        captured: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    """The record is built from a template (no caller lookup, no clock read per line): the
    same fields as ``logger.log``'s but its time, which is the event's, for both levels."""
    logger, _, handler = captured
    records: list[logging.LogRecord] = []
    keep = logging.Handler()
    keep.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(keep)
    try:
        ev = EventLogger(logger, offset=T0)
        ev.on_event(SessionStarted("ann", 7, ("10.0.0.1", 5000)), 1.25)
        ev.on_event(Dropped(("10.0.0.2", 9), "malformed"), 2.5)
        ev.on_event(SessionStarted("bob", 8, ("10.0.0.3", 5000)), 3.0)
        logger.info("%s", "plain")
    finally:
        logger.removeHandler(keep)
    made = records[-1]
    assert [r.levelname for r in records] == ["INFO", "WARNING", "INFO", "INFO"]
    assert [r.created for r in records[:3]] == [T0 + 1.25, T0 + 2.5, T0 + 3.0]
    assert records[0].msecs == pytest.approx(250.0)
    assert records[1].relativeCreated - records[0].relativeCreated == pytest.approx(1250.0)
    assert records[0].getMessage() == "event=session_started user=ann session=7 addr=10.0.0.1:5000"
    assert records[0].ptt_event["ts"] == "2024-05-01T12:00:01.250Z"  # type: ignore[attr-defined]
    for r in records[:3]:  # every attribute logger.log sets, with the same values but time
        assert set(vars(made)) - {"ptt_event"} <= set(vars(r))
        for k in ("name", "process", "thread", "threadName", "exc_info", "stack_info"):
            assert getattr(r, k) == getattr(made, k), k
    assert handler.format(records[0]) == records[0].getMessage()


def test_a_flood_of_drops_is_rate_limited_and_counted(
        captured: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, buf, _ = captured
    ev = EventLogger(logger)
    for i in range(50):
        ev.on_event(Dropped(("127.0.0.1", 4000), "empty datagram"), 10.0 + i * 0.001)
    assert len(lines(buf)) == 5
    ev.on_event(Dropped(("127.0.0.1", 4000), "empty datagram"), 11.5)
    assert lines(buf)[-1].endswith("suppressed=45")


def test_configure_json_reformats_stderr_handlers_only() -> None:
    root = logging.getLogger()
    to_stderr = logging.StreamHandler(sys.stderr)
    elsewhere = logging.StreamHandler(io.StringIO())
    root.addHandler(to_stderr)
    root.addHandler(elsewhere)
    try:
        configure_event_log(json=False)
        assert not isinstance(to_stderr.formatter, JsonLinesFormatter)
        configure_event_log(json=True)
        assert isinstance(to_stderr.formatter, JsonLinesFormatter)
        assert not isinstance(elsewhere.formatter, JsonLinesFormatter)
    finally:
        root.removeHandler(to_stderr)
        root.removeHandler(elsewhere)


def test_a_live_server_logs_its_floor_in_order(tmp_path: Path, captured: tuple[
        logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, buf, handler = captured
    configure_event_log(json=True, handler=handler)

    async def main() -> None:
        server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / "ptt.db",
                                        record_dir=tmp_path / "rec"), iterations=1000)
        await server.start()
        attach_event_log(server, logger)
        cred = tomllib.loads((tmp_path / "coordinator.toml").read_text())
        async with Connection(server.address, cred["user"], cred["token"]) as coord:
            tokens = {u: await add_user(coord, u)
                      for u in ("ann", "bob")}
            await coord.admin("group.create", {"name": "ops"})
            await coord.admin("group.add", {"name": "ops", "users": ["ann", "bob"]})
        async with Connection(server.address, "ann", tokens["ann"]) as ann, \
                Connection(server.address, "bob", tokens["bob"]) as bob:
            await ann.join("ops")
            await bob.join("ops")
            assert (await ann.request_floor("ops")).state is Participation.HAS_PERMISSION
            assert (await bob.request_floor("ops")).state is Participation.QUEUED
            await ann.release_floor("ops")
            assert (await bob.wait_floor("ops", 3)).state is Participation.HAS_PERMISSION
            await bob.release_floor("ops")
            for _ in range(100):  # until the server has logged bob's release
                if '"floor_idle"' in buf.getvalue():
                    break
                await asyncio.sleep(0.02)
        server.close()

    asyncio.run(main())
    events = [json.loads(line) for line in lines(buf)]
    floor = [(e["event"], e.get("user")) for e in events if e["event"].startswith(
        ("floor_", "burst_"))]
    assert floor == [
        ("floor_requested", "ann"), ("floor_granted", "ann"),
        ("floor_requested", "bob"), ("floor_queued", "bob"),
        ("burst_ended", "ann"), ("floor_granted", "bob"),
        ("burst_ended", "bob"), ("floor_idle", None),
    ]
    granted = [e for e in events if e["event"] == "floor_granted"]
    assert [e["queued"] for e in granted] == [False, True]
    assert granted[0]["burst"] != granted[1]["burst"]
    kinds = {e["event"] for e in events}
    assert {"session_started", "session_ended", "joined", "admin"} <= kinds
    admin = [e for e in events if e["event"] == "admin"]
    assert all(set(e) == {"ts", "event", "user", "op"} for e in admin)  # no args, no tokens
    assert all(e["ts"].endswith("Z") for e in events)


def _floor_turn(group: str) -> list[FloorEvent]:
    return [FloorEvent(fl.Granted(group, "ann", 917, m.Priority.NORMAL, 30.0, False)),
            FloorEvent(fl.BurstEnded(group, "ann", 917, fl.EndReason.RELEASED)),
            FloorEvent(fl.Idle(group, 917))]


def test_a_turns_lines_are_written_after_the_turn_in_order(
        tmp_path: Path, captured: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    """Attached to a server, the logger writes nothing during the turn that made the events
    (the rest of the turn goes first) and all of them, in order, in the loop's next pass."""
    logger, buf, _ = captured
    seen: dict[str, list[str]] = {}

    async def main() -> None:
        server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / "ptt.db"),
                           iterations=1000)
        await server.start()
        attach_event_log(server, logger)
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def turn() -> None:
            for ev in _floor_turn("ops"):
                for listener in server.listeners:
                    listener(ev, loop.time())
            seen["in the turn"] = lines(buf)
            loop.call_soon(after)  # scheduled in the same turn, after the logger's pass

        def after() -> None:
            seen["next pass"] = lines(buf)
            done.set()

        loop.call_soon(turn)
        await done.wait()
        server.close()

    asyncio.run(main())
    assert seen["in the turn"] == []
    assert seen["next pass"] == [
        "event=floor_granted group=ops user=ann burst=917 priority=normal queued=false",
        "event=burst_ended group=ops user=ann burst=917 reason=released",
        "event=floor_idle group=ops burst=917"]


def test_lines_kept_when_the_server_closes_are_not_lost(
        tmp_path: Path, captured: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    """The turn that makes events also closes the server and stops the loop (as a signal's
    handler may): no later pass runs, and every line is written all the same."""
    logger, buf, _ = captured
    loop = asyncio.new_event_loop()
    try:
        server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / "ptt.db"),
                           iterations=1000)

        async def start() -> None:
            await server.start()
            attach_event_log(server, logger)

        loop.run_until_complete(start())

        def last_turn() -> None:
            for ev in _floor_turn("ops"):
                for listener in server.listeners:
                    listener(ev, loop.time())
            server.close()
            loop.stop()

        loop.call_soon(last_turn)
        loop.run_forever()
        written = lines(buf)  # before the loop runs again
        assert written == [
            "event=floor_granted group=ops user=ann burst=917 priority=normal queued=false",
            "event=burst_ended group=ops user=ann burst=917 reason=released",
            "event=floor_idle group=ops burst=917"]
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
