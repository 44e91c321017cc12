"""A node's etcd lease, renewed by a thread of its own so that a busy event loop cannot starve it.

A node's event loop serves its clients: a burst of logins or churn can keep it from coming back
to a renewal for longer than the lease's slack (TTL - TTL/3 with a 1 s lease), and etcd then
expires a lease whose node is alive, its groups move mid-burst, and its clients are taken for a
dead node's. :class:`LeaseRenewer` renews from a thread, on a connection of its own (the loop's
gateway client, ``ptt.cluster.gateway``, stays the loop's), every TTL/``RENEWALS_PER_TTL``, and
hands each acknowledgement to the node's :class:`~ptt.protocol.cluster_fencing.LeaseClock`.

The renewals travel over one HTTP/1.1 connection to etcd's JSON gateway
(:class:`GatewayRenewals`, ``/v3/lease/keepalive`` on the member's client port), a request per
renewal from the renewer's thread, whose answer the thread reads at its next wake-up, an
interval later (``LeaseRenewer._collect``): one wake-up of the thread a renewal, not two. A
renewal made again after a failure waits on its socket for its answer with the time left.
gRPC's synchronous stub, on one long-lived ``LeaseKeepAlive`` stream, needed a reader thread (its
iterator's read has no timeout) besides gRPC's own request and channel threads, and each of the
three polled 5-10 times a second (``grpc._common.wait``, the channel's spin): a renewer with
nothing else to do took 5.0-6.3 ms of CPU a second and ~50 wake-ups of its Python threads; on
the gateway 1.0-1.2 ms and ~6 wake-ups. A renewal not answered within its request timeout
closes the connection (its late answer could not be told from the next one's), and the next
renewal opens another, on the next member if that one did not answer.

What still ends the lease:

- a paused or killed process: SIGSTOP stops every thread, SIGKILL ends them;
- a loop wedged for good (a blocking call, a lock never released): the loop gives a sign
  at least every renewal interval (:meth:`LeaseRenewer.loop_alive`: from a timer callback, or
  in passing from a node's turn, ``Ownership.alive_in_passing``), and the
  thread renews only while :class:`~ptt.protocol.loop_silence.LoopSilence` finds the loop
  running: silent for less than ``LIMIT_TTLS`` TTLs once the time the process's threads waited
  for a CPU is taken out (read from ``/proc/self/task/*/schedstat``), and for less than
  ``CEILING_TTLS`` of wall time. A wedged node's lease then ends at most that bound + one
  renewal interval + 1 TTL after the loop's last sign, and the survivors claim its groups as
  they would a dead node's; a loop that is runnable but not scheduled (a starved machine)
  keeps its lease, as it must: on 2 cores at load 10-12 the survivors of a failover went 3.0-3.4
  s without running a timer, and counting that wait let live nodes' leases go, a cascade
  (``ptt.protocol.loop_silence`` gives the table).

The bound, 3 TTLs of charged silence (3 s with the default 1 s lease): a loop that is merely
busy runs a due timer at the end of the turn after it fell due, so it shows itself within one
interval and two turns. A turn of the loop under a burst of work (every ready callback runs
once) measured 0.5 s on an idle core and ~1 s at a load average of 15-17 on this 2-core machine
(the lease tests' burst: 100 tasks of 5 ms slices), its wait for a CPU included. The price is
that a wedged home's groups stay unusable for about 4.8 s (3 s, a renewal interval, the lease's
last TTL, etcd's 0.5 s expiry tick) against 1-1.4 s for a killed one. A wedged loop is a bug, a
loaded one is every busy afternoon.

A member that does not answer a renewal in time is left for the next (:class:`Members`), and the
loop is told (``on_member_failed``): its watch, a stream that a paused member leaves silent
rather than broken, moves too, as it did when the loop's own renewals timed out.

What etcd says of the lease is still handled on the loop: when a renewal is answered "no such
lease" (expired or revoked), the thread clears the clock and calls ``on_lost`` in the loop
(``call_soon_threadsafe``), which reports the groups lost and takes a new lease (``begin``).

Thread safety: the clock is a few floats. Every write to it (an acknowledgement from the thread,
a new lease or a loss from either side) is made under one lock together with the check that it
concerns the lease in use, so a late answer about an old lease never touches the new one's clock.
The loop's reads (``LeaseClock.valid``, ``ttl``) read one attribute, a reference to a float
object, which no thread can see half-written; a read just before a concurrent write sees the
older value, as a read a moment earlier would.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

from ptt.cluster.gateway import GatewayError
from ptt.protocol.cluster_fencing import LeaseClock
from ptt.protocol.loop_silence import LoopSilence, Silence

log = logging.getLogger("ptt.cluster.lease")

RENEWALS_PER_TTL = 3
# how long a member that did not answer is passed over when choosing the next one
PENALTY = 10.0
# what etcd says, as an error, of a lease that expired or was revoked
LEASE_NOT_FOUND = "requested lease not found"
KEEPALIVE = "/v3/lease/keepalive"  # etcd's JSON gateway's path for a renewal
# how long stop() waits for the thread (a renewal in flight ends within its request timeout)
_JOIN_WITHIN = 2.0


class RunQueueWait:
    """Seconds this process's threads have spent runnable, waiting for a CPU, summed (Linux's
    schedstat ``run_delay``; ``ptt.protocol.loop_silence`` says why all of them); 0.0 where the
    kernel does not say (the rule is then wall time). Each thread's ``schedstat`` file is
    opened once and read again from its start (``pread``): opening ~15 of them by path at
    every call cost ~0.2-0.4 ms of CPU, six times a second (the loop's sign and the renewer's
    check), against ~35 us read through the open descriptors. Shared by the loop and the
    renewer thread: one lock, so neither reads a descriptor the other is closing."""

    def __init__(self, root: str = "/proc/self/task") -> None:
        self.root = root
        self._fds: dict[str, int] = {}  # thread id -> its schedstat, open
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            try:
                tasks = os.listdir(self.root)
            except OSError:
                return 0.0
            fds = self._fds
            total = 0
            for tid in tasks:
                fd = fds.pop(tid, None)
                for _ in range(2):  # a descriptor of an ended thread whose id came back: again
                    try:
                        if fd is None:
                            fd = os.open(f"{self.root}/{tid}/schedstat", os.O_RDONLY)
                        total += int(os.pread(fd, 128, 0).split()[1])
                        fds[tid] = fd
                        break
                    except (OSError, IndexError, ValueError):
                        # a thread that ended meanwhile: its wait is no longer counted
                        if fd is not None:
                            os.close(fd)
                            fd = None
            if len(fds) > len(tasks):  # threads that ended: their descriptors closed
                for tid in set(fds).difference(tasks):
                    os.close(fds.pop(tid))
            return total / 1e9

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


run_queue_wait = RunQueueWait()


class Members:
    """Which etcd member a client uses, moving on from one that did not answer: a member that
    is paused or hung holds its TCP connection open, so a client alone would wait on it for ever."""

    def __init__(self, endpoints: Sequence[tuple[str, int]]) -> None:
        self.endpoints = list(endpoints)
        self.index = 0
        self._failed_at: dict[int, float] = {}  # member index -> when it last failed

    @property
    def current(self) -> tuple[str, int]:
        return self.endpoints[self.index]

    def failed(self, now: float) -> bool:
        """The member in use did not answer: use the next one that has not failed lately (a
        paused one would fail every third request in turn), else simply the next. False with
        one member (its channel reconnects by itself)."""
        count = len(self.endpoints)
        if count == 1:
            return False
        self._failed_at[self.index] = now
        order = [(self.index + step) % count for step in range(1, count + 1)]
        rested = [m for m in order if now - self._failed_at.get(m, -PENALTY) >= PENALTY]
        self.index = (rested or order)[0]
        return True


class RenewalError(GatewayError):
    """A renewal etcd did not answer (``GatewayError``'s ``unreachable`` and ``details``)."""


class Gateway:
    """One HTTP/1.1 connection to a member's JSON gateway (etcd's ``/v3/...`` on the client
    port), kept between requests, used by one thread at a time: :meth:`post` sends one request
    and reads its answer with the time left; :meth:`close` ends it. No thread waits between
    requests (the module docstring says what gRPC's synchronous stream cost). HTTP is the
    standard library's (``http.client``): keep-alive, chunked answers and status lines are its
    to parse, this class only bounds them in time. A parser of our own measured 0.11-0.14 ms of
    CPU a renewal against http.client's 0.22-0.34 (``bench_lease_renewal.py --renewals 300
    --rounds 2``, load 0.3-0.7): ~0.5 ms/s at three renewals a second, not worth a second HTTP
    implementation to keep correct."""

    def __init__(self, member: tuple[str, int]) -> None:
        self.member = member
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        """POST ``body`` (JSON) to ``path``: the answer's status and body. Raises
        :class:`GatewayError` (``unreachable``) when no answer came within ``timeout``; the
        connection is then closed (a late answer on it could not be told from the next)."""
        until = time.monotonic() + timeout
        # a kept connection etcd closed since the last request (reset, or closed before any
        # answer) is opened again once within the time left; a new one that fails, or no
        # answer in time, fails the request (the member is then passed over)
        kept = self._conn is not None
        while True:
            try:
                self._send(path, body, until)
                return self._receive(max(0.001, until - time.monotonic()))
            except (OSError, http.client.HTTPException) as exc:
                # no answer in time, refused, closed, garbled
                self.close()
                if kept and isinstance(exc, ConnectionError) and time.monotonic() < until:
                    kept = False
                    continue
                raise _unreachable(exc) from None

    def send(self, path: str, body: bytes, timeout: float) -> None:
        """POST ``body`` (JSON) to ``path`` without waiting for the answer (:meth:`receive`
        reads it). Raises :class:`GatewayError` (``unreachable``) when the request could not
        be written within ``timeout``; the connection is then closed."""
        try:
            self._send(path, body, time.monotonic() + timeout)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise _unreachable(exc) from None

    def receive(self, timeout: float) -> tuple[int, bytes]:
        """The answer to the request :meth:`send` wrote: its status and body, waited for at
        most ``timeout`` (0: only what has arrived). Raises :class:`GatewayError`
        (``unreachable``) when no whole answer came in time, the member's closing of the
        connection included (a request in flight on it is not answered); the connection is
        then closed."""
        try:
            return self._receive(max(0.0, timeout))
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise _unreachable(exc) from None

    def _send(self, path: str, body: bytes, until: float) -> None:
        conn = self._conn
        if conn is None:
            # http.client sets TCP_NODELAY on the socket it connects
            conn = self._conn = http.client.HTTPConnection(
                *self.member, timeout=max(0.001, until - time.monotonic()))
            conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(max(0.001, until - time.monotonic()))
        conn.request("POST", path, body, {"Content-Type": "application/json"})

    def _receive(self, timeout: float) -> tuple[int, bytes]:
        conn = self._conn
        if conn is None or conn.sock is None:
            raise ConnectionError("no request in flight")
        conn.sock.settimeout(timeout)
        response = conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _unreachable(exc: BaseException) -> GatewayError:
    """A request's failure to get an answer (no answer in time, refused, closed, garbled)."""
    return GatewayError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                        unreachable=True)


