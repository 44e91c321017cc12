"""Load run: thousands of simulated clients in hundreds of groups with floor churn and voice.

A real :class:`ptt.server.app.PttServer` runs in its own process with a floor monitor on its event
stream: a grant while the group's floor is held by another burst is a *double grant*; a burst that
ends by silence or no-start (the talkers here send voice until they release) is a *lost release*;
a floor still held after every client has stopped is a lost release too. Client worker processes
(``bench/loadgen.py``'s :class:`ClientPool`: one UDP socket per client, one epoll loop per process)
log everyone in, then each client churns: think (exponential), ask for the floor, talk 20 ms voice
frames while granted (waiting in the queue if queued, up to ``QUEUE_PATIENCE``), release. Every
request must resolve (granted, queued or denied) and every release must be answered. Server CPU is
its process CPU time over the run; memory its resident set (VmRSS, peak VmHWM).

    .venv/bin/python bench/bench_load.py            # 2,000 clients, 200 groups, 60 s
    .venv/bin/python bench/bench_load.py --quick    # 200 clients, 20 groups, 8 s

Everything talks to 127.0.0.1 and every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402

from ptt.protocol import client as cl  # noqa: E402
from ptt.wire.voice import VoiceHeader, add_mac, encode_voice  # noqa: E402

GROUP_SIZE = 10
FRAME = 0.02
PAYLOAD = bytes(60)  # about a 24 kbit/s Opus frame
THINK_MEAN = 30.0  # s between a client's bursts: ~40% floor occupancy in groups of 10
TALK = (1.0, 3.0)  # s of voice per burst, uniform
QUEUE_PATIENCE = 8.0  # a queued client withdraws after this long
SETTLE = 4.0  # s after the churn stops for the last releases and grants to finish
LAG_EVERY = 0.1  # s between a node's ticks that time its loop's turns
LAG_SHOWN = 0.25  # s: a tick this late is kept (when, how late)


# --- the server process with a floor monitor ---------------------------------------------------


def rss_kib() -> dict[str, int]:
    """Resident and peak resident set of this process, KiB (from /proc/self/status)."""
    out = {"rss_kib": 0, "hwm_kib": 0}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            out["rss_kib"] = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            out["hwm_kib"] = int(line.split()[1])
    return out


class FloorMonitor:
    """Checks the server's floor events: one holder per group at a time, how bursts end."""

    def __init__(self) -> None:
        self.holders: dict[str, tuple[str, int]] = {}
        self.double_grants: list[str] = []
        self.grants = 0
        self.ends: dict[str, int] = {}
        # (group, user, burst, when) ended by silence or no-start
        self.quiet: list[tuple[str, str, int, float]] = []

    def __call__(self, ev: Any, now: float) -> None:
        from ptt.protocol import floor as fl
        from ptt.protocol.server import FloorEvent

        if not isinstance(ev, FloorEvent):
            return
        e = ev.event
        if isinstance(e, fl.Granted):
            held = self.holders.get(e.group)
            if held is not None and held != (e.user, e.burst_id):
                self.double_grants.append(f"{e.group}: {e.user}/{e.burst_id} while {held}")
            elif held is None:
                self.grants += 1
            self.holders[e.group] = (e.user, e.burst_id)
        elif isinstance(e, fl.BurstEnded):
            if self.holders.get(e.group, ("", -1))[1] == e.burst_id:
                del self.holders[e.group]
            self.ends[e.reason.value] = self.ends.get(e.reason.value, 0) + 1
            if e.reason in (fl.EndReason.SILENCE, fl.EndReason.NO_START) and len(self.quiet) < 5000:
                self.quiet.append((e.group, e.user, e.burst_id, now))

    def stats(self) -> dict[str, Any]:
        return {"double_grants": len(self.double_grants), "double_examples":
                self.double_grants[:3], "grants": self.grants, "ends": dict(self.ends),
                "held": len(self.holders), "quiet": self.quiet}


