"""Load generation for the network benchmarks: a server process and client worker processes.

Everything talks to 127.0.0.1 only, and every loop here is bounded in time and stops by itself.

- :class:`ServerProc` runs a real :class:`ptt.server.app.PttServer` (asyncio, its own process, so it
  has a core to itself as far as two cores allow). The parent talks to it over a pipe: provision
  users and groups through the server's own ``Admin``, read its CPU time (``time.process_time`` in
  the server process) and counters, stop it.
- :class:`WorkerProc` runs a :class:`ClientPool`: thousands of sans-I/O ``ClientCore``s, each on its
  own UDP socket (the server binds a session to its source address), driven by one epoll loop and
  one timer heap per process. They log in, join their groups and heartbeat at the cadence the server
  tells them (``ptt.protocol.keepalive``: 1 s while a group of theirs has a talker, 55 s idle)
  with random phases, like real clients; light ones (``go_light``) follow the same rule from what
  the bench tells them (``set_busy``: the groups that have a talker), as they open nothing the
  server sends. Roles on top of that: ``probe`` (timed floor requests), ``listen`` (voice receive
  latency), ``talk`` (paced voice frames).

Clocks: ``time.monotonic`` (CLOCK_MONOTONIC) is shared by all processes of the machine, so a send
time written by one process and a receive time read by another are comparable. Worker processes are
forked (the parent runs no event loop and no threads), so they start in milliseconds.
"""

from __future__ import annotations

import array
import heapq
import logging
import math
import multiprocessing as mp
import os
import platform
import random
import resource
import select
import socket
import struct
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from echo_floor import SO_TIMESTAMPNS, kernel_time

from ptt.protocol import client as cl
from ptt.protocol import messages as m
from ptt.protocol.messages import encode_message
from ptt.wire.voice import HEADER_SIZE, VoiceFlags, VoiceHeader, add_mac, encode_voice, is_voice

LOCALHOST = "127.0.0.1"
TIMER_BATCH_S = 0.1  # s of client timers run at most between two polls (ClientPool.run)
_CTX = mp.get_context("fork")
STAMP = struct.Struct("!q")  # send time (monotonic ns) at the start of a voice payload
# Logins in flight per worker. A login costs the server a token check and a key agreement (about
# a millisecond on one core); too many at once queue the heartbeats of clients already in behind
# them, and the queued logins' retransmissions (every 100-200 ms) feed the queue: split this
# between workers so the server's queue stays shorter than a retransmission interval.
LOGIN_INFLIGHT = 100


# --- machine -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count() or 1, "python": platform.python_version(),
            "kernel": f"{platform.system()} {platform.release()}"}