class GatewayRenewals(Gateway):
    """Renewals over one :class:`Gateway` connection (``/v3/lease/keepalive``)."""

    def renew(self, lease_id: int, timeout: float) -> int:
        """Renew ``lease_id``: the TTL etcd answered (0: no such lease). Raises
        :class:`RenewalError` when no answer came within ``timeout`` or it was an error; the
        connection is then closed (a late answer on it could not be told from the next)."""
        try:
            status, answer = self.post(KEEPALIVE, b'{"ID":%d}' % lease_id, timeout)
        except GatewayError as exc:
            raise RenewalError(exc.details, exc.unreachable) from None
        return self._ttl(lease_id, status, answer)

    def send_renewal(self, lease_id: int, timeout: float) -> None:
        """Send a renewal of ``lease_id`` and return at once: :meth:`answer` reads what etcd
        said. Raises :class:`RenewalError` when it could not be sent within ``timeout``."""
        try:
            self.send(KEEPALIVE, b'{"ID":%d}' % lease_id, timeout)
        except GatewayError as exc:
            raise RenewalError(exc.details, exc.unreachable) from None

    def answer(self, lease_id: int, timeout: float) -> int:
        """The TTL etcd answered to the renewal of ``lease_id`` :meth:`send_renewal` sent (0:
        no such lease), waited for at most ``timeout``. Raises :class:`RenewalError` as
        :meth:`Gateway.receive` and :meth:`renew` do."""
        try:
            status, answer = self.receive(timeout)
        except GatewayError as exc:
            raise RenewalError(exc.details, exc.unreachable) from None
        return self._ttl(lease_id, status, answer)

    def _ttl(self, lease_id: int, status: int, answer: bytes) -> int:
        try:
            result = json.loads(answer)
            if status == 200 and "result" in result:
                if int(result["result"]["ID"]) != lease_id:
                    raise ValueError(f"an answer about lease {result['result']['ID']}")
                return int(result["result"].get("TTL", 0))  # absent: no such lease
            error = result.get("error", result)
            details = error.get("message", str(error)) if isinstance(error, dict) else error
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            details = f"an answer not understood ({exc})"
        self.close()
        raise RenewalError(f"HTTP {status}: {details}", unreachable=False)


