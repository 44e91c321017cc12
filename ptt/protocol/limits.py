"""Abuse limits for datagrams that carry no session yet, sans-I/O (the caller passes ``now``).

Three rules, for the server's receive path:

* **Size.** Every kind of datagram has a ceiling (:func:`size_ok`), checked before any parsing:
  plain control messages (Hello, Login and friends, the only things an unauthenticated peer may
  send) are small, so their ceiling is too.
* **Rate.** Datagrams without a session are charged to a token bucket per source address
  (:class:`RateLimiter`), and to one aggregate bucket, so that neither one address nor a swarm
  of spoofed ones can make the server run PBKDF2-free but still costly login work, or fill its
  tables, faster than the configured rate. Between the two, a bucket per network prefix (the
  /24 of an IPv4 source, :func:`network_prefix`) may take at most an eighth of the aggregate:
  a flood spoofed from a few networks cannot spend it all, so a first login from anywhere else
  still finds budget (a flood spread over more than eight prefixes can; docs/security.md).
* **No amplification.** An answer to an unauthenticated datagram is never larger than the
  datagram (:func:`answer_fits`): a spoofed source then gains nothing by reflecting off the
  server. The largest Challenge is 101 bytes and the smallest Hello 26, so a client pads its
  Hello to :data:`MIN_HELLO_SIZE` (:func:`padding_needed`); a Heartbeat without a session is 5
  bytes and the ``NO_SESSION`` Error 38, so that Error is sent only when it fits (a client that
  hears nothing re-logs in on its heartbeat timeout anyway).

* **Failed logins.** A Login whose proof is wrong counts against its user name and its source
  host (:class:`LoginLimiter`); past a few free failures each further one doubles a wait during
  which that name, or that host, is refused without checking the proof. Only Logins that carry
  a valid server nonce count, and that nonce reaches only a peer that receives at its address,
  so a spoofed source cannot charge someone else's host. A user is never held back by its own
  name's failures on a host it logged in from successfully: someone guessing from elsewhere
  cannot lock the real user out from their usual place (docs/security.md, "Login limits").

Memory is bounded: the limiter keeps at most ``max_addrs`` buckets and forgets the least recently
used. An address pushed out comes back with a full bucket; the aggregate bucket is what bounds a
flood from more addresses than the table holds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, replace

from ptt.crypto.channel import KEEPALIVE_MAGIC, MAX_SEALED_DATAGRAM, SEALED_MAGIC
from ptt.wire.voice import MAX_VOICE_DATAGRAM, VOICE_MAGIC

__all__ = [
    "MAX_KEEPALIVE_DATAGRAM",
    "MAX_SEALED_DATAGRAM",
    "MAX_UNAUTH_DATAGRAM",
    "MAX_VOICE_DATAGRAM",
    "MIN_HELLO_SIZE",
    "LoginLimiter",
    "LoginLimits",
    "RateLimiter",
    "RateLimits",
    "answer_fits",
    "network_prefix",
    "max_size",
    "padding_needed",
    "size_ok",
]

MAX_UNAUTH_DATAGRAM = 512  # a Login is 78 bytes + the user name; a padded Hello 128
MIN_HELLO_SIZE = 128  # >= the largest Challenge (101 bytes: 64-byte salt, 64-bit txn)
MAX_KEEPALIVE_DATAGRAM = 128  # a sealed Heartbeat: 30 bytes of overhead + at most 32


def max_size(data: bytes) -> int:
    """The ceiling for a datagram of this kind, told by its first byte."""
    if data and data[0] == VOICE_MAGIC:
        return MAX_VOICE_DATAGRAM
    if data and data[0] == SEALED_MAGIC:
        return MAX_SEALED_DATAGRAM
    if data and data[0] == KEEPALIVE_MAGIC:
        return MAX_KEEPALIVE_DATAGRAM
    return MAX_UNAUTH_DATAGRAM


def size_ok(data: bytes) -> bool:
    """False for an empty datagram or one above its kind's ceiling: drop it unread."""
    return 0 < len(data) <= max_size(data)


def answer_fits(request: bytes | int, answer: bytes | int) -> bool:
    """The no-amplification rule: may ``answer`` go back to an unauthenticated ``request``?"""
    req = request if isinstance(request, int) else len(request)
    ans = answer if isinstance(answer, int) else len(answer)
    return ans <= req


