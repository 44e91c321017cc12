"""Reading the server's socket: voice and requests first, keepalives when nothing else waits.

At 10,000 clients nearly every datagram is a keepalive (a sealed Heartbeat once a second each;
``ptt.crypto.channel.KEEPALIVE_MAGIC`` marks them in the clear). Taken in arrival order, a floor
request that lands behind a few hundred of them waits for every one to be opened, answered and
sealed: tens of milliseconds after the smallest hiccup of the machine. Taking a datagram off the
socket costs a few microseconds; handling a keepalive some fifty. So the reader takes what the
socket holds, handles the urgent ones at once (voice frames and sealed requests) and puts the
rest in backlogs: sessions' keepalives; plain datagrams (logins) from hosts the server has had
sessions from (``known(addr)``); and everything else (logins from new hosts and whatever an
unauthenticated peer sends), in that order of priority. The backlogs are worked off a few
datagrams at a time, looking at the socket again between them, so a request that arrives meanwhile waits for a few
keepalives at most, never for a whole backlog. Keepalives go before plain datagrams: a session's
traffic has a budget of its own that no flood of unauthenticated datagrams can take (a Heartbeat
that arrived before a Login is therefore always handled before it, so a Heartbeat of an old
session is never handled after the Login that replaced it). Under a spoofed flood from many
addresses, a returning client's login does not wait behind the flood (a spoofer may claim a
known host's address too, so that lane is bounded like the others: it can be crowded, never
grow). The other plain datagrams wait in one queue per network prefix
(``ptt.protocol.limits.network_prefix``: the /24 of an IPv4 source), served in turn, so a first
login from a host never seen waits for one datagram of each other prefix at most, not for all
that a flood from a few networks queued; when the backlog is full, a prefix with nothing queued
still gets in, at the expense of the prefix served next. Plain datagrams that the rate limit
would refuse (``admit(addr, now)`` is False: no budget left, in all or for the prefix) are dropped
as they are read, before they cost a parse (``plain_refused`` counts them). A plain datagram
that is an exact copy of one from the same address still waiting in a backlog is dropped too
(``plain_repeated``): a client retransmits its login every 0.1-0.2 s while it waits, so on a
server that takes longer than that to reach it (500 clients of a dead node arriving at once on
a busy survivor) each waiting login was queued and handled a dozen times, every copy a full
parse and answer, and the backlog grew faster than it was worked off: 12,000 plain datagrams
handled, 4,900 dropped for a full backlog, for 1,000 logins (bench_access_failover). And a
plain datagram that waited ``plain_max_wait`` (``LOGIN_TRY``, 2 s) is dropped when its turn
comes, unhandled (``plain_stale``): a client with a server list gives a login up after
``LOGIN_TRY`` and sends a new one elsewhere, so answering it is work for nobody; a busy
survivor that kept answering abandoned logins was always 2 s behind, and its clients, moving
between survivors every 2 s, were not back after 15 s (541 of 1,000 in one run at load 11-20).
A login that answers this node's notice is given up later (``LOGIN_TRY`` plus the notice's
window, at most twice ``LOGIN_TRY``: ``ptt.protocol.client``), and its client resends it at
least once a second (``LOGIN_RETRY``) meanwhile. Dropped at ``LOGIN_TRY``, its next copy would
wait at the back of the backlog again (a second wait for a client its node asked to come); so
such a datagram is served when its turn comes up to twice ``LOGIN_TRY`` after it arrived, as
long as a copy of it came within ``RESEND_WITHIN`` (its client still waits: one that gave up
sends no more), counted in ``plain_late``. Which datagrams those are the server says
(``patient(data)``: a Login answering a notice), asked only of one that waited ``LOGIN_TRY``.

Bounded: the keepalive backlog holds at most ``backlog_max`` datagrams (beyond that they wait
in the kernel's buffer, which drops what overflows, as it would without the backlog); the plain
one holds as many, and beyond that the reader drops plain datagrams itself and keeps reading, so
that a flood never stops it from taking keepalives and requests off the socket (``plain_dropped``
counts them). One call works for at most ``budget`` seconds, then :meth:`PriorityReader.run`
returns True and the server gives the event loop a turn (its timers) before calling again.

Use::

    reader = PriorityReader(sock, handle, loop.time)   # handle(data, addr, now) -> keep going?
    more = reader.run()                                 # from loop.add_reader's callback
"""