class LeaseRenewer:
    """Renews one lease at a time from a thread: ``start(loop)``, then ``begin(lease_id, ...)``
    for each lease the loop takes; ``loop_alive(now)`` from the loop every renewal interval;
    ``await stop()`` before revoking the lease."""

    def __init__(self, endpoints: Sequence[tuple[str, int]], lease_clock: LeaseClock, *,
                 clock: Callable[[], float], timeout: float, on_lost: Callable[[], None],
                 on_member_failed: Callable[[tuple[str, int]], None]) -> None:
        self.lease_clock = lease_clock
        self._members = Members(endpoints)
        self._clock = clock
        self._timeout = timeout  # one renewal request, before the next member is tried
        self._on_lost = on_lost
        self._on_member_failed = on_member_failed
        self._lock = threading.Lock()
        self._lease_id = 0  # 0: no lease to renew (none yet, or lost)
        self.silence = LoopSilence()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="ptt-lease", daemon=True)
        self.withheld = 0  # renewals not sent because the loop was silent too long
        # the longest silence of the loop the thread renewed through, wall and charged (s)
        self.longest_silence = (0.0, 0.0)
        self._reported = 0  # this silence of the loop logged: 1 as renewed anyway, 2 as withheld
        self._warned_at = float("-inf")  # when a failed renewal was last logged
        self._connection: GatewayRenewals | None = None  # the thread's alone
        # the renewal whose answer the next wake-up reads (the thread's alone): lease, sent at
        self._in_flight: tuple[int, float] | None = None

    # --- the loop's side --------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.loop_alive(self._clock())
        self._thread.start()

    def begin(self, lease_id: int, sent_at: float, ttl: float) -> None:
        """A new lease, granted to a request sent at ``sent_at``: renew this one from now on."""
        with self._lock:
            self._lease_id = lease_id
            self.lease_clock.lost()  # the old lease's validity says nothing of the new one
            self.lease_clock.acknowledged(sent_at, ttl)

    def loop_alive(self, now: float) -> None:
        """The loop ran just now (on the loop's thread; one attribute write: no lock needed)."""
        self.silence.sign(now, run_queue_wait())

    async def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, _JOIN_WITHIN)

    # --- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        due = self._clock()
        try:
            # renewals start an interval apart whatever each took: a renewal answered late
            # (etcd or this thread starved of CPU) is not followed by a full interval more
            while not self._stopping.wait(max(0.0, due - self._clock())):
                due = self._clock() + self.lease_clock.ttl / RENEWALS_PER_TTL
                try:
                    self._renew(wait=not self._collect())
                except Exception:  # a renewer that dies would let the lease lapse unexplained
                    log.exception("lease renewal failed; trying again")
        finally:
            self._end_connection()

    def _collect(self) -> bool:
        """The answer to the renewal sent at the thread's last wake-up, read now, an interval
        later, from what has arrived: the thread wakes once a renewal, not a second time for
        its answer (~1 ms after the request; each wake-up of a thread that slept costs
        0.15-1.5 ms of CPU on the benches' VM: docs/cluster.md, "Where a node's CPU goes").
        The acknowledgement counts from the renewal's sending, not from its reading, so the
        lease clock is as safe as with an answer waited for; it reaches the clock an interval
        later, so the clock is sure of the lease an interval less ahead (TTL - 2 intervals,
        1/3 s with the default 1 s TTL) and
        a thread late by more than that leaves the home unsure (its floor decisions wait)
        while etcd still holds the lease. True when the answer came (acknowledged, or the
        lease gone) or none was awaited; False when the renewal must be made again at once
        and its answer waited for: none came in time (or the member closed the connection
        instead), and the member is left as a timed-out renewal leaves it: a second try on
        it would take a whole timeout more, and the lease's slack is two intervals."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None or self._connection is None:
            return True
        lease_id, sent = in_flight
        try:
            ttl = self._connection.answer(lease_id, sent + self._timeout - self._clock())
        except RenewalError as exc:
            if LEASE_NOT_FOUND not in exc.details:
                self._failed(exc, sent)
                return False
            ttl = 0
        self._answered(lease_id, sent, ttl)
        return True

    def _renew(self, wait: bool = True) -> None:
        """One renewal of the lease in use, tried again at once (on the next member if the
        one in use did not answer) until etcd answers, the lease changes, the loop has been
        silent too long, or the renewer stops. ``wait`` false: a first try is sent and its
        answer left for :meth:`_collect` at the next wake-up; one that could not be sent is
        tried again, waited for."""
        while not self._stopping.is_set():
            with self._lock:
                lease_id = self._lease_id
            if not lease_id:
                return
            now, ttl = self._clock(), self.lease_clock.ttl
            waited = run_queue_wait()
            verdict = self.silence.judge(now, waited, ttl)
            if verdict is Silence.RUNNING:
                self._reported = 0
            elif verdict is Silence.WEDGED:
                self.withheld += 1
                if self._reported < 2:
                    self._reported = 2
                    log.error("the event loop has not run for %.1f s (%.1f s of it not waiting "
                              "for a CPU): the lease is no longer renewed, so this node's "
                              "groups move to other nodes", self.silence.silent(now),
                              self.silence.charged(now, waited))
                return
            else:
                silent, charged = self.silence.silent(now), self.silence.charged(now, waited)
                if silent > self.longest_silence[0]:
                    self.longest_silence = (round(silent, 3), round(charged, 3))
                if self._reported < 1:
                    self._reported = 1  # renewed all the same: the loop alone would have lost it
                    log.warning("the event loop has not run for %.1f s (%.1f s of it not waiting "
                                "for a CPU); lease renewed", silent, charged)
            sent = self._clock()
            try:
                if not wait:
                    self._connect().send_renewal(lease_id, self._timeout)
                    self._in_flight = (lease_id, sent)
                    return
                ttl = self._keep_alive(lease_id)
            except RenewalError as exc:
                if LEASE_NOT_FOUND in exc.details:
                    ttl = 0
                else:
                    self._failed(exc, sent)
                    wait = True
                    # the lease runs out a TTL after the last renewal etcd received; if etcd
                    # stays unreachable, so does the lease clock
                    self._stopping.wait(self._timeout / 10)
                    continue
            self._answered(lease_id, sent, ttl)
            return

    def _failed(self, exc: RenewalError, sent: float) -> None:
        """A renewal sent at ``sent`` failed: said at most once a TTL, and a member that did not
        answer left for the next (the loop told, ``on_member_failed``)."""
        if sent - self._warned_at >= self.lease_clock.ttl:
            self._warned_at = sent  # at most once a TTL: etcd may stay away
            log.warning("etcd did not renew the lease: %s (%s)", exc.details,
                        "%s:%d" % self._members.current)
        failed = self._members.current
        if exc.unreachable and self._members.failed(self._clock()):
            self._end_connection()
            self._in_loop(self._on_member_failed, failed)

    def _keep_alive(self, lease_id: int) -> int:
        return self._connect().renew(lease_id, self._timeout)

    def _connect(self) -> GatewayRenewals:
        """The connection to the member in use (a new one after a move to another)."""
        if self._connection is None or self._connection.member != self._members.current:
            self._end_connection()
            self._connection = GatewayRenewals(self._members.current)
        return self._connection

    def _end_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _answered(self, lease_id: int, sent_at: float, ttl: int) -> None:
        with self._lock:
            if lease_id != self._lease_id:
                return  # about a lease the loop has replaced
            if ttl > 0:
                self.lease_clock.acknowledged(sent_at, float(ttl))
                return
            self._lease_id = 0
            self.lease_clock.lost()
        self._in_loop(self._on_lost)

    def _in_loop(self, call: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the node is stopping
                loop.call_soon_threadsafe(call, *args)
