"""Reading the server's socket: voice and requests first, keepalives when nothing else waits.

At 10,000 clients nearly every datagram is a keepalive (a sealed Heartbeat once a second each;
``ptt.crypto.channel.KEEPALIVE_MAGIC`` marks them in the clear). Taken in arrival order, a floor
request that lands behind a few hundred of them waits for every one to be opened, answered and
sealed: tens of milliseconds after the smallest hiccup of the machine. Taking a datagram off the
socket costs a few microseconds; handling a keepalive some fifty. So the reader takes what the
socket holds, handles the urgent ones at once (voice frames and sealed requests) and puts the
rest in a backlog (keepalives, and the plain login messages: their relative order is kept, so a
Heartbeat of an old session is never handled after the Login that replaced it). The backlog is
worked off a few datagrams at a time, looking at the socket again between them, so a request
that arrives meanwhile waits for a few keepalives at most, never for the whole backlog.

Bounded: the backlog holds at most ``backlog_max`` datagrams (beyond that they wait in the
kernel's buffer, which drops what overflows, as it would without the backlog); one call works
for at most ``budget`` seconds, then :meth:`PriorityReader.run` returns True and the server
gives the event loop a turn (its timers) before calling again.

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

from ptt.crypto.channel import SEALED_MAGIC
from ptt.protocol.wire import VOICE_MAGIC

log = logging.getLogger("ptt.server")

MAX_DATAGRAM = 65_535
DRAIN_MAX = 256  # datagrams taken off the socket per look
BACKLOG_MAX = 4096  # keepalives and logins held in user space at most
CHUNK = 4  # backlog datagrams handled between looks at the socket (a look that finds
# nothing costs one failed recvfrom, ~2 us; a keepalive ~50 us)
BUDGET = 0.002  # seconds of work per call before the event loop gets a turn

Handler = Callable[[bytes, Any, float], bool]


def urgent(data: bytes) -> bool:
    """Voice and sealed requests go first; keepalives and login messages wait their turn."""
    return bool(data) and (data[0] == VOICE_MAGIC or data[0] == SEALED_MAGIC)


class PriorityReader:
    """Reads one non-blocking UDP socket, urgent datagrams first (see the module docstring)."""

    __slots__ = ("_backlog", "_clock", "_handle", "_recvfrom", "backlog_max", "budget",
                 "chunk", "drain_max", "most_backlog")

    def __init__(self, sock: socket.socket, handle: Handler, clock: Callable[[], float], *,
                 drain_max: int = DRAIN_MAX, backlog_max: int = BACKLOG_MAX, chunk: int = CHUNK,
                 budget: float = BUDGET) -> None:
        if drain_max < 1 or backlog_max < 1 or chunk < 1 or budget <= 0:
            raise ValueError("drain_max, backlog_max and chunk >= 1, budget > 0")
        self._recvfrom = sock.recvfrom
        self._handle = handle  # False: the server closed, stop at once
        self._clock = clock
        self._backlog: deque[tuple[bytes, Any]] = deque()
        self.drain_max = drain_max
        self.backlog_max = backlog_max
        self.chunk = chunk
        self.budget = budget
        self.most_backlog = 0  # the longest the backlog has been (metrics, tests)

    def __len__(self) -> int:
        """Datagrams waiting in the backlog."""
        return len(self._backlog)

    def _take(self) -> list[tuple[bytes, Any]]:
        """What the socket holds (up to drain_max): urgent datagrams returned, the rest queued."""
        first: list[tuple[bytes, Any]] = []
        backlog = self._backlog
        recvfrom = self._recvfrom
        for _ in range(self.drain_max):
            if len(backlog) >= self.backlog_max:
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
            else:
                backlog.append((data, addr))
        self.most_backlog = max(self.most_backlog, len(backlog))
        return first

    def run(self) -> bool:
        """Work until the socket is empty and the backlog done, or the budget is spent.
        True when work remains: call again after the event loop's other callbacks."""
        clock, handle, backlog, chunk = self._clock, self._handle, self._backlog, self.chunk
        deadline = clock() + self.budget
        while True:
            for data, addr in self._take():
                if not handle(data, addr, clock()):
                    return False
            if not backlog:
                return False  # _take found the socket empty (or drain_max urgent: next wake-up)
            for _ in range(min(chunk, len(backlog))):
                data, addr = backlog.popleft()
                if not handle(data, addr, clock()):
                    return False
            if clock() >= deadline:
                return True