from __future__ import annotations

import logging
import socket
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from ptt.crypto.channel import KEEPALIVE_MAGIC, SEALED_MAGIC
from ptt.protocol.client import LOGIN_RETRY
from ptt.protocol.limits import network_prefix
from ptt.protocol.server_list import LOGIN_TRY
from ptt.wire.voice import VOICE_MAGIC

log = logging.getLogger("ptt.server")

MAX_DATAGRAM = 65_535
DRAIN_MAX = 256  # datagrams taken off the socket per look
BACKLOG_MAX = 4096  # keepalives (and, apart, plain datagrams) held in user space at most
CHUNK = 4  # backlog datagrams handled between looks at the socket (a look that finds
# nothing costs one failed recvfrom, ~2 us; a keepalive ~50 us)
BUDGET = 0.002  # seconds of work per call before the event loop gets a turn
PLAIN_MAX_WAIT = LOGIN_TRY  # s a plain datagram may wait in a backlog (module docstring)
# s: a client still waiting for its login sent a copy within this (its longest interval between
# copies, and a quarter second for the way and the reader's turn)
RESEND_WITHIN = LOGIN_RETRY[1] + 0.25

Handler = Callable[[bytes, Any, float], bool]


def urgent(data: bytes) -> bool:
    """Voice and sealed requests go first; keepalives and login messages wait their turn."""
    return bool(data) and (data[0] == VOICE_MAGIC or data[0] == SEALED_MAGIC)