def _server_main(conn: Any, workdir: str, iterations: int, port: int = 0,
                 cluster: dict[str, Any] | None = None, gc_freeze: bool = False) -> None:
    """A server on ``workdir``/db.sqlite; with ``cluster`` (ClusterConfig's fields), a node of
    it, as ``ptt server --cluster`` runs one, whose monitor checks the groups it homes;
    ``gc_freeze`` as ``ptt server`` decides it (``gc_freeze_wanted``)."""
    import asyncio
    from dataclasses import asdict

    from ptt.config import ServerConfig
    from ptt.protocol.server import FloorEvent
    from ptt.server.app import PttServer, gc_freeze_wanted

    logging.basicConfig(level=logging.WARNING)

    async def main() -> None:
        wd = Path(workdir)
        server = PttServer(ServerConfig(host=loadgen.LOCALHOST, port=port, db=wd / "db.sqlite",
                                        record_dir=wd / "rec"), iterations=iterations,
                           gc_freeze=gc_freeze and gc_freeze_wanted())
        await server.start()
        node = None
        if cluster is not None:
            from ptt.cluster.config import ClusterConfig
            from ptt.cluster.node import ClusterNode

            node = ClusterNode(server, ClusterConfig(**cluster))
            await node.start()
            bus_counts = _count_bus(node)
        monitor = FloorMonitor()
        # (group, user) -> when releases from other nodes reached this node's routing: a burst
        # ended by silence after its talker released is told apart from a late release (came
        # after the end) and one that never came
        arrived: dict[tuple[str, str], list[float]] = {}
        if node is not None:
            from ptt.wire.cluster import InputKind

            routing = node.routing
            decide = routing._on_input

            def on_input(msg: Any, now: float) -> None:
                if msg.kind is InputKind.RELEASE and len(arrived) < 100_000:
                    arrived.setdefault((msg.group, msg.user), []).append(now)
                decide(msg, now)

            routing._on_input = on_input  # type: ignore[method-assign]

        def on_event(ev: Any, now: float) -> None:
            if isinstance(ev, FloorEvent) and node is not None \
                    and node.routing.elsewhere(ev.event.group):
                # a mirror of another node's decision: checked at its home; what this node
                # saw while it was the home is void (the group moved: a lease lapsed)
                monitor.holders.pop(ev.event.group, None)
                return
            monitor(ev, now)

        server.listeners.append(on_event)
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        # a timer due every LAG_EVERY s: each time it ran more than LAG_SHOWN late (the loop's
        # turn, its wait for a CPU included), when (monotonic, as the bench's clock) and how late
        lags: list[tuple[float, float]] = []

        def tick(due: float) -> None:
            now = loop.time()
            if now - due > LAG_SHOWN and len(lags) < 1000:
                lags.append((round(due, 3), round(now - due, 3)))
            loop.call_at(now + LAG_EVERY, tick, now + LAG_EVERY)

        loop.call_at(loop.time() + LAG_EVERY, tick, loop.time() + LAG_EVERY)

        def on_command() -> None:
            try:
                cmd, arg = conn.recv()
            except (EOFError, OSError):
                if not done.done():
                    done.set_result(None)
                return
            try:
                if cmd == "provision":
                    res: Any = loadgen._provision(server, arg, loop.time())
                elif cmd == "stats":
                    t = os.times()
                    res = {"cpu": time.process_time(), "wall": time.monotonic(),
                           "user": t.user, "sys": t.system,
                           "counters": asdict(server.counters),
                           "sessions": len(server.core.sessions.by_id),
                           "floor": monitor.stats(), **rss_kib()}
                    if node is not None:  # the groups homed here now
                        res["clients_written"] = dict(node.clients_written)
                        res["told"] = dict(node.told)
                        res["ownership_events"] = dict(node.ownership_events)
                        res["shed"] = server.shed()
                        res["loop_lags"] = list(lags)
                        if node.ownership is not None:
                            res["claims_sent"] = dict(node.ownership.claims_sent)
                            res["lease"] = node.ownership.lease_stats
                            res["homes_here"] = sum(  # etcd's view: claims this node holds
                                1 for h in node.ownership.homes.values()
                                if h.node == node.config.node)
                        res["floor"]["held"] = sum(1 for g in monitor.holders
                                                   if not node.routing.elsewhere(g))
                        res["homed"] = sum(1 for g in server.core.groups
                                           if not node.routing.elsewhere(g))
                        now = loop.time()
                        res["floor"]["release_arrivals"] = [  # per quiet end: s after it
                            [round(t - q[3], 3) for t in arrived.get((q[0], q[1]), ())
                             if abs(t - q[3]) < 5.0] for q in monitor.quiet]
                        res["floor"]["held_detail"] = [  # what a floor held to the end is
                            (g, monitor.holders[g], f.holder, f.burst_id, f.state.value,
                             node.routing.homes.home_of(g),
                             node.routing.homes.may_act(g, now),
                             None if f.get_timer() is None else round(f.get_timer() - now, 2),
                             g in node.routing._homeless)
                            for g in list(monitor.holders)[:50]
                            if not node.routing.elsewhere(g)
                            for f in (server.core.floors.floor(g),)][:5]
                elif cmd == "bus":  # node-to-node messages so far, by direction and type
                    res = dict(bus_counts) if node is not None else {}
                elif cmd == "handles":  # the loop's callbacks run since the last call
                    res = _count_handles()
                elif cmd == "wakes":  # what woke the loop's and the renewer's threads, since
                    res = _count_wakes(loop, server, node)
                elif cmd == "timing":  # the loop thread's CPU by callback and part, since
                    res = _timing(server, node, arg)
                elif cmd == "census":  # the most numerous live object types (a leak hunt)
                    import collections
                    import gc

                    res = collections.Counter(
                        type(o).__name__ for o in gc.get_objects()).most_common(12)
                    if node is not None:
                        res.append(("bus queue", len(node.bus._queue)))
                        res.append(("claim tasks", len(node._claims)))
                    res.append(("asyncio tasks", len(asyncio.all_tasks())))
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
        conn.send(("ready", {"address": server.address, "pid": os.getpid(), **rss_kib()}))
        try:
            await asyncio.wait_for(done, timeout=3600)  # bounded even if the parent vanishes
        except TimeoutError:
            pass
        loop.remove_reader(conn.fileno())
        if node is not None:
            await node.close()
        server.close()

    asyncio.run(main())


