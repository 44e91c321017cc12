"""A node's etcd lease, renewed by a thread of its own so that a busy event loop cannot starve it.

A node's event loop serves its clients: a burst of logins or churn can keep it from coming back
to a renewal for longer than the lease's slack (TTL - TTL/3 with a 1 s lease), and etcd then
expires a lease whose node is alive, its groups move mid-burst, and its clients are taken for a
dead node's. :class:`LeaseRenewer` renews from a thread, on gRPC's synchronous stub over a channel
of its own (the loop's aetcd client stays the loop's), every TTL/``RENEWALS_PER_TTL``, and hands
each acknowledgement to the node's :class:`~ptt.protocol.cluster_fencing.LeaseClock`.

The renewals travel on one long-lived ``LeaseKeepAlive`` stream (:class:`KeepAliveStream`),
as etcd's own clients keep them: a write and a read per renewal. A new stream per renewal
(a call, its request thread, its metadata, its cancel) cost 0.46 ms of CPU against 0.19 ms on
one stream, three times a second on every node. A renewal not answered within its request
timeout ends the stream (its late answer could not be told from the next one's), and the next
renewal opens another, on the next member if that one did not answer.

What still ends the lease:

- a paused or killed process: SIGSTOP stops every thread, SIGKILL ends them;
- a loop wedged for good (a blocking call, a lock never released): the loop gives a sign
  from a timer callback every renewal interval (:meth:`LeaseRenewer.loop_alive`), and the
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
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence

import grpc
from aetcd import rpc

from ptt.protocol.cluster_fencing import LeaseClock
from ptt.protocol.loop_silence import LoopSilence, Silence

log = logging.getLogger("ptt.cluster.lease")

RENEWALS_PER_TTL = 3
# gRPC channel arguments of every channel a node opens to etcd (the renewer's and the loop's
# aetcd client). HTTP/2 BDP probing sends a PING with every burst of data read, to size the
# flow-control window for bulk transfers; the nodes' calls are small (a renewal, a claim, a
# shard of the client list) and each probe's PING and ack woke gRPC's event_engine thread:
# an idle Ownership 63-66 wake-ups and 2.0-2.7 ms of CPU a second with it, 49 and 0.7-1.3
# ms without (10 ms ticks, 15 s windows). The largest read, a dead node's client list (~5 MB
# at 100,000 clients), stays within the default 64 KiB window's round trips on loopback.
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (("grpc.http2.bdp_probe", 0),)
# how long a member that did not answer is passed over when choosing the next one
PENALTY = 10.0
# what etcd says, as an error, of a lease that expired or was revoked
LEASE_NOT_FOUND = "requested lease not found"
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
    is paused or hung holds its TCP connection open, so gRPC alone would wait on it for ever."""

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


class StreamError(grpc.RpcError):
    """The keep-alive stream failed without an error of gRPC's own: no answer in time
    (DEADLINE_EXCEEDED), or etcd ended the stream (UNAVAILABLE)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class KeepAliveStream:
    """One ``LeaseKeepAlive`` stream on ``channel``: :meth:`renew` writes a request and waits
    for its answer; :meth:`close` ends it. A thread of its own reads the answers (a blocking
    read has no timeout of its own), gRPC's another writes the requests."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self._requests: queue.SimpleQueue[rpc.LeaseKeepAliveRequest | None] = queue.SimpleQueue()
        self._answers: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._call = rpc.LeaseStub(channel).LeaseKeepAlive(iter(self._requests.get, None))
        self._reader = threading.Thread(target=self._read, name="ptt-lease-stream", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for answer in self._call:
                self._answers.put(answer)
            self._answers.put(StreamError(grpc.StatusCode.UNAVAILABLE, "etcd ended the stream"))
        except grpc.RpcError as exc:
            self._answers.put(exc)

    def renew(self, lease_id: int, timeout: float) -> int:
        """Renew ``lease_id``: the TTL etcd answered (0: no such lease). Raises
        ``grpc.RpcError`` when the stream failed or no answer came within ``timeout``."""
        self._requests.put(rpc.LeaseKeepAliveRequest(ID=lease_id))
        until = time.monotonic() + timeout
        while True:
            try:
                answer = self._answers.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                raise StreamError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                  "no answer to a lease renewal in time") from None
            if isinstance(answer, grpc.RpcError):
                raise answer
            if int(answer.ID) == lease_id:  # type: ignore[attr-defined]
                return int(answer.TTL)  # type: ignore[attr-defined]
            # an answer about the lease renewed before (the loop replaced it): skipped

    def close(self) -> None:
        self._requests.put(None)  # ends the request iterator
        self._call.cancel()


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
        self._stream: KeepAliveStream | None = None  # the thread's alone

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
        channel = self._channel()
        due = self._clock()
        try:
            # renewals start an interval apart whatever each took: a renewal answered late
            # (etcd or this thread starved of CPU) is not followed by a full interval more
            while not self._stopping.wait(max(0.0, due - self._clock())):
                due = self._clock() + self.lease_clock.ttl / RENEWALS_PER_TTL
                try:
                    channel = self._renew(channel)
                except Exception:  # a renewer that dies would let the lease lapse unexplained
                    log.exception("lease renewal failed; trying again")
        finally:
            self._end_stream()
            channel.close()

    def _renew(self, channel: grpc.Channel) -> grpc.Channel:
        """One renewal of the lease in use, tried again at once (on the next member if the
        one in use did not answer) until etcd answers, the lease changes, the loop has been
        silent too long, or the renewer stops. Returns the channel in use."""
        while not self._stopping.is_set():
            with self._lock:
                lease_id = self._lease_id
            if not lease_id:
                return channel
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
                return channel
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
                ttl = self._keep_alive(channel, lease_id)
            except grpc.RpcError as exc:
                if LEASE_NOT_FOUND in str(exc.details()):
                    ttl = 0
                else:
                    if sent - self._warned_at >= self.lease_clock.ttl:
                        self._warned_at = sent  # at most once a TTL: etcd may stay away
                        log.warning("etcd did not renew the lease: %s (%s)", exc.code(),
                                    "%s:%d" % self._members.current)
                    failed = self._members.current
                    if exc.code() in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                      grpc.StatusCode.UNAVAILABLE) \
                            and self._members.failed(self._clock()):
                        self._end_stream()
                        channel.close()
                        channel = self._channel()
                        self._in_loop(self._on_member_failed, failed)
                    # the lease runs out a TTL after the last renewal etcd received; if etcd
                    # stays unreachable, so does the lease clock
                    self._stopping.wait(self._timeout / 10)
                    continue
            self._answered(lease_id, sent, ttl)
            return channel
        return channel

    def _keep_alive(self, channel: grpc.Channel, lease_id: int) -> int:
        if self._stream is None or self._stream.channel is not channel:
            self._end_stream()
            self._stream = KeepAliveStream(channel)
        try:
            return self._stream.renew(lease_id, self._timeout)
        except grpc.RpcError:
            self._end_stream()  # a late answer on it could not be told from the next one's
            raise

    def _end_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

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

    def _channel(self) -> grpc.Channel:
        host, port = self._members.current
        return grpc.insecure_channel(f"{host}:{port}", options=CHANNEL_OPTIONS)