def load_average() -> str:
    """The 1-minute load average (other work on the machine shows up in every figure)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def machine_line() -> str:
    m = machine()
    return f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['kernel']}"


# --- statistics ----------------------------------------------------------------------------------


def percentiles(values: Any, ps: tuple[float, ...] = (50, 95, 99)) -> dict[str, float]:
    """Nearest-rank percentiles and max of ``values`` (any unit); NaN for an empty list."""
    v = sorted(values)
    out: dict[str, float] = {}
    for p in ps:
        key = f"p{p:g}"
        out[key] = v[min(len(v) - 1, max(0, math.ceil(p / 100 * len(v)) - 1))] if v \
            else float("nan")
    out["max"] = v[-1] if v else float("nan")
    return out


def fmt_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``rows`` (dicts with the same keys) for the terminal."""
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    cells = [[cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


# --- the server process --------------------------------------------------------------------------


def _server_main(conn: Any, workdir: str, iterations: int, nice: int = 0) -> None:
    import asyncio

    from ptt.config import ServerConfig
    from ptt.server.app import PttServer, gc_freeze_wanted

    logging.basicConfig(level=logging.WARNING)
    if nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)  # only this process (needs root to go below 0)

    async def main() -> None:
        wd = Path(workdir)
        server = PttServer(ServerConfig(host=LOCALHOST, port=0, db=wd / "db.sqlite",
                                        record_dir=wd / "rec"), iterations=iterations,
                           gc_freeze=gc_freeze_wanted())  # as `ptt server` runs
        await server.start()
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        pauses = _GcPauses()
        ended: dict[str, int] = {}  # sessions ended, by reason (a collapse shows here first)

        def on_event(ev: Any, now: float) -> None:
            if type(ev).__name__ == "SessionEnded":
                ended[ev.reason] = ended.get(ev.reason, 0) + 1

        server.listeners.append(on_event)
        fires = [0]  # core timer wake-ups (session expiry checks, floor timers, resends)
        on_timer = server._on_timer

        def counted_timer() -> None:
            fires[0] += 1
            on_timer()

        server._on_timer = counted_timer  # type: ignore[method-assign]

        def on_command() -> None:
            try:
                cmd, arg = conn.recv()
            except (EOFError, OSError):
                if not done.done():
                    done.set_result(None)
                return
            try:
                if cmd == "provision":
                    res: Any = _provision(server, arg, loop.time())
                elif cmd == "stats":
                    t = os.times()
                    res = {"cpu": time.process_time(), "wall": time.monotonic(),
                           "user": t.user, "sys": t.system,
                           "counters": asdict(server.counters),
                           "sessions": len(server.core.sessions),
                           "gc": pauses.snapshot(), "sessions_ended": dict(ended),
                           "timer_fires": fires[0]}
                elif cmd == "stop":
                    conn.send(("ok", None))
                    if not done.done():
                        done.set_result(None)
                    return
                else:
                    raise ValueError(f"unknown command {cmd!r}")
                conn.send(("ok", res))
            except Exception as exc:  # report to the parent rather than hang it
                conn.send(("error", f"{type(exc).__name__}: {exc}"))

        loop.add_reader(conn.fileno(), on_command)
        conn.send(("ready", {"address": server.address, "pid": os.getpid()}))
        try:
            await asyncio.wait_for(done, timeout=3600)  # bounded even if the parent vanishes
        except TimeoutError:
            pass
        loop.remove_reader(conn.fileno())
        server.close()

    asyncio.run(main())


class _GcPauses:
    """Collector pauses in this process, per generation: count, total and longest (seconds)."""

    def __init__(self) -> None:
        import gc

        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self._t0 = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        g = info["generation"]
        dt = time.perf_counter() - self._t0
        self.count[g] += 1
        self.total[g] += dt
        self.longest[g] = max(self.longest[g], dt)

    def snapshot(self) -> dict[str, list[Any]]:
        return {"count": list(self.count), "total": list(self.total),
                "longest": list(self.longest)}


def _provision(server: Any, spec: dict[str, Any], now: float) -> dict[str, str]:
    """Create users, then groups with their members, through the server's Admin (store + core)."""
    admin = server.admin
    tokens: dict[str, str] = {}
    for user in spec["users"]:
        name, token = admin.create_user(user, "volunteer")
        tokens[name] = token
    for group, members in spec["groups"].items():
        admin.execute("group.create", {"name": group, "max_talk": spec.get("max_talk", 600.0)},
                      now)
        for i in range(0, len(members), 500):
            admin.execute("group.add", {"name": group, "users": members[i:i + 500]}, now)
    return tokens


class _Proc:
    """A forked child answering (command, argument) pairs over a pipe with (status, result)."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self.conn, child = _CTX.Pipe()
        self.proc = _CTX.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()
        child.close()

    def recv(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"no answer from pid {self.proc.pid} within {timeout:g} s")
        status, res = self.conn.recv()
        if status == "error":
            raise RuntimeError(f"child {self.proc.pid}: {res}")
        return res

    def send(self, cmd: str, arg: Any = None) -> None:
        self.conn.send((cmd, arg))

    def call(self, cmd: str, arg: Any = None, timeout: float = 60.0) -> Any:
        self.send(cmd, arg)
        return self.recv(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.is_alive():
            try:
                self.call("stop", timeout=timeout)
            except (OSError, EOFError, TimeoutError, RuntimeError):
                pass
            self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.terminate()  # only our own child, by its handle
            self.proc.join(5)
        self.conn.close()


class ServerProc(_Proc):
    """A PttServer in its own process with a temporary database (PBKDF2 at 1,000 iterations)."""

    def __init__(self, iterations: int = 1000, nice: int = 0) -> None:
        """``nice`` < 0 lets the server pre-empt the load generators on a shared machine, as if
        it had a core of its own (the load generators cannot be elsewhere here)."""
        self._tmp = tempfile.TemporaryDirectory(prefix="ptt-bench-")
        super().__init__(_server_main, self._tmp.name, iterations, nice)
        ready = self.recv(30)
        self.address: tuple[str, int] = tuple(ready["address"])  # type: ignore[assignment]
        self.pid: int = ready["pid"]

    def provision(self, groups: dict[str, list[str]], max_talk: float = 600.0,
                  timeout: float = 600.0) -> dict[str, str]:
        users = list(dict.fromkeys(u for members in groups.values() for u in members))
        return self.call("provision", {"users": users, "groups": groups, "max_talk": max_talk},
                         timeout)

    def stats(self) -> dict[str, Any]:
        return self.call("stats", timeout=30)

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self._tmp.cleanup()


def cpu_between(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Server CPU seconds, wall seconds and counter deltas between two ``stats()`` snapshots."""
    out = {"cpu": b["cpu"] - a["cpu"], "wall": b["wall"] - a["wall"],
           "user": b["user"] - a["user"], "sys": b["sys"] - a["sys"]}
    for k, v in b["counters"].items():
        if isinstance(v, int):
            out[k] = v - a["counters"][k]
    return out


# --- the client pool -----------------------------------------------------------------------------


class ClientPool:
    """Many ClientCores, one UDP socket each, one epoll and one timer heap."""

    def __init__(self, server: tuple[str, int], kernel_ts: bool = False,
                 servers: list[tuple[str, int]] | None = None, source: str = LOCALHOST,
                 verifier: tuple[bytes, int, bytes] | None = None) -> None:
        """``servers``: a cluster's access nodes, ``server`` first: each client gets the list
        (its core moves when its node is lost) and an unconnected socket, sending to the node
        its core names and telling the core who sent what it reads. ``source``: the loopback
        address the clients' sockets bind to (one address has ~28,000 ephemeral ports: a run
        of more clients spreads its load processes over several). ``verifier``: (salt,
        iterations, verifier) of a token and salt every user shares, so the clients skip
        PBKDF2 (the bench measures the servers)."""
        self.server = server
        self.kernel_ts = kernel_ts
        self.servers = [server, *(s for s in servers or () if s != server)] if servers else None
        self.source = source
        self.verifier = verifier
        self.ep = select.epoll()
        self.cores: list[cl.ClientCore] = []
        self.socks: list[socket.socket] = []
        self.groups: list[list[str]] = []
        self.armed: list[float | None] = []
        self.fd_index: dict[int, int] = {}
        self.heap: list[tuple[float, int, int, Callable[[], None] | None]] = []
        self._seq = 0
        self.extra_fds: dict[int, Callable[[], None]] = {}
        self.sinks: list[socket.socket] = []
        self.on_events: Callable[[int, list[Any], float, float], None] | None = None
        self.on_voice: Callable[[int, bytes, int], None] | None = None
        self.joined = 0
        self.online: set[int] = set()
        self.disconnects = 0
        self.lost_why: dict[str, int] = {}
        self.failures: list[str] = []
        self.last_recv = 0.0
        self.last_kernel = 0.0
        self.light = False
        self.busy_groups: set[str] = set()  # light clients' rule: groups with a talker
        self.light_due: dict[int, float] = {}  # a light client's next heartbeat
        self.stuck: set[int] = set()  # clients whose timer did not move (see _stuck)
        self._joins_sent = 0  # deaf clients that asked to join (send_joins)

    # clients ---------------------------------------------------------------------------------

    def add(self, user: str, token: str, groups: list[str]) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        if self.kernel_ts:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((self.source, 0))
        if self.servers is None:
            sock.connect(self.server)
        i = len(self.cores)
        core = cl.ClientCore(user, token, os.urandom, f"bench/{user}" if self.servers else "",
                             servers=self.servers or ())
        if self.verifier is not None:
            core._verifier_cache = self.verifier  # a load generator's shortcut (private)
        for g in groups:
            core.join(g, 0.0)  # not connected yet: remembered, joined on Welcome
        self.cores.append(core)
        self.socks.append(sock)
        self.groups.append(groups)
        self.armed.append(None)
        self.fd_index[sock.fileno()] = i
        self.ep.register(sock.fileno(), select.EPOLLIN)
        return i

    def connect(self, i: int) -> None:
        self.cores[i].connect(time.monotonic())
        self.flush(i)

    def send(self, i: int, data: bytes) -> None:
        """One datagram of client ``i`` outside its core (voice, a light heartbeat) to the
        server it uses now: with a server list its socket is unconnected and the server may
        have changed (a move, a steer to its group's home)."""
        if self.servers is None:
            self.socks[i].send(data)
        else:
            self.socks[i].sendto(data, self.cores[i].server)

    def flush(self, i: int, t_recv: float = 0.0, t_kernel: float = 0.0) -> None:
        core = self.cores[i]
        out = core.datagrams_to_send()
        if out:
            sock = self.socks[i]
            to = core.server if self.servers is not None else None
            for d in out:
                try:
                    if to is None:
                        sock.send(d)
                    else:
                        sock.sendto(d, to)
                except OSError:  # ICMP refused from an earlier datagram, or a full buffer
                    pass
        evs = core.events()
        if evs:
            for ev in evs:
                if isinstance(ev, cl.Connected):
                    self.online.add(i)
                    # real clients heartbeat with random phases, not in lock step with the ramp
                    core._next_heartbeat = time.monotonic() + random.random() * max(
                        core.heartbeat, core.cadence.idle)
                elif isinstance(ev, cl.GroupJoined):
                    self.joined += 1
                elif isinstance(ev, cl.Disconnected):
                    self.disconnects += 1
                    self.lost_why[ev.reason] = self.lost_why.get(ev.reason, 0) + 1
                    self.online.discard(i)
                elif isinstance(ev, cl.RequestFailed) and ev.what == "join" and ev.code is None:
                    # timed out (a big group's presence storm on a busy machine): ask again
                    self.failures.append(f"{core.user}: {ev}")
                    self.call_at(time.monotonic() + 0.5 * random.random(),
                                 lambda i=i, g=ev.group: self._rejoin(i, g))
                elif isinstance(ev, (cl.LoginFailed, cl.RequestFailed)):
                    self.failures.append(f"{core.user}: {ev}")
            if self.on_events is not None:
                self.on_events(i, evs, t_recv, t_kernel)
        at = core.get_timer()
        if at is not None and at != self.armed[i]:
            self.armed[i] = at
            self._seq += 1
            heapq.heappush(self.heap, (at, self._seq, i, None))

    def add_sinks(self, n: int) -> list[tuple[str, int]]:
        """``n`` more receive sockets, not connected (the clients' sockets take datagrams from
        the server only): what they receive goes to ``on_voice`` like a client's voice."""
        addrs = []
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind((LOCALHOST, 0))
            self.sinks.append(sock)
            self.extra_fds[sock.fileno()] = lambda sock=sock: self._drain(sock)
            self.ep.register(sock.fileno(), select.EPOLLIN)
            addrs.append(sock.getsockname())
        return addrs

    def _drain(self, sock: socket.socket) -> None:
        for _ in range(64):
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # ICMP port unreachable while the server is (re)starting
            if is_voice(data) and self.on_voice is not None:
                self.on_voice(-1, data, time.monotonic_ns())

    def _rejoin(self, i: int, group: str) -> None:
        self.cores[i].join(group, time.monotonic())
        self.flush(i)

    def go_light(self) -> None:
        """From now on only heartbeat, as cheaply as Python allows: each client seals its
        Heartbeat itself and drains what the server sends without opening it. The server sees
        the same traffic as from full clients; the load generator spends about half the CPU
        (its full client cores took more than a core at 10,000 clients, starving the server
        it measures on a 2-core machine). The client cores are no longer driven.

        The cadence is the real one (``Cadence.interval``): the busy interval while a group the
        client joined is in :attr:`busy_groups` (the bench knows who talks: :meth:`set_busy`),
        the idle one (55 s by default) otherwise. A light client cannot learn it from the floor
        news it drains unopened."""
        self.light = True
        self.armed = [None] * len(self.cores)  # the cores' own timers, still in the heap, lapse
        now = time.monotonic()
        for i in range(len(self.cores)):
            if i in self.online:
                self.call_at(now + random.random() * self._light_interval(i),
                             lambda i=i: self._light_beat(i))

    def _light_busy(self, i: int) -> bool:
        busy = self.busy_groups
        return bool(busy) and any(g in busy for g in self.cores[i].groups)

    def _light_interval(self, i: int) -> float:
        return self.cores[i].cadence.interval(self._light_busy(i))

    def set_busy(self, groups: list[str]) -> None:
        """These groups have a talker from now on (and no others): light clients joined to one
        tighten to the busy cadence within one busy interval, as a real client does on the
        floor news; the others relax after their next heartbeat."""
        self.busy_groups = set(groups)
        if not self.light:
            return
        now = time.monotonic()
        for i in range(len(self.cores)):
            if i in self.online and self._light_busy(i):
                self.call_at(now + random.random() * self.cores[i].cadence.busy,
                             lambda i=i: self._light_beat(i, tighten=True))

    def _light_beat(self, i: int, tighten: bool = False) -> None:
        core = self.cores[i]
        now = time.monotonic()
        due = self.light_due.get(i, 0.0)
        if tighten and due - now <= core.cadence.busy:
            return  # its next beat comes within a busy interval anyway
        if not tighten and now < due - 1e-3:
            return  # superseded: a tightened beat rescheduled this client
        # the core's own channel and session (private: a load generator's shortcut)
        channel = core._channel
        if channel is not None and core.session_id is not None:
            txn = core._txn_next()
            try:
                beat = encode_message(m.Heartbeat(txn, core.session_id))
                self.send(i, channel.seal(beat, keepalive=True))
            except OSError:
                pass
        nxt = now + self._light_interval(i)
        self.light_due[i] = nxt
        self.call_at(nxt, lambda: self._light_beat(i))

    def go_deaf(self) -> None:
        """:meth:`go_light`, and read nothing more: the clients' sockets leave the epoll with the
        smallest receive buffer, so the kernel drops what the server sends them on arrival and
        this process spends nothing on it (thousands of listeners of a fan-out benchmark, whose
        receiving would take more CPU than the server's sending). They keep heartbeating."""
        self.go_light()
        for sock in self.socks:
            try:
                self.ep.unregister(sock.fileno())
            except OSError:
                pass
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)  # the kernel's minimum

    def send_joins(self, group: str, rate: float, until: float, limit: int | None = None,
                   users: list[str] | None = None) -> int:
        """The next ``limit`` (default: all) online clients that did not yet ask, or those of
        ``users`` (asking again: a deaf client never learns that its Join was lost), ask once
        to join ``group`` (sealed by their cores, the answers never read: see
        :meth:`go_deaf`), at most ``rate`` a second; returns how many asked."""
        sent = 0
        t0 = time.monotonic()
        if users is not None:
            wanted = set(users)
            todo = [i for i in sorted(self.online) if self.cores[i].user in wanted]
        else:
            todo = sorted(self.online)[self._joins_sent:][:limit]
            self._joins_sent += len(todo)
        for k, i in enumerate(todo):
            if time.monotonic() >= until:
                break
            wait = t0 + k / rate - time.monotonic()
            if wait > 0:
                self.run(time.monotonic() + wait)  # heartbeats stay on time meanwhile
            core = self.cores[i]
            core.join(group, time.monotonic())
            for d in core.datagrams_to_send():
                try:
                    self.socks[i].send(d)
                except OSError:
                    pass
            sent += 1
        return sent

    def call_at(self, at: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (at, self._seq, -1, fn))

    # the loop --------------------------------------------------------------------------------

    def _read(self, i: int) -> None:
        sock = self.socks[i]
        if self.light:
            self._drain(sock)
            return
        core = self.cores[i]
        kts = self.kernel_ts
        for _ in range(64):
            t_kernel = 0.0
            try:
                if kts:
                    data, anc, _, source = sock.recvmsg(65536, 64)
                    t_kernel = kernel_time(anc)
                else:
                    data, source = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # ICMP port unreachable while the server is (re)starting
            if is_voice(data):
                if self.on_voice is not None:
                    self.on_voice(i, data, time.monotonic_ns())
                continue
            now = time.monotonic()
            core.receive_datagram(data, now, source if self.servers is not None else None)
            self.flush(i, now, t_kernel)

    def run(self, until: float, done: Callable[[], bool] | None = None) -> None:
        """Serve sockets and timers until the monotonic time ``until`` or ``done()``."""
        heap, ep, fd_index, extra = self.heap, self.ep, self.fd_index, self.extra_fds
        while True:
            now = time.monotonic()
            # timers that fall due faster than they run (thousands of clients moving at once)
            # would keep this loop from the sockets and the parent's commands: a batch ends
            # after TIMER_BATCH_S, the poll below runs, then the next batch
            batch_end = now + TIMER_BATCH_S
            while heap and heap[0][0] <= now < batch_end:
                at, _, i, fn = heapq.heappop(heap)
                if fn is not None:
                    fn()
                elif self.armed[i] == at:
                    self.armed[i] = None
                    core = self.cores[i]
                    core.handle_timer(now)
                    self.flush(i)
                    if self.armed[i] == at:  # handle_timer left its timer where it was
                        self._stuck(i, at)
                now = time.monotonic()
            if done is not None and done():
                return
            if now >= until:
                return
            wait = min(until, heap[0][0] if heap else until) - now
            for fd, _ in ep.poll(max(0.0, wait), 1024):
                i = fd_index.get(fd)
                if i is not None:
                    self._read(i)
                elif fd in extra:
                    extra[fd]()

    def _stuck(self, i: int, at: float) -> None:
        """A core whose timer does not move after ``handle_timer`` would spin this loop for
        ever (nothing else runs, commands go unanswered): say which of its deadlines stuck,
        once per client, and look again 50 ms later."""
        core = self.cores[i]
        if i not in self.stuck:
            self.stuck.add(i)
            self.failures.append(
                f"{core.user}: timer stuck at {at:.3f} ({core.conn.name}; rt "
                f"{core._rt.get_timer()}, heartbeat {core._next_heartbeat}, relogin "
                f"{core._relogin_at}, check {core._check_until}/{core._check_resend}, "
                f"asked {[(g.name, g.participation.name, g.asked) for g in core.groups.values()]}"
                f", unanswered {core._unanswered})")
        again = time.monotonic() + 0.05
        self.armed[i] = again
        self._seq += 1
        heapq.heappush(self.heap, (again, self._seq, i, None))

    def login_all(self, timeout: float, inflight: int = 100) -> None:
        """Log every client in and join its groups, ``inflight`` logins at a time."""
        want_joins = sum(len(g) for g in self.groups)
        nxt = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while nxt < len(self.cores) and nxt - len(self.online) < inflight:
                self.connect(nxt)
                nxt += 1
            if self.joined >= want_joins and nxt >= len(self.cores):
                return
            self.run(min(deadline, time.monotonic() + 0.02),
                     lambda: nxt - len(self.online) < inflight and nxt < len(self.cores))
        raise TimeoutError(f"{len(self.online)}/{len(self.cores)} logged in, "
                           f"{self.joined}/{want_joins} joins, {self.disconnects} sessions lost "
                           f"{self.lost_why} after {timeout:g} s; "
                           f"{self.failures[:3]}")

    def close_all(self) -> None:
        now = time.monotonic()
        for i, core in enumerate(self.cores):
            core.close(now)
            self.flush(i)
        for s in self.socks + self.sinks:
            s.close()
        self.ep.close()