_handles: dict[str, int] | None = None


def _count_handles() -> dict[str, int]:
    """The event loop's callbacks run since the last call, by what they run (a task's
    coroutine, a callback's name): what wakes a server's loop. The first call installs the
    counting (a wrapper on ``asyncio.Handle._run``: the bench's view) and returns nothing."""
    import asyncio

    global _handles
    if _handles is None:
        counts: dict[str, int] = {}
        run = asyncio.Handle._run

        def counted(handle: Any) -> None:
            cb = handle._callback
            owner = getattr(cb, "__self__", None)
            if isinstance(owner, asyncio.Task):
                name = "task " + getattr(owner.get_coro(), "__qualname__", "?")
            else:
                name = getattr(getattr(cb, "func", cb), "__qualname__", type(cb).__name__)
            counts[name] = counts.get(name, 0) + 1
            run(handle)

        asyncio.Handle._run = counted  # type: ignore[method-assign]
        _handles = counts
    out = dict(_handles)
    _handles.clear()
    return out


_wakes: dict[str, Any] | None = None


def _count_wakes(loop: Any, server: Any, node: Any) -> dict[str, int]:
    """What woke the loop's thread and the renewer's (``ptt-lease``) since the last call, a
    census of their voluntary context switches (the bench's view, installed by the first
    call, which returns nothing). The loop: each ``select`` in which the thread slept
    (``getrusage(RUSAGE_THREAD)``'s ``ru_nvcsw`` moved across it) is put down to what was
    ready, ``fd ...`` (a reader's callback, a transport's protocol: the client socket's
    ``DatagramProtocol``, NATS's ``StreamReaderProtocol``, etcd's gateway ``_Connection``, the
    node's peer port, the self-pipe ``_read_from_self``, the bench's command pipe), else
    ``timer ...`` (the callback of the timer due first); ``threadsafe ...`` counts what other
    threads handed the loop (each a write to the self-pipe); ``loop other`` is the rest of the
    thread's switches (the GIL's hand-overs, a blocking call). The renewer: ``lease interval``
    (its wait for the next renewal), ``lease answer`` (a renewal's request and answer),
    ``lease other``; ``datagrams in``, the client socket's datagrams (how many a wake-up of the
    socket found tells how its senders' datagrams bunch). Each key's count is summed over the
    interval, not per second."""
    import asyncio
    import resource
    import threading

    global _wakes

    def switches() -> int:
        return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw

    def callback_name(cb: Any) -> str:
        owner = getattr(cb, "__self__", None)
        if isinstance(owner, asyncio.Task):
            return "task " + getattr(owner.get_coro(), "__qualname__", "?")
        protocol = getattr(owner, "_protocol", None)
        if protocol is not None:  # a transport's _read_ready: by its protocol
            return type(protocol).__qualname__
        return getattr(getattr(cb, "func", cb), "__qualname__", type(cb).__name__)

    if _wakes is None:
        counts: dict[str, int] = {}
        state: dict[str, Any] = {"counts": counts, "loop": switches(), "lease": None,
                                 "datagrams": server.counters.datagrams_in}

        def add(key: str, n: int = 1) -> None:
            counts[key] = counts.get(key, 0) + n

        selector = loop._selector
        select = selector.select

        def counted_select(timeout: float | None = None) -> Any:
            first = loop._scheduled[0] if loop._scheduled and timeout != 0 else None
            before = switches()
            events = select(timeout)
            slept = switches() - before
            if slept:
                add("loop slept in select", slept)
                for key, mask in events:
                    reader, writer = key.data if key.data else (None, None)
                    handle = reader if mask & 1 and reader is not None else writer
                    what = "?" if handle is None else callback_name(handle._callback)
                    add(f"fd {'read' if mask & 1 else 'write'} {what}")
                if not events:
                    add("timer " + ("none due" if first is None
                                    else callback_name(first._callback)))
            return events

        selector.select = counted_select
        threadsafe = loop.call_soon_threadsafe

        def counted_threadsafe(callback: Any, *args: Any, **kw: Any) -> Any:
            add(f"threadsafe {callback_name(callback)} "
                f"(from {threading.current_thread().name})")
            return threadsafe(callback, *args, **kw)

        loop.call_soon_threadsafe = counted_threadsafe
        renewer = getattr(getattr(node, "ownership", None), "_renewer", None)
        if renewer is not None:
            wait, keep_alive = renewer._stopping.wait, renewer._keep_alive

            def counted_wait(timeout: float | None = None) -> bool:
                before = switches()
                try:
                    return wait(timeout)
                finally:
                    add("lease interval", switches() - before)

            def counted_keep_alive(lease_id: int) -> int:
                before = switches()
                try:
                    return keep_alive(lease_id)
                finally:
                    add("lease answer", switches() - before)

            renewer._stopping.wait = counted_wait
            renewer._keep_alive = counted_keep_alive
            state["lease"] = renewer._thread
        _wakes = state
        _wakes["lease_total"] = _thread_switches(state["lease"])
        return {}
    counts = dict(_wakes["counts"])
    _wakes["counts"].clear()
    counts["datagrams in"] = server.counters.datagrams_in - _wakes["datagrams"]
    _wakes["datagrams"] = server.counters.datagrams_in
    now = switches()
    in_select = counts.get("loop slept in select", 0)
    counts["loop total"] = now - _wakes["loop"]
    counts["loop other"] = counts["loop total"] - in_select
    _wakes["loop"] = now
    if _wakes["lease"] is not None:
        total = _thread_switches(_wakes["lease"])
        counts["lease total"] = total - _wakes["lease_total"]
        counts["lease other"] = counts["lease total"] - counts.get("lease interval", 0) \
            - counts.get("lease answer", 0)
        _wakes["lease_total"] = total
    return counts