def padding_needed(encoded_len: int, target: int = MIN_HELLO_SIZE) -> int:
    """How many bytes to put in an (empty) padding field so the datagram reaches ``target``.

    Measure the message encoded with an empty ``bytes`` pad field: msgpack writes ``b""`` as a
    bin8 header, so up to 255 bytes of padding add exactly their own length.
    """
    if encoded_len < 0 or target < 0:
        raise ValueError("lengths are not negative")
    n = max(0, target - encoded_len)
    if n > 255:
        raise ValueError("padding beyond 255 bytes would change the msgpack header size")
    return n


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Token-bucket parameters: ``rate`` datagrams per second, bursts up to ``burst``.

    The defaults allow a client's whole login exchange with retransmissions (Hello, Login, a few
    resends) at once, and a steady two per second after; the aggregate allows 2,000 logins a
    second, far above a real fleet reconnecting after a server restart.
    """

    rate: float = 2.0
    burst: float = 8.0
    max_addrs: int = 65_536
    global_rate: float = 4_000.0
    global_burst: float = 8_000.0
    # one network prefix (network_prefix) takes at most an eighth of the aggregate, far above
    # what the 254 hosts of a /24 send when they all log in again at once
    prefix_rate: float = 500.0
    prefix_burst: float = 1_000.0

    def unshared(self) -> RateLimits:
        """The same limits with no per-prefix share (a prefix may take the whole aggregate): for
        hosts that logged in before, where thousands of clients behind one NAT address come
        back at once after a restart."""
        return replace(self, prefix_rate=self.global_rate, prefix_burst=self.global_burst)


def network_prefix(host: str) -> str:
    """Whom the per-prefix bucket charges together: the /24 of an IPv4 address (IPv4-mapped
    too), for IPv6 its first three groups as written (the /48 of an address written in full)."""
    if "." in host:
        return host.rpartition(".")[0]
    return ":".join(host.split(":", 3)[:3])


def _prefix_of(addr: Hashable) -> str | None:
    """The prefix key of a (host, port) source; None for anything else (no prefix bucket)."""
    if isinstance(addr, tuple) and addr and isinstance(addr[0], str):
        return network_prefix(addr[0])
    return None


class RateLimiter:
    """Per-address and aggregate token buckets for unauthenticated datagrams.

    Call :meth:`allow` for every datagram that does not belong to a session (plain control
    messages; sealed ones and voice are checked against their session instead). A False answer
    means: drop silently, do not even parse.
    """

    __slots__ = ("_buckets", "_global", "_global_at", "_prefixes", "limits")

    def __init__(self, limits: RateLimits = RateLimits()) -> None:
        if (limits.rate <= 0 or limits.burst < 1 or limits.max_addrs < 1
                or limits.prefix_rate <= 0 or limits.prefix_burst < 1):
            raise ValueError("rates > 0, bursts >= 1 and max_addrs >= 1 are required")
        self.limits = limits
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()
        self._prefixes: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._global = limits.global_burst
        self._global_at: float | None = None

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, addr: Hashable, now: float, cost: float = 1.0) -> bool:
        """Charge ``cost`` to ``addr``'s bucket, its prefix's (for a (host, port) source) and the
        aggregate; True when all could pay."""
        lim = self.limits
        if self._global_at is not None:
            elapsed = max(0.0, now - self._global_at)
            self._global = min(lim.global_burst, self._global + elapsed * lim.global_rate)
        self._global_at = now
        self._expire(now)
        entry = self._buckets.get(addr)
        if entry is None:
            tokens = lim.burst
            while len(self._buckets) >= lim.max_addrs:
                self._buckets.popitem(last=False)  # least recently used
        else:
            tokens, last = entry
            tokens = min(lim.burst, tokens + max(0.0, now - last) * lim.rate)
            self._buckets.move_to_end(addr)
        prefix = _prefix_of(addr)
        ptokens = self._prefix_tokens(prefix, now) if prefix is not None else cost
        ok = tokens >= cost and self._global >= cost and ptokens >= cost
        if ok:
            tokens -= cost
            ptokens -= cost
            self._global -= cost
        self._buckets[addr] = (tokens, now)
        if prefix is not None:
            self._prefixes[prefix] = (ptokens, now)
            self._prefixes.move_to_end(prefix)
            while len(self._prefixes) > lim.max_addrs:
                self._prefixes.popitem(last=False)
        return ok

    def _prefix_tokens(self, prefix: str, now: float) -> float:
        lim = self.limits
        entry = self._prefixes.get(prefix)
        if entry is None:
            return lim.prefix_burst
        tokens, last = entry
        return min(lim.prefix_burst, tokens + max(0.0, now - last) * lim.prefix_rate)

    def has_budget(self, now: float, host: str | None = None) -> bool:
        """Could the aggregate bucket, and ``host``'s prefix bucket if given, pay for one more
        datagram now? Charges nothing: a cheap look for the reader, which then drops at once
        what :meth:`allow` would refuse."""
        lim = self.limits
        tokens = self._global
        if self._global_at is not None:
            refill = max(0.0, now - self._global_at) * lim.global_rate
            tokens = min(lim.global_burst, tokens + refill)
        if host is not None and tokens >= 1.0:
            return self._prefix_tokens(network_prefix(host), now) >= 1.0
        return tokens >= 1.0

    def _expire(self, now: float) -> None:
        """Forget up to two least recently used buckets that have refilled.

        A bucket untouched for ``burst / rate`` seconds is full again, exactly what a new one
        would be, so dropping it changes no decision; doing a little of it on every call keeps the
        table to the sources heard recently instead of growing to ``max_addrs`` under a spray of
        spoofed addresses (measured: ~340 bytes per bucket).
        """
        idle = self.limits.burst / self.limits.rate
        for _ in range(2):
            oldest = next(iter(self._buckets.items()), None)
            if oldest is None or now - oldest[1][1] < idle:
                break
            del self._buckets[oldest[0]]
        idle = self.limits.prefix_burst / self.limits.prefix_rate
        for _ in range(2):
            first = next(iter(self._prefixes.items()), None)
            if first is None or now - first[1][1] < idle:
                return
            del self._prefixes[first[0]]

    def forget(self, addr: Hashable) -> None:
        """Drop ``addr``'s bucket, e.g. once it logged in and its datagrams carry a session."""
        self._buckets.pop(addr, None)


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """Failed-login back-off: ``user_free`` failures per user name and ``host_free`` per source
    host are free; each further one makes that key wait ``first_wait`` seconds, doubling up to
    ``max_wait``. A key with no failure for ``forget_after`` seconds starts afresh. Tables hold
    at most ``max_entries`` keys each (least recently failed go first); each user keeps the last
    ``known_hosts`` hosts it logged in from, where its name's back-off does not apply."""

    user_free: int = 5
    host_free: int = 20
    first_wait: float = 4.0
    max_wait: float = 60.0
    forget_after: float = 900.0
    max_entries: int = 65_536
    known_hosts: int = 4


