"""Reliable control over UDP: retransmission with backoff, response caches, acknowledged sends.

Three pieces, all sans-I/O (``now`` passed in, deadlines read with ``get_timer()``):

- :class:`Retransmitter` resends a datagram until it is answered or gives up. The first retry comes
  after ``RETRY_FIRST`` (100 ms); the interval doubles up to ``RETRY_CAP`` (200 ms); the whole
  attempt ends after ``RETRY_TOTAL`` (under 6 s, as MCPTT asks of floor control). With 20% loss
  each way an attempt fails 36% of the time, and 11 attempts fit in the first 2 s. The client uses it for requests,
  the server for unsolicited messages that matter (a grant from the queue, a revoke).
- :class:`ResponseCache` remembers the encoded answer to each (peer, txn), so a retransmitted request
  is answered again without being executed twice (as BFCP over UDP does).
- :class:`SeenSet` lets a receiver of acknowledged messages ack a duplicate without acting on it again.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Hashable, TypeVar

RETRY_FIRST = 0.1
RETRY_CAP = 0.2  # control datagrams are tiny: 11 tries in the first 2 s, 1e-5 unresolved at 20% loss
RETRY_TOTAL = 5.5
CACHE_TTL = 8.0  # longer than a client's whole retransmission window
CACHE_MAX = 100_000

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class _Pending:
    data: bytes
    dest: object
    first_sent: float
    next_at: float
    interval: float
    cap: float
    tries: int = 1


@dataclass(frozen=True, slots=True)
class Expired(Generic[K]):
    """A transaction that got no answer within ``RETRY_TOTAL``."""

    key: K
    dest: object


class Retransmitter(Generic[K]):
    """Datagrams awaiting an answer, keyed by transaction id (or (peer, txn))."""

    def __init__(
        self, first: float = RETRY_FIRST, cap: float = RETRY_CAP, total: float = RETRY_TOTAL
    ) -> None:
        self._first, self._cap, self._total = first, cap, total
        self._pending: dict[K, _Pending] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

    def add(self, key: K, data: bytes, dest: object, now: float,
            schedule: tuple[float, float] | None = None) -> None:
        """Track ``data`` (already sent once by the caller) until ``ack(key)``; ``schedule``:
        this one's (first retry, cap) instead of the instance's."""
        first, cap = schedule if schedule is not None else (self._first, self._cap)
        p = _Pending(data, dest, now, now + first, first, cap)
        self._pending[key] = p
        self._push(p.next_at, key)

    def ack(self, key: K) -> bool:
        """The answer arrived; returns False for an unknown or already answered key."""
        return self._pending.pop(key, None) is not None

    def cancel_where(self, dest: object) -> None:
        """Forget everything addressed to ``dest`` (a session that is gone)."""
        for key in [k for k, p in self._pending.items() if p.dest == dest]:
            del self._pending[key]

    def get_timer(self) -> float | None:
        while self._heap:
            at, _, key = self._heap[0]
            p = self._pending.get(key)
            if p is not None and p.next_at == at:
                return at
            heapq.heappop(self._heap)
        return None

    def handle_timer(self, now: float) -> tuple[list[tuple[bytes, object]], list[Expired[K]]]:
        """Due retransmissions as (data, dest), and transactions that gave up."""
        resend: list[tuple[bytes, object]] = []
        expired: list[Expired[K]] = []
        while self._heap and self._heap[0][0] <= now:
            at, _, key = heapq.heappop(self._heap)
            p = self._pending.get(key)
            if p is None or p.next_at != at:
                continue
            # the same sum as the deadline below: ``now - first_sent >= total`` can be False by
            # a rounding error while ``first_sent + total <= now``, and the entry came back forever
            if now >= p.first_sent + self._total:
                del self._pending[key]
                expired.append(Expired(key, p.dest))
                continue
            resend.append((p.data, p.dest))
            p.tries += 1
            p.interval = min(p.interval * 2, p.cap)
            p.next_at = min(now + p.interval, p.first_sent + self._total)
            self._push(p.next_at, key)
        return resend, expired

    def resend_now(self, key: K, now: float) -> tuple[bytes, object] | None:
        """``key``'s datagram and destination to send again now, its next retry an interval
        later (the caller knows the answer will not come to the copies already sent); None
        when it is not pending or its time is up."""
        p = self._pending.get(key)
        if p is None or now >= p.first_sent + self._total:
            return None
        p.tries += 1
        p.next_at = min(now + p.interval, p.first_sent + self._total)
        self._push(p.next_at, key)
        return p.data, p.dest

    def _push(self, at: float, key: K) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, key))


@dataclass(slots=True)
class ResponseCache(Generic[K]):
    """Encoded answers by (peer, txn), expiring after ``ttl`` seconds.

    An answer may be put as a function that makes it: made when a resend first asks for it
    (then kept), for an answer that differs from the one sent and is rarely asked for (a
    Login's Welcome without the joins folded into the one sent: ``server_gate``)."""

    ttl: float = CACHE_TTL
    max_entries: int = CACHE_MAX
    _entries: OrderedDict[K, tuple[float, bytes | Callable[[], bytes]]] = field(
        default_factory=OrderedDict)

    def get(self, key: K, now: float) -> bytes | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] < now:
            return None
        data = hit[1]
        if not isinstance(data, bytes):
            data = data()
            self._entries[key] = (hit[0], data)
        return data

    def put(self, key: K, data: bytes | Callable[[], bytes], now: float) -> None:
        self._entries[key] = (now + self.ttl, data)
        self._entries.move_to_end(key)
        self.expire(now)

    def expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, (until, _) = next(iter(entries.items()))
            if until >= now and len(entries) <= self.max_entries:
                break
            del entries[key]

    def get_timer(self) -> float | None:
        """When the oldest entry is dropped (just after its ``until``: ``expire`` keeps it at
        ``until``). The owner's timer must include it: an entry left to the next ``put`` stays
        as long as no answer is put, on an idle server until the next heartbeat (55 s)."""
        for until, _ in self._entries.values():
            return math.nextafter(until, math.inf)
        return None

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(slots=True)
class SeenSet(Generic[K]):
    """Recently handled keys, so a resent message is acked but not acted on twice."""

    capacity: int = 1024
    _keys: OrderedDict[K, None] = field(default_factory=OrderedDict)

    def check_and_add(self, key: K) -> bool:
        """True the first time ``key`` is seen."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return True