def _thread_switches(thread: Any) -> int:
    """A thread's voluntary context switches so far (0 with no thread)."""
    if thread is None or thread.native_id is None:
        return 0
    try:
        with open(f"/proc/self/task/{thread.native_id}/status") as f:
            return next(int(line.split()[1]) for line in f
                        if line.startswith("voluntary_ctxt_switches"))
    except OSError:  # the thread ended
        return 0


_timed: dict[str, list[int]] | None = None  # name -> [calls, ns of the loop thread's CPU]
_timed_from: list[int] = [0, 0]  # the loop thread's CPU (ns) and the wall (ns) at the last call
_profile: Any = None  # a cProfile.Profile of the loop thread while one runs


def _timing(server: Any, node: Any, arg: Any) -> dict[str, Any]:
    """Where the loop thread's CPU went since the last call (the bench's view, installed by
    the first call, which returns nothing): each loop callback by what it runs (as
    ``handles`` names them, ``cb ...``) and, inside them, the parts the server and the node
    add (``in ...``: a bus message by type, the node's flush after each turn, its voice
    hook, its timer, the core's datagram handling...), each as calls and ns of thread CPU
    (``time.thread_time_ns``, so a wait for a CPU is not charged); ``loop``: the thread's
    whole CPU over the interval, the rest of it outside any callback being the loop's own
    (epoll, ``_run_once``). ``arg`` ``{"cprofile": PATH}``: also a cProfile of the loop
    thread until the next call, written to PATH (``{"cprofile": None}`` stops it)."""
    import asyncio
    import cProfile

    global _timed, _profile
    clock = time.thread_time_ns
    if _timed is None:
        timed: dict[str, list[int]] = {}
        run = asyncio.Handle._run

        def name_of(handle: Any) -> str:
            cb = handle._callback
            owner = getattr(cb, "__self__", None)
            if isinstance(owner, asyncio.Task):
                return f"cb task {getattr(owner.get_coro(), '__qualname__', None)}"
            return "cb " + getattr(getattr(cb, "func", cb), "__qualname__", type(cb).__name__)

        def timed_run(handle: Any) -> None:
            t0 = clock()
            try:
                run(handle)
            finally:
                e = timed.setdefault(name_of(handle), [0, 0])
                e[0] += 1
                e[1] += clock() - t0

        def wrap(obj: Any, attr: str, name: str | None = None,
                 key: Any = None) -> None:
            fn = getattr(obj, attr)

            def timed_fn(*a: Any, **kw: Any) -> Any:
                t0 = clock()
                try:
                    return fn(*a, **kw)
                finally:
                    e = timed.setdefault(key(*a) if key else f"in {name or attr}", [0, 0])
                    e[0] += 1
                    e[1] += clock() - t0

            setattr(obj, attr, timed_fn)

        asyncio.Handle._run = timed_run  # type: ignore[method-assign]
        import gc
        import threading

        gc_started = [0]

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            # inside whatever callback allocated; only the loop thread's are counted
            if threading.current_thread() is not threading.main_thread():
                return
            if phase == "start":
                gc_started[0] = clock()
                return
            e = timed.setdefault(f"in gc generation {info['generation']}", [0, 0])
            e[0] += 1
            e[1] += clock() - gc_started[0]

        gc.callbacks.append(on_gc)
        core = server.core
        wrap(core, "receive_datagram", "core.receive_datagram")
        wrap(core, "handle_timer", "core.handle_timer")
        wrap(server, "_send_out", "server._send_out")
        wrap(server, "_on_event", "server._on_event")
        if node is not None:
            from ptt.wire import cluster as wc
            from ptt.wire.voice import is_voice

            names = {t: cls.__name__ for t, cls in wc._TYPES.items()}

            def bus_kind(data: bytes) -> str:
                if is_voice(data):
                    return "in bus voice"
                at = 1 if data[0] & 0xF0 == 0x90 else 3
                return "in bus " + (names.get(data[at + 1], "other") if len(data) > at + 1
                                    else "other")

            wrap(node.bus, "on_message", key=bus_kind)
            wrap(node.bus, "send_all", "bus.send_all")
            for attr in ("flush", "voice", "clients", "handle_timer", "get_timer", "urgent"):
                wrap(node, attr, f"node.{attr}")
            wrap(node.routing, "receive", "routing.receive (decode, act, flush)")
            wrap(node.routing, "flush", "routing.flush")
            if node.ownership is not None:
                wrap(node.ownership, "write", "ownership.write (until its first await)")
        _timed = timed
        _timed_from[:] = [clock(), time.monotonic_ns()]
        return {}
    out: dict[str, Any] = {k: tuple(v) for k, v in _timed.items()}
    now = clock()
    out["loop"] = (1, now - _timed_from[0])
    out["loop outside callbacks (epoll, _run_once)"] = (1, out["loop"][1] - sum(
        ns for k, (_, ns) in out.items() if k.startswith("cb ")))
    out["wall_ns"] = time.monotonic_ns() - _timed_from[1]
    _timed.clear()
    _timed_from[:] = [now, time.monotonic_ns()]
    if _profile is not None:
        prof, path = _profile
        prof.disable()
        prof.dump_stats(path)
        _profile = None
    if isinstance(arg, dict) and arg.get("cprofile"):
        prof = cProfile.Profile()
        _profile = (prof, arg["cprofile"])
        prof.enable()
    return out