class _Backoff:
    """Failures and the end of the current wait, per key; bounded, least recently failed out."""

    __slots__ = ("_free", "_lim", "_table")

    def __init__(self, lim: LoginLimits, free: int) -> None:
        self._lim = lim
        self._free = free
        self._table: OrderedDict[Hashable, tuple[int, float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def wait(self, key: Hashable, now: float) -> float:
        entry = self._table.get(key)
        if entry is None:
            return 0.0
        if now - entry[2] > self._lim.forget_after:
            del self._table[key]
            return 0.0
        return max(0.0, entry[1] - now)

    def failed(self, key: Hashable, now: float) -> None:
        lim, table = self._lim, self._table
        for _ in range(2):  # forget a little as we go: idle keys change no decision
            oldest = next(iter(table.items()), None)
            if oldest is None or now - oldest[1][2] <= lim.forget_after:
                break
            del table[oldest[0]]
        failures, until, last = table.pop(key, (0, 0.0, now))
        if now - last > lim.forget_after:
            failures, until = 0, 0.0
        failures += 1
        if failures > self._free:
            wait = min(lim.max_wait, lim.first_wait * 2.0 ** min(failures - self._free - 1, 30))
            until = now + wait
        while len(table) >= lim.max_entries:
            table.popitem(last=False)
        table[key] = (failures, until, now)

    def clear(self, key: Hashable) -> None:
        self._table.pop(key, None)


class LoginLimiter:
    """Per-user and per-host failed-login back-off (see :class:`LoginLimits`), sans-I/O."""

    __slots__ = ("_hosts", "_known", "_pairs", "_users", "limits")

    def __init__(self, limits: LoginLimits = LoginLimits()) -> None:
        if limits.user_free < 0 or limits.host_free < 0 or limits.max_entries < 1:
            raise ValueError("free counts >= 0 and max_entries >= 1 are required")
        self.limits = limits
        self._users = _Backoff(limits, limits.user_free)
        self._hosts = _Backoff(limits, limits.host_free)
        self._pairs = _Backoff(limits, limits.user_free)
        self._known: OrderedDict[str, tuple[Hashable, ...]] = OrderedDict()

    def wait(self, user: str, host: Hashable, now: float) -> float:
        """Seconds before a login of ``user`` from ``host`` may be tried (0: go ahead)."""
        if host in self._known.get(user, ()):
            return self._pairs.wait((user, host), now)
        return max(self._hosts.wait(host, now), self._users.wait(user, now))

    def failed(self, user: str, host: Hashable, now: float) -> None:
        """A Login with a valid server nonce and a wrong proof (or an unknown name)."""
        self._hosts.failed(host, now)
        if host in self._known.get(user, ()):
            self._pairs.failed((user, host), now)
        else:
            self._users.failed(user, now)

    def succeeded(self, user: str, host: Hashable) -> None:
        """The user logged in from ``host``: its name starts afresh, and the host is one of its
        own from now on (only the pair's own back-off applies there)."""
        self._users.clear(user)
        self._pairs.clear((user, host))
        hosts = self._known.pop(user, ())
        hosts = (host, *(h for h in hosts if h != host))[:self.limits.known_hosts]
        while len(self._known) >= self.limits.max_entries:
            self._known.popitem(last=False)
        self._known[user] = hosts

    def sizes(self) -> tuple[int, int, int, int]:
        """Entries in the user, host, pair and known-host tables (tests, metrics)."""
        return len(self._users), len(self._hosts), len(self._pairs), len(self._known)
