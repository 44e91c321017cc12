"""The server's event log: one line per event, as ``key=value`` text or as JSON objects.

Attached from outside like the metrics: :func:`attach_event_log` adds an :class:`EventLogger` to
``server.listeners``. Every :class:`~ptt.protocol.server.ServerEvent` becomes one log record on
the ``ptt.events`` logger, whose message is a stable ``key=value`` line (logfmt: values with
spaces, quotes or ``=`` are double-quoted)::

    12:00:01 INFO    ptt.events: event=floor_granted group=ops user=ann burst=917 priority=normal queued=false

:func:`configure_event_log` with ``json=True`` turns the server's stderr log into JSON lines, one
object per record: events as ``{"ts": ..., "event": ..., "group": ..., "user": ..., ...}``, other
records as ``{"ts", "level", "logger", "msg"}``. ``ts`` is ISO 8601 UTC with milliseconds.

Event names and their fields (``group``, ``user`` where they apply):

==================  ===========================================================
floor_requested     priority
floor_granted       burst, priority, queued (granted from the queue)
floor_queued        position
floor_denied        cause
floor_revoked       burst, cause, grace (seconds)
burst_ended         burst, reason
floor_idle          burst
queue_changed       queue (comma-separated users; DEBUG)
session_started     session, addr
session_ended       session, reason
joined, left        (group, user)
dropped             addr, reason, suppressed (drops not logged since the last line)
admin               op (never its arguments: they may carry tokens)
group_updated       removed (DEBUG)
delivery            burst, frames, heard (user:frames received, ...), silent, offline;
                    ``user`` is the talker
page                group (or ``to``: the user of a direct page), page, recipients, urgent;
                    ``user`` is the sender; never the text
page_delivered,     page, device (DEBUG): a device of ``user`` has the page, or showed it
page_read
==================  ===========================================================

Written after the turn: attached to a server, the logger keeps a turn's events and writes their
lines in a callback of the loop's next pass (``loop.call_soon``), so the rest of the turn (the
next datagrams of a batch, the bus messages of the same read) does not wait behind them (~8-13 us
a line, its record built from a template, ``EventLogger._record``); what is kept is written
when the server closes, whatever turn closed it. A line's ``ts`` and its record's time are its
event's, not the moment it was written.

Wall time: the events carry the loop's monotonic ``now``; ``ts`` is that plus the wall clock's
offset measured at attach (as in the recording), so lines keep the spacing of the floor's timers.
A flood of bad datagrams is not a flood of lines: at most ``DROP_LINES_PER_SECOND`` drop lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ptt.names import format_hostport
from ptt.protocol import floor as fl
from ptt.protocol.server import (
    AdminCommand,
    DeliveryReported,
    Dropped,
    FloorEvent,
    FloorRequested,
    GroupUpdated,
    MemberJoined,
    MemberLeft,
    PageDelivered,
    PageRead,
    PageStored,
    ServerEvent,
    SessionEnded,
    SessionStarted,
)
from ptt.server.droplog import DropLog

if TYPE_CHECKING:
    from ptt.server.app import PttServer

LOGGER = "ptt.events"
DROP_LINES_PER_SECOND = 5
EVENT_ATTR = "ptt_event"  # the LogRecord attribute holding an event's fields

log = logging.getLogger(LOGGER)
_LogRecord = logging.LogRecord


def iso_utc(wall: float) -> str:
    """``2024-05-01T12:00:00.123Z``."""
    ms = int(wall * 1000)
    second, milli = divmod(ms, 1000)
    # the text up to the second is the same for every line of that second: a dead node's
    # thousands of clients log in again within a few (two lines each)
    global _iso_second
    if _iso_second[0] != second:
        dt = datetime.fromtimestamp(second, UTC)
        _iso_second = (second, dt.strftime("%Y-%m-%dT%H:%M:%S."))
    return f"{_iso_second[1]}{milli:03d}Z"


_iso_second: tuple[int, str] = (-1, "")
# a value with one of these (or empty, or unprintable) is quoted
_QUOTE = re.compile(r'[ "=\\]')


def _value(v: object) -> str:
    t = type(v)
    if t is str:
        text: str = v  # type: ignore[assignment]
    elif t is bool:
        return "true" if v else "false"
    elif t is float:
        return f"{v:.3f}"
    else:
        text = str(v)
    if not text or _QUOTE.search(text) or not text.isprintable():
        return json.dumps(text)  # quoted, with JSON escapes: one line whatever the peer sent
    return text


def logfmt(fields: dict[str, Any]) -> str:
    """``key=value`` pairs in the given order; None values are left out."""
    return " ".join(f"{k}={_value(v)}" for k, v in fields.items() if v is not None)


def event_fields(ev: ServerEvent) -> tuple[int, dict[str, Any]] | None:
    """(log level, fields starting with ``event``) of a server event, or None for one that is
    not logged (a floor event this module does not know)."""
    info = logging.INFO
    if isinstance(ev, FloorEvent):
        return _floor_fields(ev.event)
    if isinstance(ev, FloorRequested):
        return info, {"event": "floor_requested", "group": ev.group, "user": ev.user,
                      "priority": ev.priority.name.lower()}
    if isinstance(ev, SessionStarted):
        return info, {"event": "session_started", "user": ev.user, "session": ev.session_id,
                      "addr": format_hostport(*ev.addr[:2])}
    if isinstance(ev, SessionEnded):
        return info, {"event": "session_ended", "user": ev.user, "session": ev.session_id,
                      "reason": ev.reason}
    if isinstance(ev, MemberJoined):
        return info, {"event": "joined", "group": ev.group, "user": ev.user}
    if isinstance(ev, MemberLeft):
        return info, {"event": "left", "group": ev.group, "user": ev.user}
    if isinstance(ev, Dropped):
        return logging.WARNING, {"event": "dropped", "addr": format_hostport(*ev.addr[:2]),
                                 "reason": ev.reason}
    if isinstance(ev, AdminCommand):
        return info, {"event": "admin", "user": ev.user, "op": ev.op}
    if isinstance(ev, DeliveryReported):
        return info, {"event": "delivery", "group": ev.group, "user": ev.talker,
                      "burst": ev.burst_id, "frames": ev.frames,
                      "heard": ",".join(f"{r.user}:{r.received}" for r in ev.heard) or "-",
                      "silent": ",".join(ev.silent) or "-",
                      "offline": ",".join(ev.offline) or "-"}
    if isinstance(ev, GroupUpdated):
        return logging.DEBUG, {"event": "group_updated", "group": ev.group,
                               "removed": ev.removed}
    if isinstance(ev, PageStored):
        p = ev.page  # never the text: it may be sealed, and logs travel further than pages
        where = {"group": p.group} if p.group else {"to": p.to}
        return info, {"event": "page", **where, "user": p.sender, "page": p.page_id,
                      "recipients": len(p.recipients), "urgent": p.urgent}
    if isinstance(ev, (PageDelivered, PageRead)):
        return logging.DEBUG, {"event": "page_read" if isinstance(ev, PageRead)
                               else "page_delivered", "user": ev.user, "page": ev.page_id,
                               "device": ev.device}
    return None


def _floor_fields(ev: object) -> tuple[int, dict[str, Any]] | None:
    info = logging.INFO
    if isinstance(ev, fl.Granted):
        return info, {"event": "floor_granted", "group": ev.group, "user": ev.user,
                      "burst": ev.burst_id, "priority": ev.priority.name.lower(),
                      "queued": ev.from_queue}
    if isinstance(ev, fl.Queued):
        return info, {"event": "floor_queued", "group": ev.group, "user": ev.user,
                      "position": ev.position}
    if isinstance(ev, fl.Denied):
        return info, {"event": "floor_denied", "group": ev.group, "user": ev.user,
                      "cause": ev.cause.name.lower()}
    if isinstance(ev, fl.Revoked):
        return info, {"event": "floor_revoked", "group": ev.group, "user": ev.user,
                      "burst": ev.burst_id, "cause": ev.cause.name.lower(),
                      "grace": float(ev.grace)}
    if isinstance(ev, fl.BurstEnded):
        return info, {"event": "burst_ended", "group": ev.group, "user": ev.user,
                      "burst": ev.burst_id, "reason": ev.reason.value}
    if isinstance(ev, fl.Idle):
        return info, {"event": "floor_idle", "group": ev.group, "burst": ev.burst_id}
    if isinstance(ev, fl.QueueChanged):
        return logging.DEBUG, {"event": "queue_changed", "group": ev.group,
                               "queue": ",".join(ev.queue)}
    return None


class EventLogger:
    """A ``server.listeners`` entry writing one record per event to ``logger``.

    ``offset`` turns the events' ``now`` into wall time (see the module docstring). With
    ``loop``, the records of a turn are written in the loop's next pass (:meth:`flush`); without
    it, at once."""

    def __init__(self, logger: logging.Logger = log, offset: float = 0.0,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.logger = logger
        self.offset = offset
        self._drops = DropLog(DROP_LINES_PER_SECOND)
        self._loop = loop
        self._pending: list[tuple[ServerEvent, float]] = []
        self._templates: dict[int, dict[str, Any]] = {}  # level -> a record's fields (_record)

    def on_event(self, ev: ServerEvent, now: float) -> None:
        if self._loop is None or self._loop.is_closed():
            self._write(ev, now)
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append((ev, now))

    def flush(self) -> None:
        """Write the records kept so far, in the order of their events."""
        pending, self._pending = self._pending, []
        for ev, now in pending:
            self._write(ev, now)

    def _write(self, ev: ServerEvent, now: float) -> None:
        got = event_fields(ev)
        if got is None:
            return
        level, fields = got
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        if isinstance(ev, Dropped) and not self._drop_allowed(now, fields):
            return
        wall = now + self.offset
        # the message has no ts: the text formatter prints the record's own time in front,
        # which is the event's too
        message = logfmt(fields)
        logger.handle(self._record(level, message, {"ts": iso_utc(wall), **fields}, wall))

    def _record(self, level: int, message: str, fields: dict[str, Any], wall: float
                ) -> logging.LogRecord:
        """The record ``logger.log`` would make, built from a template: ``log`` looks for its
        caller in the stack and ``LogRecord`` asks the process, the thread and the clock for
        each line: ~8-13 us a line this way, ~18-20 through ``log`` (two lines a moved client's
        login at a survivor). A record factory set with ``logging.setLogRecordFactory`` is not
        used for these."""
        template = self._templates.get(level)
        if template is None:
            template = self._templates[level] = dict(self.logger.makeRecord(
                self.logger.name, level, __file__, 0, "%s", (), None).__dict__)
        record = _LogRecord.__new__(_LogRecord)
        attrs = record.__dict__
        attrs.update(template)
        attrs["args"] = (message,)
        attrs["created"] = wall
        attrs["msecs"] = (wall - int(wall)) * 1000
        attrs["relativeCreated"] = (template["relativeCreated"]
                                    + (wall - template["created"]) * 1000)
        attrs[EVENT_ATTR] = fields
        return record

    def _drop_allowed(self, now: float, fields: dict[str, Any]) -> bool:
        if not self._drops.allow(now):
            return False
        suppressed = self._drops.take_suppressed()
        if suppressed:
            fields["suppressed"] = suppressed
        return True


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: an event's fields, or ts/level/logger/msg for the rest."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, EVENT_ATTR, None)
        if fields is not None:
            obj = dict(fields)
        else:
            obj = {"ts": iso_utc(record.created), "level": record.levelname.lower(),
                   "logger": record.name, "msg": record.getMessage()}
            if record.exc_info:
                obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


def configure_event_log(json: bool, handler: logging.Handler | None = None) -> None:
    """Format the server's log as JSON lines (``json=True``) or leave the text format.

    ``handler``: the one to reformat; by default every root handler that writes to stderr (the
    one ``ptt.cli.logs.configure`` installs), so other handlers (a test's capture) keep theirs.
    """
    if not json:
        return
    handlers = [handler] if handler is not None else [
        h for h in logging.getLogger().handlers if getattr(h, "stream", None) is sys.stderr]
    for h in handlers:
        h.setFormatter(JsonLinesFormatter())


def attach_event_log(server: PttServer, logger: logging.Logger = log) -> EventLogger:
    """Log ``server``'s events from now on (after ``server.start()``, loop running), each turn's
    after the turn; what is kept when the server closes is written then."""
    loop = asyncio.get_running_loop()
    event_log = EventLogger(logger, time.time() - loop.time(), loop)
    server.listeners.append(event_log.on_event)
    server.on_close.append(event_log.flush)
    return event_log


__all__ = ["EventLogger", "JsonLinesFormatter", "attach_event_log", "configure_event_log",
           "event_fields", "logfmt"]