def _count_bus(node: Any) -> dict[str, int]:
    """Count a node's bus messages by direction and type (``out FloorNews``, ``in voice``,
    ``out bytes``...), by wrapping its Bus's send and delivery: the bench's view, not the
    node's code."""
    from ptt.wire import cluster as wc
    from ptt.wire.voice import is_voice

    counts: dict[str, int] = {}
    names = {t: cls.__name__ for t, cls in wc._TYPES.items()}

    def kind(data: bytes) -> str:
        if is_voice(data):
            return "voice"
        # [version, type, ...]: a fixarray or array16 header, then two positive fixints
        at = 1 if data[0] & 0xF0 == 0x90 else 3
        return names.get(data[at + 1], "other") if len(data) > at + 1 else "other"

    bus = node.bus
    send, deliver = bus.send, bus.on_message

    def counted_send(to: str, data: bytes) -> None:
        k = "out " + kind(data)
        counts[k] = counts.get(k, 0) + 1
        counts["out bytes"] = counts.get("out bytes", 0) + len(data)
        send(to, data)

    def counted_deliver(data: bytes) -> None:
        k = "in " + kind(data)
        counts[k] = counts.get(k, 0) + 1
        counts["in bytes"] = counts.get("in bytes", 0) + len(data)
        deliver(data)

    bus.send, bus.on_message = counted_send, counted_deliver
    return counts


class MonitoredServer(loadgen.ServerProc):
    """loadgen's server process, with the floor monitor and memory figures in ``stats()``."""

    def __init__(self, iterations: int = 1000) -> None:
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="ptt-load-")
        loadgen._Proc.__init__(self, _server_main, self._tmp.name, iterations)
        ready = self.recv(30)
        self.address = tuple(ready["address"])  # type: ignore[assignment]
        self.pid = ready["pid"]
        self.start_rss_kib: int = ready["rss_kib"]


# --- the churn role in client worker processes -------------------------------------------------


