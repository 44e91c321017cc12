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
addresses, a returning client's login does not wait behind the flood; a first login from a host
never seen competes with it (a spoofer may claim a known host's address too, so that lane is
bounded like the others: it can be crowded, never grow). Plain datagrams that the rate limit
would refuse (``admit(addr, now)`` is False: no budget left) are dropped as they are read, before
they cost a parse (``plain_refused`` counts them).

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
from collections import deque
from collections.abc import Callable
from typing import Any

from ptt.crypto.channel import KEEPALIVE_MAGIC, SEALED_MAGIC
from ptt.protocol.wire import VOICE_MAGIC

log = logging.getLogger("ptt.server")

MAX_DATAGRAM = 65_535
DRAIN_MAX = 256  # datagrams taken off the socket per look
BACKLOG_MAX = 4096  # keepalives (and, apart, plain datagrams) held in user space at most
CHUNK = 4  # backlog datagrams handled between looks at the socket (a look that finds
# nothing costs one failed recvfrom, ~2 us; a keepalive ~50 us)
BUDGET = 0.002  # seconds of work per call before the event loop gets a turn

Handler = Callable[[bytes, Any, float], bool]


def urgent(data: bytes) -> bool:
    """Voice and sealed requests go first; keepalives and login messages wait their turn."""
    return bool(data) and (data[0] == VOICE_MAGIC or data[0] == SEALED_MAGIC)


class PriorityReader:
    """Reads one non-blocking UDP socket, urgent datagrams first (see the module docstring)."""

    __slots__ = ("_admit", "_backlog", "_clock", "_handle", "_known", "_plain", "_recvfrom",
                 "_returning", "backlog_max", "budget", "chunk", "drain_max", "most_backlog",
                 "plain_dropped", "plain_refused")

    def __init__(self, sock: socket.socket, handle: Handler, clock: Callable[[], float], *,
                 drain_max: int = DRAIN_MAX, backlog_max: int = BACKLOG_MAX, chunk: int = CHUNK,
                 budget: float = BUDGET, known: Callable[[Any], bool] | None = None,
                 admit: Callable[[Any, float], bool] | None = None) -> None:
        if drain_max < 1 or backlog_max < 1 or chunk < 1 or budget <= 0:
            raise ValueError("drain_max, backlog_max and chunk >= 1, budget > 0")
        self._recvfrom = sock.recvfrom
        self._handle = handle  # False: the server closed, stop at once
        self._clock = clock
        self._backlog: deque[tuple[bytes, Any]] = deque()  # sessions' keepalives
        self._plain: deque[tuple[bytes, Any]] = deque()  # logins, and anything unauthenticated
        self._returning: deque[tuple[bytes, Any]] = deque()  # plain, from a known host
        self._known = known or (lambda addr: False)
        self._admit = admit or (lambda addr, now: True)
        self.drain_max = drain_max
        self.backlog_max = backlog_max
        self.chunk = chunk
        self.budget = budget
        self.most_backlog = 0  # the longest the backlogs have been together (metrics, tests)
        self.plain_dropped = 0  # plain datagrams dropped because their backlog was full
        self.plain_refused = 0  # ... because the rate limit would refuse them (admit)

    def __len__(self) -> int:
        """Datagrams waiting in the backlogs."""
        return len(self._backlog) + len(self._returning) + len(self._plain)

    def _take(self) -> list[tuple[bytes, Any]]:
        """What the socket holds (up to drain_max): urgent datagrams returned, the rest queued."""
        first: list[tuple[bytes, Any]] = []
        backlog, plain, most = self._backlog, self._plain, self.backlog_max
        returning, known, admit, clock = self._returning, self._known, self._admit, self._clock
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
            elif not admit(addr, clock()):
                self.plain_refused += 1
            else:
                lane = returning if known(addr) else plain
                if len(lane) < most:
                    lane.append((data, addr))
                else:
                    self.plain_dropped += 1
        self.most_backlog = max(self.most_backlog, len(backlog) + len(returning) + len(plain))
        return first

    def run(self) -> bool:
        """Work until the socket is empty and the backlog done, or the budget is spent.
        True when work remains: call again after the event loop's other callbacks."""
        clock, handle, chunk = self._clock, self._handle, self.chunk
        backlog, returning, plain = self._backlog, self._returning, self._plain
        deadline = clock() + self.budget
        while True:
            for data, addr in self._take():
                if not handle(data, addr, clock()):
                    return False
            queue = backlog or returning or plain  # keepalives first
            if not queue:
                return False  # _take found the socket empty (or drain_max urgent: next wake-up)
            for _ in range(min(chunk, len(queue))):
                data, addr = queue.popleft()
                if not handle(data, addr, clock()):
                    return False
            if clock() >= deadline:
                return True
