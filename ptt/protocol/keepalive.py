"""The keepalive cadence: how often a client heartbeats, and when the server gives a session up.

A client is *busy* while any group it joined has a talker (its floor is taken, whoever holds it)
or while it asks for, waits for or holds a floor itself; otherwise it is *idle*. A busy client
heartbeats every ``busy`` seconds and its session expires after ``busy_timeout`` seconds of
silence (today's 1 s and 5 s: floor news that a lost datagram hid is caught up within a second by
the heartbeat digest). An idle client heartbeats every ``idle`` seconds and its session expires
after ``idle_timeout``: most clients are idle most of the time, and each heartbeat costs the
server a wake-up, a decryption, an answer and a send (``bench/bench_idle.py``).

Nothing here slows failure detection where it matters: a talker that vanishes is found by the
floor's silence timer (``ptt.protocol.floor``, from its last voice frame), not by its session; a
restarted server calls its clients back at once (``PttServer.announce_restart``) and ends
sessions with a pushed notice, whatever the cadence. What the idle cadence does delay is a client
noticing a server that died and stays dead: within ``idle + busy_timeout - busy`` instead of
``busy_timeout``.

Both sides apply the same rule from what each knows, and the server is the lenient one:

- the client tightens the moment it learns its group is busy (the floor news it is sent) or asks
  for a floor: its next heartbeat is due within ``busy`` of that moment (talking: ``busy /
  FAST_HEARTBEATS``); it relaxes after its next heartbeat once idle;
- the server applies a busy session's ``busy_timeout`` only from its first datagram after its
  group became busy (:meth:`Cadence.deadline`): a client that was idle is not expired for the
  idle silence before it heard the news, nor for news it lost (the answer to its next heartbeat
  carries the floor digest that shows what it missed, and it tightens then);
- a heartbeat that goes unanswered for ``busy`` is sent again every ``busy / FAST_HEARTBEATS``,
  and the client gives its session up ``busy_timeout - busy`` after the first unanswered one (and
  never sooner than ``busy_timeout`` after the server was last heard): on the busy cadence exactly
  today's ``busy_timeout`` of silence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "EXPIRY_GRID", "FAST_HEARTBEATS", "HEARTBEAT_INTERVAL", "IDLE_HEARTBEAT_INTERVAL",
    "IDLE_SESSION_TIMEOUT", "SESSION_TIMEOUT", "Cadence", "expiry_check_at",
]

HEARTBEAT_INTERVAL = 1.0  # a busy client heartbeats this often: lost floor news is caught up in ~1 s
SESSION_TIMEOUT = 5.0  # a busy session not heard from for this long expires
# an idle client heartbeats this often. Each heartbeat costs the server ~300 us of CPU on this
# 2-core machine (a wake-up, an open, an answer: docs/benchmarks.md, bench_idle), so this sets
# the idle cost: ~6 us per idle client per second. NATs must keep an idle UDP binding at least
# 2 minutes (RFC 4787, REQ-5); behind one that forgets sooner (some cloud and carrier NATs keep
# 30 s) set the server's idle_heartbeat_interval to 25.
IDLE_HEARTBEAT_INTERVAL = 55.0
# an idle session not heard from for this long expires: more than one idle interval plus the
# busy timeout a client keeps asking for (a lost heartbeat is resent at once, see above), with
# room for a second idle interval
IDLE_SESSION_TIMEOUT = 120.0
FAST_HEARTBEATS = 4  # heartbeats per busy interval while talking or missing an answer
# session expiry is checked on this grid (deadlines rounded up to it): a few timer wake-ups a
# second serve any number of sessions, each checked at most this much late
EXPIRY_GRID = 0.25


@dataclass(frozen=True, slots=True)
class Cadence:
    """The four numbers of the rule (module docstring); the server's settings, told to each
    client in its Welcome."""

    busy: float = HEARTBEAT_INTERVAL
    busy_timeout: float = SESSION_TIMEOUT
    idle: float = IDLE_HEARTBEAT_INTERVAL
    idle_timeout: float = IDLE_SESSION_TIMEOUT

    @property
    def relaxes(self) -> bool:
        """Is there an idle cadence at all? (``idle`` not above ``busy``: the busy one always.)"""
        return self.idle > self.busy

    def problem(self) -> str | None:
        """Why these numbers cannot work, or None: a client on the idle cadence whose heartbeat
        is unanswered keeps asking for ``idle + busy_timeout - busy`` after the server last heard
        it, so the server must wait longer than that before expiring it."""
        if not self.relaxes:
            return None
        need = self.idle + self.busy_timeout - self.busy
        if self.idle_timeout <= need:
            return (f"idle_session_timeout ({self.idle_timeout:g} s) must exceed "
                    f"idle_heartbeat_interval + session_timeout - heartbeat_interval ({need:g} s)")
        return None

    def interval(self, busy: bool, talking: bool = False) -> float:
        """Seconds from one answered heartbeat to the next."""
        if talking:
            return self.busy / FAST_HEARTBEATS
        return self.idle if self.relaxes and not busy else self.busy

    @property
    def retry(self) -> float:
        """Seconds between heartbeats while the last one is unanswered."""
        return self.busy / FAST_HEARTBEATS

    def deadline(self, last_seen: float, busy_since: float | None) -> float:
        """When the server expires a session last heard at ``last_seen``, busy since
        ``busy_since`` (None: idle): ``busy_timeout`` after a datagram it sent while busy,
        else the idle timeout."""
        if busy_since is not None and last_seen >= busy_since or not self.relaxes:
            return last_seen + self.busy_timeout
        return last_seen + self.idle_timeout

    def given_up_at(self, last_heard: float, unanswered_since: float) -> float:
        """When a client whose heartbeats are unanswered since ``unanswered_since`` (the first
        unanswered one) gives its session up, the server last heard at ``last_heard``."""
        return max(last_heard + self.busy_timeout,
                   unanswered_since + self.busy_timeout - self.busy)


def expiry_check_at(deadline: float) -> float:
    """``deadline`` rounded up to the expiry grid: when the server looks at it."""
    return math.ceil(deadline / EXPIRY_GRID) * EXPIRY_GRID