class Churn:
    """Every client of a pool churns on the floor of its first group until ``end``."""

    def __init__(self, pool: loadgen.ClientPool, conn: Any, duration: float, seed: int,
                 think: float = THINK_MEAN) -> None:
        self.pool, self.conn = pool, conn
        self.rng = random.Random(seed)
        self.think = think
        self.end = time.monotonic() + duration
        self.asked: dict[int, float] = {}  # client -> request sent, until resolved
        self.queued_at: dict[int, float] = {}
        self.talking: dict[int, float] = {}  # client -> burst end
        self.releasing: dict[int, float] = {}  # client -> release sent
        self.seq: dict[int, int] = {}
        self.resolve_ms: list[float] = []
        self.queue_wait_ms: list[float] = []
        self.release_ms: list[float] = []
        self.n = {"requests": 0, "granted": 0, "queued": 0, "denied": 0, "no_decision": 0,
                  "withdrawn": 0, "releases": 0, "revoked": 0, "failed": 0, "frames_sent": 0,
                  "frames_heard": 0, "relogins": 0}
        self.failures: list[str] = []
        pool.on_events = self.on_events
        pool.on_voice = self.on_voice
        now = time.monotonic()
        for i in range(len(pool.cores)):
            pool.call_at(now + self.rng_of(i).expovariate(1 / think), lambda i=i: self.ask(i))
        pool.call_at(self.end + SETTLE, self.finish)

    def rng_of(self, i: int) -> random.Random:
        """The draws (think, talk) of client ``i``: one stream for the pool here."""
        return self.rng

    def group(self, i: int) -> str:
        return self.pool.groups[i][0]

    def ask(self, i: int) -> None:
        now = time.monotonic()
        if now >= self.end or i in self.asked or i in self.talking or i in self.queued_at:
            return
        core = self.pool.cores[i]
        if core.participation(self.group(i)) is not cl.Participation.NO_PERMISSION:
            self.pool.call_at(now + 0.5, lambda: self.ask(i))
            return
        self.asked[i] = now
        self.n["requests"] += 1
        core.request_floor(self.group(i), now)
        self.pool.flush(i)

    def on_voice(self, i: int, data: bytes, t_ns: int) -> None:
        self.n["frames_heard"] += 1

    def on_events(self, i: int, evs: list[Any], t_recv: float, t_kernel: float) -> None:
        now = time.monotonic()
        for ev in evs:
            if isinstance(ev, cl.Disconnected):
                self.n["relogins"] += 1
            elif isinstance(ev, cl.RequestFailed) and ev.what in ("floor", "release"):
                self.n["failed"] += 1
                self.failures.append(f"{self.pool.cores[i].user}: {ev}")
            if not isinstance(ev, cl.FloorStateChanged) or ev.group != self.group(i):
                continue
            st = ev.state
            if i in self.asked and st not in (cl.Participation.PENDING_REQUEST,
                                              cl.Participation.PENDING_RELEASE):
                self.resolve_ms.append((now - self.asked.pop(i)) * 1e3)
                if st is cl.Participation.QUEUED:
                    self.n["queued"] += 1
                    self.queued_at[i] = now
                    self.pool.call_at(now + QUEUE_PATIENCE, lambda i=i: self.withdraw(i))
                elif st is cl.Participation.NO_PERMISSION:
                    self.n["denied" if ev.deny_cause else "no_decision"] += 1
                    self.again(i)
            if st is cl.Participation.HAS_PERMISSION and i not in self.talking:
                self.n["granted"] += 1
                if i in self.queued_at:
                    self.queue_wait_ms.append((now - self.queued_at.pop(i)) * 1e3)
                self.talking[i] = now + self.rng_of(i).uniform(*TALK)
                self.seq[i] = 0
                self.send(i, now)
            elif st is cl.Participation.NO_PERMISSION:
                if ev.revoke_cause is not None and i in self.talking:
                    self.n["revoked"] += 1
                    self.failures.append(f"{self.pool.cores[i].user}: revoked {ev.revoke_cause}")
                was_talking = self.talking.pop(i, None) is not None
                if i in self.releasing:
                    self.release_ms.append((now - self.releasing.pop(i)) * 1e3)
                    self.again(i)
                elif was_talking:
                    self.again(i)

    def again(self, i: int) -> None:
        self.pool.call_at(time.monotonic() + self.rng_of(i).expovariate(1 / self.think),
                          lambda: self.ask(i))

    def send(self, i: int, t0: float) -> None:
        end = self.talking.get(i)
        if end is None:
            return
        now = time.monotonic()
        route = self.pool.cores[i].talk_route(self.group(i))
        if route is None:
            return
        if now >= end or now >= self.end:
            self.release(i)
            return
        gid, sid, burst = route
        seq = self.seq[i]
        self.seq[i] = seq + 1
        try:
            self.pool.send(i, add_mac(self.pool.cores[i].voice_key, encode_voice(
                VoiceHeader(gid, sid, burst, seq, seq * 320), PAYLOAD)))
            self.n["frames_sent"] += 1
        except OSError:
            pass
        self.pool.call_at(max(now, t0 + (seq + 1) * FRAME), lambda: self.send(i, t0))

    def release(self, i: int) -> None:
        self.talking.pop(i, None)
        self.releasing[i] = time.monotonic()
        self.n["releases"] += 1
        self.pool.cores[i].release_floor(self.group(i), time.monotonic())
        self.pool.flush(i)

    def withdraw(self, i: int) -> None:
        if i in self.queued_at and self.pool.cores[i].participation(self.group(i)) is (
                cl.Participation.QUEUED):
            del self.queued_at[i]
            self.n["withdrawn"] += 1
            self.release(i)

    def finish(self) -> None:
        for i in list(self.queued_at):  # still waiting at the end: withdraw, then report
            self.withdraw(i)
        self.pool.on_events = None
        self.conn.send(("ok", {
            "n": self.n, "resolve_ms": self.resolve_ms, "queue_wait_ms": self.queue_wait_ms,
            "release_ms": self.release_ms, "unresolved": len(self.asked),
            "unanswered_releases": len(self.releasing), "failures": self.failures[:5]}))


