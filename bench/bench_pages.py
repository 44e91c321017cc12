"""Text pages to a large group: how long until every online member has a page, at what cost.

A real :class:`ptt.server.app.PttServer` in its own process (its SQLite store on a temporary
disk file: each page is committed before it is acknowledged) and MEMBERS simulated members
(``bench/loadgen.py``'s ClientPool: sans-I/O ``ClientCore``s with a UDP socket each, in worker
processes), all in one plain group, all online and showing pages (``PageSubscribe``). One member
sends PAGES pages, PAUSE seconds apart. For each page: from the send (the sender's monotonic
clock, shared by every process of the machine) to each member's receipt of the PagePush (the
member's clock when its core handed the page over); the sender's PageAccepted (stored) and
PageReport (every member confirmed) times; the server's CPU time from the send until the report;
the bytes of the pushes (one sealed datagram per member; the acks come back as small datagrams).

    .venv/bin/python bench/bench_pages.py            # 2,000 members, 5 pages
    .venv/bin/python bench/bench_pages.py --quick    # 200 members, 3 pages

Everything talks to 127.0.0.1 and every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402

from ptt.protocol import client as cl  # noqa: E402

GROUP = "venue"
TEXT = "Gate 3 closed, send arrivals to Gate 5. 三号门关闭，请去五号门。"
PAUSE = 3.0  # s between pages: each is measured alone
# logins (each a join announced to every member already in) in flight per worker: few, so the
# server answers heartbeats between the joins and no session expires while the group fills
LOGIN_INFLIGHT = 8
TARGET_P99_MS = 200.0


def _server_main(conn: Any, workdir: str) -> None:
    """A ``ptt server`` (PttServer as the command runs it) in this process, answering the
    parent's commands; it times each page from the datagram that asked for it (the adapter
    storing it, the core answering and pushing) to the moment its last push was handed to the
    socket: ``fanout`` (seconds)."""
    import asyncio

    from ptt.config import ServerConfig
    from ptt.protocol.server import PageSubmitted
    from ptt.server.app import PttServer, gc_freeze_wanted

    logging.basicConfig(level=logging.WARNING)
    fanout: list[float] = []

    async def main() -> None:
        wd = Path(workdir)
        server = PttServer(ServerConfig(host=loadgen.LOCALHOST, port=0, db=wd / "db.sqlite",
                                        record_dir=wd / "rec"), iterations=1000,
                           gc_freeze=gc_freeze_wanted())
        await server.start()
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        started: list[float] = []
        on_event, send_out = server._on_event, server._send_out

        def timed_event(ev: Any, now: float) -> None:
            if isinstance(ev, PageSubmitted):
                started.append(time.perf_counter())
            on_event(ev, now)

        def timed_send_out() -> None:
            send_out()
            if started:
                fanout.append(time.perf_counter() - started.pop())

        server._on_event = timed_event  # type: ignore[method-assign]
        server._send_out = timed_send_out  # type: ignore[method-assign]

        def on_command() -> None:
            try:
                cmd, arg = conn.recv()
            except (EOFError, OSError):
                if not done.done():
                    done.set_result(None)
                return
            if cmd == "provision":
                conn.send(("ok", loadgen._provision(server, arg, loop.time())))
            elif cmd == "stats":
                conn.send(("ok", {"cpu": time.process_time(), "wall": time.monotonic(),
                                  "user": 0.0, "sys": 0.0, "counters": {},
                                  "fanout": list(fanout)}))
            elif cmd == "stop":
                conn.send(("ok", None))
                if not done.done():
                    done.set_result(None)

        loop.add_reader(conn.fileno(), on_command)
        conn.send(("ready", {"address": server.address, "pid": os.getpid()}))
        try:
            await asyncio.wait_for(done, timeout=3600)  # bounded even if the parent vanishes
        except TimeoutError:
            pass
        loop.remove_reader(conn.fileno())
        server.close()

    asyncio.run(main())


class _Server(loadgen._Proc):
    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="ptt-bench-pages-")
        super().__init__(_server_main, self._tmp.name)
        ready = self.recv(30)
        self.address: tuple[str, int] = tuple(ready["address"])  # type: ignore[assignment]

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self._tmp.cleanup()


def _worker_main(conn: Any, server: tuple[str, int], clients: list[tuple[str, str, list[str]]],
                 login_timeout: float) -> None:
    """A pool of members that show pages; client 0 of worker 0 is the sender when told."""
    logging.basicConfig(level=logging.WARNING)
    loadgen._raise_fd_limit(len(clients))
    pool = loadgen.ClientPool(server, kernel_ts=True)
    for user, token, groups in clients:
        pool.add(user, token, groups)
    quiet = _quiet_while_joining(pool)
    try:
        pool.login_all(login_timeout, inflight=LOGIN_INFLIGHT)
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    quiet.clear()  # every member is in: from here each datagram is opened and handled
    # (page id, monotonic when handled, wall clock when it reached the socket, datagram bytes)
    got: list[tuple[int, float, float, int]] = []
    sent: dict[int, tuple[float, float]] = {}  # txn -> send time (monotonic, wall clock)
    acks: list[tuple[int, int, float]] = []  # (txn, page id, when stored)
    reports: list[tuple[int, float, int, int]] = []  # (page, when, delivered, pending)
    size = [0]
    state: dict[str, Any] = {"stop": False}

    read = pool._read

    def sized_read(i: int) -> None:  # the size of the datagram a page comes in
        sock = pool.socks[i]
        recvmsg = sock.recvmsg

        def measured(*args: Any) -> Any:
            got = recvmsg(*args)
            size[0] = len(got[0])
            return got

        pool.socks[i] = _Sized(sock, measured)
        try:
            read(i)
        finally:
            pool.socks[i] = sock

    pool._read = sized_read  # type: ignore[method-assign]

    def on_events(i: int, evs: list[Any], t_recv: float, t_kernel: float) -> None:
        for ev in evs:
            if isinstance(ev, cl.PageReceived):
                got.append((ev.page.page_id, t_recv or time.monotonic(), t_kernel, size[0]))
            elif isinstance(ev, cl.PageAccepted):
                acks.append((ev.txn, ev.page_id, time.monotonic()))
            elif isinstance(ev, cl.PageReported):
                reports.append((ev.page_id, time.monotonic(), len(ev.delivered),
                                len(ev.pending)))

    pool.on_events = on_events
    now = time.monotonic()
    for i, core in enumerate(pool.cores):
        core.subscribe_pages(f"bench-{core.user}", now)
        pool.flush(i)
    conn.send(("ready", {"clients": len(clients)}))

    def on_command() -> None:
        try:
            cmd, arg = conn.recv()
        except (EOFError, OSError):
            state["stop"] = True
            return
        if cmd == "stop":
            state["stop"] = True
        elif cmd == "page":  # arg unused: the page is always TEXT from client 0
            core = pool.cores[0]
            t, wall = time.monotonic(), time.time()
            txn = core.send_page(GROUP, "", TEXT.encode(), 0, False, t)
            sent[txn] = (t, wall)
            pool.flush(0)
            conn.send(("ok", txn))
        elif cmd == "results":
            conn.send(("ok", {"got": got, "sent": sent, "acks": acks, "reports": reports,
                              "connected": len(pool.online), "disconnects": pool.disconnects,
                              "lost_why": pool.lost_why, "failures": pool.failures[-5:]}))
        else:
            conn.send(("error", f"unknown command {cmd!r}"))

    pool.extra_fds[conn.fileno()] = on_command
    pool.ep.register(conn.fileno(), 1)  # EPOLLIN
    pool.run(time.monotonic() + 3600, lambda: state["stop"])
    pool.close_all()
    conn.send(("ok", None))


def _quiet_while_joining(pool: loadgen.ClientPool) -> set[int]:
    """While the members join, one after another, each join is announced to every member
    already in (a Presence per member: two million datagrams for 2,000 members). A member that
    has joined takes what comes after unopened until all have joined (the returned set; clear
    it then), noting only that the server is alive, as its heartbeat answers would: the load
    generator then keeps up on a 2-core machine. The server does all its work as usual."""
    quiet: set[int] = set()
    read, on_events = pool._read, pool.on_events

    def events(i: int, evs: list[Any], t_recv: float, t_kernel: float) -> None:
        if any(isinstance(ev, cl.GroupJoined) for ev in evs):
            quiet.add(i)
        if on_events is not None:
            on_events(i, evs, t_recv, t_kernel)

    def quiet_read(i: int) -> None:
        if i not in quiet:
            read(i)
            return
        sock, core = pool.socks[i], pool.cores[i]
        for _ in range(64):
            try:
                sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            core._last_heard = time.monotonic()  # a load generator's shortcut: as if answered
            core._unanswered = None

    pool.on_events = events
    pool._read = quiet_read  # type: ignore[method-assign]
    return quiet


class _Sized:
    """A socket whose ``recvmsg`` is measured (the rest is the socket's)."""

    def __init__(self, sock: Any, recvmsg: Any) -> None:
        self._sock, self.recvmsg = sock, recvmsg

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def run(quick: bool = False) -> dict[str, Any]:
    members = 200 if quick else 2000
    pages = 3 if quick else 5
    load_before = loadgen.load_average()
    server = _Server()
    workers: list[loadgen._Proc] = []
    try:
        users = [f"m{i:05d}" for i in range(members)]
        tokens = server.call("provision", {"users": users, "groups": {GROUP: users}},
                             timeout=600)
        clients = [(u, tokens[u], [GROUP]) for u in users]
        n_workers = 1 if quick else 2
        timeout = 60 + members / 10
        workers = [loadgen._Proc(_worker_main, server.address, clients[k::n_workers], timeout)
                   for k in range(n_workers)]
        for w in workers:
            w.recv(timeout + 10)
        time.sleep(1.0)  # the subscriptions answered, heartbeats in their rhythm
        sender = workers[0]
        cpu = []
        idle = server.call("stats", timeout=120)
        time.sleep(PAUSE)  # the same window without a page: heartbeats only
        base = server.call("stats", timeout=120)
        for _ in range(pages):
            before = server.call("stats", timeout=120)
            sender.call("page", timeout=120)
            time.sleep(PAUSE)
            cpu.append(loadgen.cpu_between(before, server.call("stats", timeout=120)))
        results = [w.call("results", timeout=120) for w in workers]
        fanout = server.call("stats", timeout=120)["fanout"]
        baseline = loadgen.cpu_between(idle, base)["cpu"]
    finally:
        for w in workers:
            w.stop(10)
        server.stop()
    sends = results[0]["sent"]
    acks = {txn: (pid, t) for txn, pid, t in results[0]["acks"]}
    reports = {pid: (t, d, p) for pid, t, d, p in results[0]["reports"]}
    got: dict[int, list[tuple[float, float, int]]] = {}
    for r in results:
        for pid, t, t_kernel, size in r["got"]:
            got.setdefault(pid, []).append((t, t_kernel, size))
    rows = []
    all_ms: list[float] = []
    all_arrived: list[float] = []
    for k, (txn, (t_send, wall_send)) in enumerate(sorted(sends.items(), key=lambda x: x[1])):
        pid, t_ack = acks.get(txn, (0, float("nan")))
        recv = got.get(pid, [])
        ms = [(t - t_send) * 1000 for t, _, _ in recv]
        arrived = [(tk - wall_send) * 1000 for _, tk, _ in recv if tk]
        all_ms += ms
        all_arrived += arrived
        pc = loadgen.percentiles(ms) if ms else {"p50": float("nan"), "p95": float("nan"),
                                                "p99": float("nan")}
        rep = reports.get(pid)
        rows.append({
            "page": k + 1, "members online": members - 1, "received": len(recv),
            "stored (ack) ms": round((t_ack - t_send) * 1000, 1),
            "arrived p99 ms": round(loadgen.percentiles(arrived)["p99"], 1),
            "all arrived ms": round(max(arrived), 1) if arrived else float("nan"),
            "handled p50 ms": round(pc["p50"], 1), "handled p99 ms": round(pc["p99"], 1),
            "all handled ms": round(max(ms), 1) if ms else float("nan"),
            "report ms": round((rep[0] - t_send) * 1000, 1) if rep else float("nan"),
            "server fan-out ms": round(fanout[k] * 1000, 1) if k < len(fanout) else float("nan"),
            "server CPU ms": round(cpu[k]["cpu"] * 1000, 1),
            "of it for the page ms": round((cpu[k]["cpu"] - baseline) * 1000, 1),
            "push bytes": sum(s for _, _, s in recv),
        })
    overall = loadgen.percentiles(all_ms) if all_ms else {"p99": float("nan")}
    sizes = [s for r in got.values() for _, _, s in r]
    arrived_all = loadgen.percentiles(all_arrived) if all_arrived else {"p99": float("nan")}
    return {
        "title": "Text pages to a large group (bench_pages)",
        "command": ".venv/bin/python bench/bench_pages.py" + (" --quick" if quick else ""),
        "target": f"a page reaches every online member within {TARGET_P99_MS:g} ms (p99)",
        "rows": rows,
        "arrived p99 over all pages ms": round(arrived_all["p99"], 1),
        "arrived p99 within target": arrived_all["p99"] <= TARGET_P99_MS,
        "handled p99 over all pages ms": round(overall["p99"], 1),
        "handled p99 within target": overall["p99"] <= TARGET_P99_MS,
        "bytes per push datagram": round(sum(sizes) / len(sizes), 1) if sizes else 0,
        "sessions lost": sum(r["disconnects"] for r in results),
        "load average (before, after)": f"{load_before}, {loadgen.load_average()}",
        "server CPU without a page ms": round(baseline * 1000, 1),
        "client failures": "; ".join(f for r in results for f in r["failures"])[:300],
        "notes": (f"{members} members of one plain group, all online in {len(results)} "
                  f"client worker process(es) on the same 2-core machine as the server; the "
                  f"page text is {len(TEXT)} characters ({len(TEXT.encode())} bytes UTF-8). "
                  "Latency: from the sender's send to the page *arriving* at each member's "
                  "socket (the kernel's receive timestamp, SO_TIMESTAMPNS, against the "
                  "sender's wall clock: one machine, one clock), and to the member's client "
                  "having *handled* it (opened, shown, acknowledged). Server CPU: its process time over the "
                  f"{PAUSE:g} s after each send (pushes, acks, the report, heartbeats of all "
                  "members). Push bytes: the sealed datagrams that carried the page to the "
                  "members (an encrypted group adds the member's key grant, about 250 bytes, "
                  "and the 28 bytes of the page's own seal). The receipt times include the "
                  "simulated members' own work: two Python processes open, handle and "
                  "acknowledge a push for 1,000 members each, one after another, on the same "
                  "two cores as the server (the sender's own PageAccepted waits behind its "
                  "worker's 1,000 pushes too); 'server fan-out' is the server alone, from the "
                  "datagram asking for the page to its last push handed to the socket, the "
                  "store's commit included."),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": loadgen.machine_line(),
        "quick": quick,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = run(args.quick)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(loadgen.fmt_table(res["rows"]))
    for k, v in res.items():
        if k not in ("rows", "notes") and not isinstance(v, (list, dict)):
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