# --- worker processes ----------------------------------------------------------------------------


def _raise_fd_limit(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n + 256)) if hard != resource.RLIM_INFINITY else max(soft, n + 256)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def logged_in(conn: Any, pool: ClientPool, clients: list[tuple[str, str, list[str]]],
              login_timeout: float, inflight: int) -> bool:
    """A worker's start: ``clients`` (user, token, groups) added to ``pool`` and logged in; a
    failure is sent to the parent as the error it waits for (False)."""
    _raise_fd_limit(len(clients))
    for user, token, groups in clients:
        pool.add(user, token, groups)
    try:
        pool.login_all(login_timeout, inflight)
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return False
    return True


def _worker_main(conn: Any, server: tuple[str, int], clients: list[tuple[str, str, list[str]]],
                 kernel_ts: bool, login_timeout: float, inflight: int = LOGIN_INFLIGHT) -> None:
    logging.basicConfig(level=logging.WARNING)
    pool = ClientPool(server, kernel_ts)
    if not logged_in(conn, pool, clients, login_timeout, inflight):
        return
    conn.send(("ready", {"clients": len(clients), "cpu": time.process_time()}))
    state: dict[str, Any] = {"stop": False, "role": None}

    def on_command() -> None:
        try:
            cmd, arg = conn.recv()
        except (EOFError, OSError):
            state["stop"] = True
            return
        try:
            if cmd == "stop":
                state["stop"] = True
                return
            if cmd == "stats":
                conn.send(("ok", {"cpu": time.process_time(), "connected": len(pool.online),
                                  "disconnects": pool.disconnects,
                                  "failures": pool.failures[:5]}))
            elif cmd == "light":
                pool.go_light()
                conn.send(("ok", None))
            elif cmd == "deaf":
                pool.go_deaf()
                conn.send(("ok", None))
            elif cmd == "busy":  # the groups that have a talker now (light clients' cadence)
                pool.set_busy(list(arg))
                conn.send(("ok", None))
            elif cmd == "join_deaf":  # {"group", "rate", "timeout"}
                conn.send(("ok", pool.send_joins(arg["group"], arg["rate"],
                                                 time.monotonic() + arg["timeout"],
                                                 arg.get("limit"), arg.get("users"))))
            elif cmd == "sinks":  # unconnected sockets for the kernel floor's fan-out
                conn.send(("ok", pool.add_sinks(int(arg))))
            elif cmd == "probe":
                state["role"] = FloorProbe(pool, conn, **arg)
            elif cmd == "listen":
                state["role"] = Listener(pool, conn)
            elif cmd == "listen_done":
                conn.send(("ok", state["role"].result()))
            elif cmd in ("grab", "talk", "release"):
                if not isinstance(state["role"], Talker):
                    state["role"] = Talker(pool, conn, **(arg if cmd == "grab" else {}))
                getattr(state["role"], cmd)(**(arg if cmd == "talk" else {}))
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))

    pool.extra_fds[conn.fileno()] = on_command
    pool.ep.register(conn.fileno(), select.EPOLLIN)
    deadline = time.monotonic() + 3600  # bounded even if the parent vanishes
    pool.run(deadline, lambda: state["stop"])
    pool.close_all()
    conn.send(("ok", None))