def _worker_main(conn: Any, server: tuple[str, int], clients: list[tuple[str, str, list[str]]],
                 login_timeout: float, role: Any = None,
                 inflight: int = loadgen.LOGIN_INFLIGHT, source: str = loadgen.LOCALHOST,
                 servers: list[tuple[str, int]] | None = None) -> None:
    """Log ``clients`` in (their sockets on the loopback address ``source``; ``servers``: a
    cluster's nodes, ``server`` first, for clients that move among them); then "churn"
    starts ``role`` (default :class:`Churn`), "light" leaves them heartbeating only
    (``ClientPool.go_light``), "stats", "stop"."""
    import select

    logging.basicConfig(level=logging.WARNING)
    pool = loadgen.ClientPool(server, source=source, servers=servers)
    if not loadgen.logged_in(conn, pool, clients, login_timeout, inflight):
        return
    conn.send(("ready", {"clients": len(clients)}))
    state: dict[str, Any] = {"stop": False}

    def on_command() -> None:
        try:
            cmd, arg = conn.recv()
        except (EOFError, OSError):
            state["stop"] = True
            return
        if cmd == "stop":
            state["stop"] = True
        elif cmd == "churn":
            state["role"] = (role or Churn)(pool, conn, **arg)
        elif cmd == "light":
            pool.go_light()
            conn.send(("ok", None))
        elif cmd == "stats":
            conn.send(("ok", {"cpu": time.process_time(), "connected": len(pool.online),
                              "disconnects": pool.disconnects, **rss_kib()}))
        else:
            conn.send(("error", f"unknown command {cmd!r}"))

    pool.extra_fds[conn.fileno()] = on_command
    pool.ep.register(conn.fileno(), select.EPOLLIN)
    pool.run(time.monotonic() + 3600, lambda: state["stop"])  # bounded if the parent vanishes
    pool.close_all()
    conn.send(("ok", None))


class ChurnWorker(loadgen._Proc):
    def __init__(self, server: tuple[str, int], clients: list[tuple[str, str, list[str]]],
                 login_timeout: float) -> None:
        super().__init__(_worker_main, server, clients, login_timeout)
        self.login_timeout = login_timeout


# --- the run -----------------------------------------------------------------------------------