class PriorityReader:
    """Reads one non-blocking UDP socket, urgent datagrams first (see the module docstring)."""

    __slots__ = ("_admit", "_backlog", "_clock", "_handle", "_known", "_patient", "_plain",
                 "_plain_len", "_recvfrom", "_returning", "_waiting", "backlog_max", "budget",
                 "chunk", "drain_max", "most_backlog", "plain_dropped", "plain_late",
                 "plain_max_wait", "plain_refused", "plain_repeated", "plain_stale")

    def __init__(self, sock: socket.socket, handle: Handler, clock: Callable[[], float], *,
                 drain_max: int = DRAIN_MAX, backlog_max: int = BACKLOG_MAX, chunk: int = CHUNK,
                 budget: float = BUDGET, known: Callable[[Any], bool] | None = None,
                 admit: Callable[[Any, float], bool] | None = None,
                 patient: Callable[[bytes], bool] | None = None,
                 plain_max_wait: float = PLAIN_MAX_WAIT) -> None:
        if drain_max < 1 or backlog_max < 1 or chunk < 1 or budget <= 0:
            raise ValueError("drain_max, backlog_max and chunk >= 1, budget > 0")
        self._recvfrom = sock.recvfrom
        self._handle = handle  # False: the server closed, stop at once
        self._clock = clock
        self._backlog: deque[tuple[bytes, Any]] = deque()  # sessions' keepalives
        # logins, and anything unauthenticated: a queue per network prefix, served in turn
        # (data, addr, when it was read)
        self._plain: OrderedDict[str, deque[tuple[bytes, Any, float]]] = OrderedDict()
        self._plain_len = 0
        self._returning: deque[tuple[bytes, Any, float]] = deque()  # plain, from a known host
        # what the two plain lanes hold, and when the latest copy of each came
        self._waiting: dict[tuple[bytes, Any], float] = {}
        self._known = known or (lambda addr: False)
        self._patient = patient or (lambda data: False)
        self._admit = admit or (lambda addr, now: True)
        self.drain_max = drain_max
        self.backlog_max = backlog_max
        self.chunk = chunk
        self.budget = budget
        self.most_backlog = 0  # the longest the backlogs have been together (metrics, tests)
        self.plain_dropped = 0  # plain datagrams dropped because their backlog was full
        self.plain_refused = 0  # ... because the rate limit would refuse them (admit)
        self.plain_repeated = 0  # ... because a copy from the same address was waiting
        self.plain_stale = 0  # ... because they waited plain_max_wait (their sender gave up)
        self.plain_late = 0  # served past plain_max_wait: their sender still waits (patient)
        self.plain_max_wait = plain_max_wait

    def __len__(self) -> int:
        """Datagrams waiting in the backlogs."""
        return len(self._backlog) + len(self._returning) + self._plain_len

    def _take(self) -> list[tuple[bytes, Any]]:
        """What the socket holds (up to drain_max): urgent datagrams returned, the rest queued."""
        first: list[tuple[bytes, Any]] = []
        backlog, most = self._backlog, self.backlog_max
        returning, known, admit, clock = self._returning, self._known, self._admit, self._clock
        waiting, now = self._waiting, clock()
        recvfrom = self._recvfrom
        for _ in range(self.drain_max):
            if len(backlog) >= most:
                break  # the rest waits in the kernel
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error surfaced on the socket: keep reading
                log.debug("socket error: %s", exc)
                continue
            if urgent(data):
                first.append((data, addr))
            elif data and data[0] == KEEPALIVE_MAGIC:
                backlog.append((data, addr))
            elif (data, addr) in waiting:
                self.plain_repeated += 1
                waiting[(data, addr)] = now
            elif not admit(addr, clock()):
                self.plain_refused += 1
            elif known(addr):
                if len(returning) < most:
                    returning.append((data, addr, now))
                    waiting[(data, addr)] = now
                else:
                    self.plain_dropped += 1
            else:
                self._queue_plain(data, addr, now)
        self.most_backlog = max(self.most_backlog, len(self))
        return first

    def _queue_plain(self, data: bytes, addr: Any, now: float) -> None:
        plain = self._plain
        key = network_prefix(addr[0])
        q = plain.get(key)
        if self._plain_len >= self.backlog_max:
            if q or not plain:  # its prefix has its share waiting already
                self.plain_dropped += 1
                return
            first = next(iter(plain))  # room for a new prefix: the next one served gives way
            self._waiting.pop(plain[first].popleft()[:2], None)
            if not plain[first]:
                del plain[first]
            self._plain_len -= 1
            self.plain_dropped += 1
        if q is None:
            q = plain[key] = deque()
        q.append((data, addr, now))
        self._waiting[(data, addr)] = now
        self._plain_len += 1

    def _next_plain(self, now: float) -> tuple[bytes, Any] | None:
        """The next plain datagram that has not waited too long (or whose sender waits
        longer, and still sends: module docstring): a known host's first, then the first
        queued of the prefix whose turn it is. None when the plain lanes are empty."""
        waiting, returning, plain = self._waiting, self._returning, self._plain
        while returning or self._plain_len:
            if returning:
                data, addr, at = returning.popleft()
            else:
                key = next(iter(plain))
                q = plain[key]
                data, addr, at = q.popleft()
                if q:
                    plain.move_to_end(key)
                else:
                    del plain[key]
                self._plain_len -= 1
            last = waiting.pop((data, addr), at)
            wait = self.plain_max_wait
            if now - at < wait:
                return data, addr
            if now - at < 2 * wait and now - last < RESEND_WITHIN and self._patient(data):
                self.plain_late += 1
                return data, addr
            self.plain_stale += 1
        return None

    def run(self) -> bool:
        """Work until the socket is empty and the backlog done, or the budget is spent.
        True when work remains: call again after the event loop's other callbacks."""
        clock, handle, chunk = self._clock, self._handle, self.chunk
        backlog, returning = self._backlog, self._returning
        deadline = clock() + self.budget
        while True:
            for data, addr in self._take():
                if not handle(data, addr, clock()):
                    return False
            if backlog:  # keepalives first, then plain datagrams (known hosts' first)
                for _ in range(min(chunk, len(backlog))):
                    data, addr = backlog.popleft()
                    if not handle(data, addr, clock()):
                        return False
            elif returning or self._plain_len:
                for _ in range(chunk):
                    item = self._next_plain(clock())
                    if item is None:
                        break
                    if not handle(item[0], item[1], clock()):
                        return False
            else:
                return False  # _take found the socket empty (or drain_max urgent: next wake-up)
            if clock() >= deadline:
                return True