class WorkerProc(_Proc):
    """A forked :class:`ClientPool` of ``clients`` (user, token, groups); logged in when built."""

    def __init__(self, server: tuple[str, int], clients: list[tuple[str, str, list[str]]],
                 kernel_ts: bool = False, login_timeout: float = 120.0,
                 inflight: int = LOGIN_INFLIGHT) -> None:
        super().__init__(_worker_main, server, clients, kernel_ts, login_timeout, inflight)
        self.n = len(clients)
        self.login_timeout = login_timeout

    def wait_ready(self) -> dict[str, Any]:
        return self.recv(self.login_timeout + 10)


def start_workers(server: tuple[str, int], clients: list[tuple[str, str, list[str]]],
                  n_workers: int) -> list[WorkerProc]:
    """Split ``clients`` over ``n_workers`` processes, log them all in (in parallel)."""
    n_workers = max(1, min(n_workers, len(clients)))
    workers = [WorkerProc(server, clients[k::n_workers],
                          login_timeout=60 + len(clients) / 100) for k in range(n_workers)]
    try:
        for w in workers:
            w.wait_ready()
    except BaseException:
        for w in workers:
            w.stop(2)
        raise
    return workers


# --- roles ---------------------------------------------------------------------------------------


class FloorProbe:
    """Timed floor requests: request sent -> GRANTED (idle group) or QUEUED (busy group).

    Each probe group has two clients here, A and B. An idle sample: A asks, is granted, releases.
    A busy sample: B asks and is granted, then A asks and is queued, withdraws, and B releases.
    Samples start at ``rate`` per second over the groups in turn, for ``duration`` seconds.
    """

    def __init__(self, pool: ClientPool, conn: Any, pairs: list[tuple[int, int, str]] | None = None,
                 rate: float = 100.0, duration: float = 10.0, hold: float = 0.02,
                 busy_every: int = 4) -> None:
        self.pool, self.conn = pool, conn
        if pairs is None:  # clients 2k and 2k+1 share their first group
            pairs = [(2 * k, 2 * k + 1, pool.groups[2 * k][0])
                     for k in range(len(pool.cores) // 2)]
        self.pairs = pairs
        self.rate, self.hold, self.busy_every = rate, hold, busy_every
        self.grant_ms: list[float] = []
        self.queued_ms: list[float] = []
        self.grant_kernel_ms: list[float] = []
        self.queued_kernel_ms: list[float] = []
        self.skipped = 0
        self.failed = 0
        self.started = 0
        self.busy: dict[int, dict[str, Any]] = {}  # pair index -> sample in flight
        self.next_pair = 0
        self.end = time.monotonic() + duration
        self.who: dict[int, int] = {}
        for k, (a, b, _) in enumerate(pairs):
            self.who[a] = k
            self.who[b] = k
        pool.on_events = self.on_events
        pool.call_at(time.monotonic(), self.tick)

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self.end:
            self.pool.call_at(now + 0.05, self.finish)
            return
        self.pool.call_at(now + 1.0 / self.rate, self.tick)
        n = len(self.pairs)
        for _ in range(n):
            k = self.next_pair
            self.next_pair = (k + 1) % n
            if k not in self.busy:
                break
        else:
            self.skipped += 1
            return
        a, b, group = self.pairs[k]
        self.started += 1
        kind = "busy" if self.busy_every and self.started % self.busy_every == 0 else "idle"
        first = b if kind == "busy" else a
        sample = {"kind": kind, "group": group, "step": "first", "t0": 0.0, "w0": 0.0,
                  "deadline": now + 5.0}
        self.busy[k] = sample
        self._request(first, group, sample)

    def _request(self, i: int, group: str, sample: dict[str, Any]) -> None:
        core = self.pool.cores[i]
        core.request_floor(group, time.monotonic())
        sample["w0"] = time.time()
        sample["t0"] = time.monotonic()
        self.pool.flush(i)

    def on_events(self, i: int, evs: list[Any], t_recv: float, t_kernel: float) -> None:
        k = self.who.get(i)
        if k is None or k not in self.busy:
            return
        sample = self.busy[k]
        a, b, group = self.pairs[k]
        for ev in evs:
            if not isinstance(ev, cl.FloorStateChanged) or ev.group != group:
                if isinstance(ev, cl.RequestFailed):
                    self.failed += 1
                continue
            st = ev.state
            if st is cl.Participation.PENDING_REQUEST or st is cl.Participation.PENDING_RELEASE:
                continue
            step = sample["step"]
            kts = (t_kernel - sample["w0"]) * 1e3 if t_kernel else None
            if step == "first" and i == (b if sample["kind"] == "busy" else a):
                if st is not cl.Participation.HAS_PERMISSION:
                    self.failed += 1
                    self._release_all(k)
                    return
                if sample["kind"] == "idle":
                    self.grant_ms.append((t_recv - sample["t0"]) * 1e3)
                    if kts is not None:
                        self.grant_kernel_ms.append(kts)
                    sample["step"] = "holding"
                    self.pool.call_at(time.monotonic() + self.hold,
                                      lambda i=a, k=k: self._release(i, k, "released"))
                else:
                    sample["step"] = "second"
                    self._request(a, group, sample)
            elif step == "second" and i == a:
                if st is cl.Participation.QUEUED:
                    self.queued_ms.append((t_recv - sample["t0"]) * 1e3)
                    if kts is not None:
                        self.queued_kernel_ms.append(kts)
                else:
                    self.failed += 1
                self._release(a, k, "withdrawing")
            elif step == "withdrawing" and i == a and st is cl.Participation.NO_PERMISSION:
                self.pool.call_at(time.monotonic() + self.hold,
                                  lambda k=k: self._release(b, k, "released"))
            elif step == "released" and st is cl.Participation.NO_PERMISSION:
                del self.busy[k]

    def _release(self, i: int, k: int, step: str) -> None:
        if k in self.busy:
            self.busy[k]["step"] = step
        self.pool.cores[i].release_floor(self.pairs[k][2], time.monotonic())
        self.pool.flush(i)

    def _release_all(self, k: int) -> None:
        a, b, group = self.pairs[k]
        self.busy.pop(k, None)
        for i in (a, b):
            self.pool.cores[i].release_floor(group, time.monotonic())
            self.pool.flush(i)

    def finish(self) -> None:
        now = time.monotonic()
        stuck = [k for k, s in self.busy.items() if s["deadline"] < now]
        if self.busy and len(stuck) < len(self.busy) and now < self.end + 5:
            self.pool.call_at(now + 0.05, self.finish)  # let samples in flight complete
            return
        self.pool.on_events = None
        self.conn.send(("ok", {
            "grant_ms": self.grant_ms, "queued_ms": self.queued_ms,
            "grant_kernel_ms": self.grant_kernel_ms, "queued_kernel_ms": self.queued_kernel_ms,
            "started": self.started, "skipped": self.skipped, "failed": self.failed,
            "unfinished": len(self.busy)}))


class Listener:
    """Records each voice datagram's latency: receive time minus the send time in its payload.

    A sealed frame's payload is ciphertext (the relay never opens it, nor does this listener):
    its receive time is kept under its (sender, seq) and matched with the talker's send log."""

    def __init__(self, pool: ClientPool, conn: Any) -> None:
        self.lat_ns = array.array("q")
        self.sealed_keys = array.array("q")
        self.sealed_ns = array.array("q")
        self.received = 0
        pool.on_voice = self.on_voice
        conn.send(("ok", None))

    def on_voice(self, i: int, data: bytes, t_ns: int) -> None:
        self.received += 1
        if data[2] & VoiceFlags.ENCRYPTED:
            self.sealed_keys.append(frame_key(data))
            self.sealed_ns.append(t_ns)
        else:
            self.lat_ns.append(t_ns - STAMP.unpack_from(data, HEADER_SIZE)[0])

    def result(self) -> dict[str, Any]:
        return {"received": self.received, "lat_ns": self.lat_ns.tobytes(),
                "sealed_keys": self.sealed_keys.tobytes(), "sealed_ns": self.sealed_ns.tobytes()}


def frame_key(data: bytes) -> int:
    """(sender, seq) of a voice datagram as one integer, read from the clear header."""
    return int.from_bytes(data[8:12], "big") << 16 | int.from_bytes(data[16:18], "big")


def sealed_latencies(send_keys: bytes, send_ns: bytes, listener_results: list[dict[str, Any]]
                     ) -> array.array[int]:
    """Receive minus send time of sealed frames, joined on (sender, seq)."""
    keys, ns = array.array("q"), array.array("q")
    keys.frombytes(send_keys)
    ns.frombytes(send_ns)
    sent = dict(zip(keys, ns))
    out = array.array("q")
    for r in listener_results:
        rk, rn = array.array("q"), array.array("q")
        rk.frombytes(r["sealed_keys"])
        rn.frombytes(r["sealed_ns"])
        out.extend(t - sent[k] for k, t in zip(rk, rn) if k in sent)
    return out


class Talker:
    """Every client of the pool takes the floor of its first group and sends paced voice frames."""

    def __init__(self, pool: ClientPool, conn: Any, payload: int = 80, sealed: bool = False
                 ) -> None:
        self.pool, self.conn = pool, conn
        self.filler = bytes(max(0, payload - STAMP.size))
        self.sealed = sealed  # frames sealed with ptt.crypto.voice under a random group key
        self.sealers: dict[int, Any] = {}
        self.send_keys = array.array("q")
        self.send_ns = array.array("q")
        self.sent = 0
        self.granted: set[int] = set()
        self.released: set[int] = set()
        self.routes: dict[int, tuple[int, int, int]] = {}
        self.seq: dict[int, int] = {}

    def grab(self) -> None:
        pool = self.pool
        pool.on_events = self.on_events
        for i, core in enumerate(pool.cores):
            core.request_floor(pool.groups[i][0], time.monotonic())
            pool.flush(i)

    def on_events(self, i: int, evs: list[Any], t_recv: float, t_kernel: float) -> None:
        for ev in evs:
            if not isinstance(ev, cl.FloorStateChanged):
                continue
            if ev.state is cl.Participation.HAS_PERMISSION and i not in self.granted:
                route = self.pool.cores[i].talk_route(ev.group)
                assert route is not None
                self.routes[i] = route
                if self.sealed:
                    from ptt.crypto.voice import VoiceKey, VoiceSealer
                    self.sealers[i] = VoiceSealer(VoiceKey(route[0], 1, os.urandom(32)))
                self.granted.add(i)
                if len(self.granted) == len(self.pool.cores):
                    self.conn.send(("ok", {"granted": len(self.granted)}))
            elif ev.state is cl.Participation.NO_PERMISSION and i in self.granted:
                self.released.add(i)
                if ev.revoke_cause is not None:
                    self.conn.send(("error", f"floor revoked: {ev.revoke_cause}"))
                if len(self.released) == len(self.pool.cores):
                    self.conn.send(("ok", {"released": len(self.released)}))

    def talk(self, duration: float, interval: float = 0.02) -> None:
        """Send frames every ``interval`` from each talker (phases spread) for ``duration``."""
        n = len(self.pool.cores)
        start = time.monotonic() + 0.01
        self.end = start + duration
        for i in range(n):
            self.seq[i] = 0
            t0 = start + interval * i / n
            self.pool.call_at(t0, lambda i=i, t0=t0: self._send(i, t0, interval))
        self.pool.call_at(self.end + interval + 0.01,
                          lambda: self.conn.send(("ok", {
                              "sent": self.sent, "send_keys": self.send_keys.tobytes(),
                              "send_ns": self.send_ns.tobytes()})))

    def _send(self, i: int, t0: float, interval: float) -> None:
        now = time.monotonic()
        if now >= self.end:
            return
        gid, sid, burst = self.routes[i]
        seq = self.seq[i]
        self.seq[i] = seq + 1
        header = VoiceHeader(gid, sid, burst, seq, seq * 320)
        sealer = self.sealers.get(i)
        if sealer is None:
            data = encode_voice(header, STAMP.pack(time.monotonic_ns()) + self.filler)
        else:  # same payload size, sealed: 16 bytes of tag more on the wire
            data = sealer.seal(header, STAMP.pack(0) + self.filler)
            self.send_keys.append(sid << 16 | seq & 0xFFFF)
            self.send_ns.append(time.monotonic_ns())
        data = add_mac(self.pool.cores[i].voice_key, data)  # as a real client sends it
        try:
            self.pool.send(i, data)
            self.sent += 1
        except OSError:
            pass
        # the next frame on this talker's own 20 ms grid, not drifting with loop delays
        self.pool.call_at(max(now, t0 + (seq + 1) * interval),
                          lambda: self._send(i, t0, interval))

    def release(self) -> None:
        for i, core in enumerate(self.pool.cores):
            core.release_floor(self.pool.groups[i][0], time.monotonic())
            self.pool.flush(i)


# --- the kernel floor ----------------------------------------------------------------------------


def _floor_main(conn: Any, fanouts: list[list[tuple[str, int]]], payload: int) -> None:
    """One socket; per tick, one prebuilt sendmmsg per target list: the relay's fan-out with no
    Python per packet and nothing received, paced like a talker."""
    from ptt.net.sendmmsg import make_fanout

    logging.basicConfig(level=logging.WARNING)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    fans = [make_fanout(sock, tuple(tuple(a) for a in t)) for t in fanouts]
    filler = bytes(max(0, payload - STAMP.size))
    conn.send(("ready", {"mmsg": type(fans[0]).__name__ if fans else None}))
    while True:
        if not conn.poll(3600):  # bounded even if the parent vanishes
            return
        cmd, arg = conn.recv()
        if cmd == "stop":
            conn.send(("ok", None))
            return
        duration, interval = arg["duration"], arg["interval"]
        c0, t0 = time.process_time(), time.monotonic()
        sent = batches = 0
        for k in range(int(duration / interval) + 1):  # bounded: one batch per tick
            at = t0 + k * interval
            now = time.monotonic()
            if now >= t0 + duration:
                break
            if at > now:
                time.sleep(at - now)
            for g, fan in enumerate(fans):
                data = encode_voice(VoiceHeader(1, g + 1, 1, k, k * 320),
                                    STAMP.pack(time.monotonic_ns()) + filler)
                fan.send(data)
                sent += len(fan.targets)
            batches += 1
        cpu = time.process_time() - c0
        conn.send(("ok", {"cpu": cpu, "wall": time.monotonic() - t0, "datagrams": sent,
                          "batches": batches}))


class FloorSender(_Proc):
    """The kernel floor of the relay's fan-out: :func:`_floor_main` in its own process."""

    def __init__(self, fanouts: list[list[tuple[str, int]]], payload: int = 80) -> None:
        super().__init__(_floor_main, fanouts, payload)
        self.info = self.recv(30)

    def measure(self, duration: float, interval: float = 0.02) -> dict[str, Any]:
        return self.call("run", {"duration": duration, "interval": interval},
                         timeout=duration + 30)