def measure(clients: int, duration: float, *, group_size: int = GROUP_SIZE,
            think: float = THINK_MEAN, workers: int = 2, seed: int = 1) -> dict[str, Any]:
    """One bounded run; returns the figures (see the module docstring for what is checked)."""
    n_groups = -(-clients // group_size)
    groups = {f"g{k:04d}": [f"u{j:05d}" for j in range(k * group_size,
                                                       min((k + 1) * group_size, clients))]
              for k in range(n_groups)}
    t_setup = time.monotonic()
    server = MonitoredServer()
    procs: list[ChurnWorker] = []
    try:
        tokens = server.provision(groups)
        entries = [(u, tokens[u], [g]) for g, members in groups.items() for u in members]
        timeout = 60 + clients / 50
        procs = [ChurnWorker(server.address, entries[k::workers], timeout)
                 for k in range(workers)]
        for p in procs:
            p.recv(timeout + 10)
        setup_s = time.monotonic() - t_setup
        s0 = server.stats()
        for k, p in enumerate(procs):
            p.send("churn", {"duration": duration, "seed": seed * 100 + k, "think": think})
        res = [p.recv(duration + SETTLE + 60) for p in procs]
        s1 = server.stats()
    finally:
        for p in procs:
            p.stop()
        server.stop()
    n: dict[str, int] = {}
    for r in res:
        for k, v in r["n"].items():
            n[k] = n.get(k, 0) + v
    resolve = loadgen.percentiles([x for r in res for x in r["resolve_ms"]])
    release = loadgen.percentiles([x for r in res for x in r["release_ms"]])
    qwait = loadgen.percentiles([x for r in res for x in r["queue_wait_ms"]])
    d = loadgen.cpu_between(s0, s1)
    floor = s1["floor"]
    ends = floor["ends"]
    lost_releases = (ends.get("silence", 0) + ends.get("no_start", 0) + floor["held"]
                     + sum(r["unanswered_releases"] for r in res))
    return {
        "clients": clients, "groups": n_groups, "duration_s": duration,
        "online": s0["sessions"], "requests": n["requests"],
        "granted": n["granted"], "queued": n["queued"], "denied": n["denied"],
        "withdrawn": n["withdrawn"],
        "unresolved": sum(r["unresolved"] for r in res) + n["no_decision"] + n["failed"],
        "resolve_p50_ms": resolve["p50"], "resolve_p99_ms": resolve["p99"],
        "resolve_max_ms": resolve["max"], "queue_wait_p50_ms": qwait["p50"],
        "release_p99_ms": release["p99"], "release_max_ms": release["max"],
        "double_grants": floor["double_grants"], "lost_releases": lost_releases,
        "revoked": n["revoked"], "relogins": n["relogins"],
        "server_grants": d["grants"], "burst_ends": ends,
        "voice_in_per_s": d["voice_in"] / d["wall"], "voice_out_per_s": d["voice_out"] / d["wall"],
        "voice_dropped": d["voice_dropped"], "frames_sent": n["frames_sent"],
        "frames_heard": n["frames_heard"],
        "server_cpu_pct": 100.0 * d["cpu"] / d["wall"],
        "server_rss_mib": s1["rss_kib"] / 1024, "server_peak_rss_mib": s1["hwm_kib"] / 1024,
        "setup_s": setup_s, "failures": [f for r in res for f in r["failures"]][:5],
        "double_examples": floor["double_examples"],
    }


ROW_KEYS = {
    "clients": "clients", "groups": "groups", "duration_s": "seconds", "requests": "requests",
    "granted": "granted", "queued": "queued", "unresolved": "unresolved",
    "resolve_p50_ms": "resolve p50 ms", "resolve_p99_ms": "resolve p99 ms",
    "resolve_max_ms": "resolve max ms", "double_grants": "double grants",
    "lost_releases": "lost releases", "voice_in_per_s": "voice in/s",
    "voice_out_per_s": "voice out/s", "server_cpu_pct": "server CPU %",
    "server_peak_rss_mib": "server peak RSS MiB",
}


def run(quick: bool = False) -> dict[str, Any]:
    clients, duration, think = (200, 8.0, 6.0) if quick else (2000, 60.0, THINK_MEAN)
    r = measure(clients, duration, think=think)
    cmd = ".venv/bin/python bench/bench_load.py" + (" --quick" if quick else "")
    return {
        "title": "Load: clients in groups of 10 with floor churn and voice",
        "command": cmd,
        "target": "2,000 clients in 200 groups for 60 s: zero double grants, zero lost releases, "
                  "every request resolved; server CPU and memory reported",
        "rows": [{label: r[k] for k, label in ROW_KEYS.items()}],
        "met": bool(r["double_grants"] == 0 and r["lost_releases"] == 0
                    and r["unresolved"] == 0),
        "double_grants": r["double_grants"], "lost_releases": r["lost_releases"],
        "unresolved": r["unresolved"], "server_cpu_pct": r["server_cpu_pct"],
        "server_rss_mib": r["server_rss_mib"],
        "notes": (f"Each client thinks {think:g} s on average (exponential), asks for the floor "
                  f"of its group, talks {TALK[0]:g}-{TALK[1]:g} s of 20 ms voice frames "
                  f"({len(PAYLOAD)}-byte payload) and releases; queued clients wait up to "
                  f"{QUEUE_PATIENCE:g} s. The server (own process, floor monitor on its events) "
                  "and two client worker processes share the machine. Lost releases: bursts "
                  "ended by silence or no-start, floors still held at the end, releases never "
                  "answered."),
        "machine": loadgen.machine_line(),
        "results": r,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 clients for 8 s")
    ap.add_argument("--clients", type=int, help="instead of 2,000")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--think", type=float, default=THINK_MEAN)
    ap.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = ap.parse_args()
    print(f"machine: {loadgen.machine_line()}")
    if args.clients:
        r = measure(args.clients, args.duration, think=args.think)
        res: dict[str, Any] = {"rows": [{label: r[k] for k, label in ROW_KEYS.items()}],
                               "command": " ".join([".venv/bin/python", *sys.argv]),
                               "results": r}
    else:
        res = run(args.quick)
    print(f"command: {res['command']}")
    print(loadgen.fmt_table(res["rows"]))
    extra = {k: res["results"][k] for k in ("burst_ends", "revoked", "relogins", "voice_dropped",
                                            "frames_sent", "frames_heard", "release_max_ms",
                                            "queue_wait_p50_ms", "failures", "double_examples",
                                            "server_rss_mib", "setup_s")}
    print(json.dumps(extra, default=str))
    if args.json:
        print(json.dumps(res, default=str, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
