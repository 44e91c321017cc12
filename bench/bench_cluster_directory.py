"""The cluster's directory (ptt.cluster.directory) on a real PostgreSQL started on loopback.

A fresh PostgreSQL (``ptt.cluster.engines``) filled with USERS users, each a member of one of
GROUPS groups (written by COPY: what is measured is reading and following, not inserting), then:

- load: ``PgDirectory(dsn)`` (schema check and the whole directory into memory), and its RSS;
- lookup of one user by name: from memory (``get_user``, its name mapped already, and first
  with the PRECIS mapping of a name not seen lately, which any backend does first) and from
  PostgreSQL (the ``SELECT`` a directory without memory would make), p50/p99 of LOOKUPS names;
- follow: a writer thread adds users one at a time (``add_user``, CHANGES of them, 5 ms apart);
  a follower on an asyncio loop applies each; time from the write's call to the follower's
  ``on_change``, p50/p99, and the write alone;
- catch-up: the follower's connection is terminated while MISSED users are added; the time
  until it has them all, by the change log and by a reload of everything (in a worker thread),
  and the longest the follower's event loop went without running a 1 ms ticker meanwhile;
- ``--drivers``: psycopg 3 against asyncpg (if installed) for what the directory needs: a lookup,
  loading every user, and NOTIFY to a listener.

    .venv/bin/python bench/bench_cluster_directory.py --users 100000 --drivers
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import machine_line, percentiles  # noqa: E402

from ptt.cluster import engines  # noqa: E402
from ptt.cluster.directory import Change, PgDirectory  # noqa: E402

SALT, VERIFIER, PUBLIC = b"s" * 16, b"v" * 32, b"p" * 64


def fill(dsn: str, users: int, groups: int) -> list[str]:
    PgDirectory(dsn).close()  # the schema
    names = [f"volunteer-{i:06d}" for i in range(users)]
    now = time.time()
    with psycopg.connect(dsn, autocommit=True) as db:
        with db.cursor().copy("COPY users (name, role, salt, iterations, verifier, created, "
                              "public) FROM STDIN") as copy:
            for name in names:
                copy.write_row((name, "volunteer", SALT, 1000, VERIFIER, now, PUBLIC))
        with db.cursor().copy("COPY groups (name, max_talk, mode, record, private, created, "
                              "encrypted) FROM STDIN") as copy:
            for g in range(groups):
                copy.write_row((f"group-{g:05d}", 30.0, "auto", False, False, now, True))
        db.execute("INSERT INTO memberships (group_id, user_id, listen_only) "
                   "SELECT g.id, u.id, false FROM users u JOIN groups g "
                   "ON g.name = 'group-' || lpad(((u.id - 1) %% %s)::text, 5, '0')", (groups,))
        db.execute("ANALYZE")
    return names


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def ms(values: list[float]) -> str:
    p = percentiles([v * 1000 for v in values], (50, 99))
    return f"p50 {p['p50']:.3f} ms, p99 {p['p99']:.3f} ms"


def us(values: list[float]) -> str:
    p = percentiles([v * 1e6 for v in values], (50, 99))
    return f"p50 {p['p50']:.2f} µs, p99 {p['p99']:.2f} µs"


def bench_load(dsn: str) -> PgDirectory:
    before = rss_mb()
    cpu0, t0 = time.process_time(), time.perf_counter()
    directory = PgDirectory(dsn)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(f"load at start: {len(directory.list_users()):,} users, "
          f"{len(directory.all_memberships()):,} memberships in {wall:.2f} s wall "
          f"({cpu:.2f} s CPU of this process), RSS +{rss_mb() - before:.0f} MB")
    return directory


def bench_lookup(directory: PgDirectory, dsn: str, names: list[str], lookups: int) -> None:
    rng = random.Random(1)
    picks = [rng.choice(names) for _ in range(lookups)]
    typed, memory = [], []
    for name in picks:
        t0 = time.perf_counter()
        directory.get_user(name)  # a name not mapped lately: PRECIS mapping, then memory
        t1 = time.perf_counter()
        directory.get_user(name)  # mapped already (ptt.names keeps recent names)
        t2 = time.perf_counter()
        typed.append(t1 - t0)
        memory.append(t2 - t1)
    database = []
    with psycopg.connect(dsn, autocommit=True) as db:
        for name in picks:
            t0 = time.perf_counter()
            db.execute("SELECT name, role, salt, iterations, verifier, created, public "
                       "FROM users WHERE name = %s", (name,)).fetchone()
            database.append(time.perf_counter() - t0)
    print(f"lookup of one of {len(names):,} users, {lookups:,} times: get_user from memory "
          f"{us(memory)} ({us(typed)} with the name's PRECIS mapping); PostgreSQL "
          f"{ms(database)}")


def bench_follow(dsn: str, changes: int) -> None:
    writer = PgDirectory(dsn)
    follower = PgDirectory(dsn)
    started: dict[str, float] = {}
    applied: dict[str, float] = {}
    writes: list[float] = []

    def seen(change: Change) -> None:
        applied[change.name] = time.perf_counter()

    def write() -> None:
        for i in range(changes):
            name = f"new-{i:05d}"
            started[name] = t0 = time.perf_counter()
            writer.add_user(name, "volunteer", SALT, 1000, VERIFIER, PUBLIC)
            writes.append(time.perf_counter() - t0)
            time.sleep(0.005)

    async def main() -> None:
        task = asyncio.create_task(follower.follow(seen))
        await asyncio.wait_for(follower.listening.wait(), 10)
        thread = threading.Thread(target=write)
        thread.start()
        deadline = time.monotonic() + 60 + changes * 0.05
        while len(applied) < changes and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        thread.join()
        task.cancel()

    asyncio.run(main())
    lat = [applied[n] - started[n] for n in started if n in applied]
    print(f"follow: {len(lat)}/{changes} changes applied on the other node, from the write's "
          f"call {ms(lat)}; the write alone {ms(writes)}")
    writer.close()
    follower.close()


def bench_catch_up(dsn: str, missed: int, reload: bool) -> None:
    writer = PgDirectory(dsn)
    follower = PgDirectory(dsn)
    if reload:
        follower.catch_up_max = 0
    base = len(follower.list_users())
    gc.collect()
    gc.freeze()  # as the server does with its long-lived state (ptt.server.gcfreeze)

    async def main() -> tuple[float, float, float]:
        task = asyncio.create_task(follower.follow(check_every=0.5))
        await asyncio.wait_for(follower.listening.wait(), 10)
        stall = 0.0
        last = time.perf_counter()

        async def ticker() -> None:
            nonlocal stall, last
            while True:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                stall = max(stall, now - last)
                last = now

        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'ptt-directory-follow'")
            while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE "
                                "application_name = 'ptt-directory-follow'").fetchone() != (0,):
                time.sleep(0.01)
        for i in range(missed):
            writer.add_user(f"missed-{reload:d}-{i:05d}", "volunteer", SALT, 1000, VERIFIER)
        pauses: list[float] = []
        started = [0.0]

        def timed_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                pauses.append(time.perf_counter() - started[0])

        gc.callbacks.append(timed_gc)
        tick = asyncio.create_task(ticker())
        t0 = last = time.perf_counter()
        while follower.version < writer.version:  # (list_users would sort 100,000 names)
            await asyncio.sleep(0.001)
        took = time.perf_counter() - t0
        tick.cancel()
        task.cancel()
        gc.callbacks.remove(timed_gc)
        return took, stall, max(pauses, default=0.0)

    took, stall, gc_pause = asyncio.run(main())
    how = "a reload of everything" if reload else "the change log"
    print(f"catch-up of {missed:,} missed changes by {how} ({base + missed:,} users): "
          f"{took:.2f} s after the cut (reconnect included), longest loop stall "
          f"{stall * 1000:.0f} ms (longest garbage collection {gc_pause * 1000:.0f} ms)")
    writer.close()
    follower.close()
    gc.unfreeze()


def bench_drivers(dsn: str, names: list[str]) -> None:
    rng = random.Random(2)
    picks = [rng.choice(names) for _ in range(2000)]
    query = "SELECT * FROM users WHERE name = "
    with psycopg.connect(dsn, autocommit=True) as db:
        lat = []
        for name in picks:
            t0 = time.perf_counter()
            db.execute(query + "%s", (name,)).fetchone()
            lat.append(time.perf_counter() - t0)
        loads = []
        for _ in range(3):
            t0 = time.perf_counter()
            db.execute("SELECT * FROM users").fetchall()
            loads.append(time.perf_counter() - t0)
    print(f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}): lookup {ms(lat)}; "
          f"all users {min(loads):.2f}-{max(loads):.2f} s (3 runs)")

    async def psycopg_notify() -> list[float]:
        w = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        listener = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        await listener.execute("LISTEN bench")
        notes = listener.notifies()
        out = []
        for i in range(500):
            t0 = time.perf_counter()
            await w.execute("SELECT pg_notify('bench', %s)", (str(i),))
            await anext(notes)
            out.append(time.perf_counter() - t0)
        await w.close()
        await listener.close()
        return out

    print(f"psycopg NOTIFY -> listener: {ms(asyncio.run(psycopg_notify()))}")
    try:
        import asyncpg  # type: ignore[import-not-found]
    except ImportError:
        print("asyncpg is not installed (pip install asyncpg): no comparison")
        return

    async def with_asyncpg() -> None:
        db = await asyncpg.connect(dsn)
        lat = []
        for name in picks:
            t0 = time.perf_counter()
            await db.fetchrow(query + "$1", name)
            lat.append(time.perf_counter() - t0)
        loads = []
        for _ in range(3):
            t0 = time.perf_counter()
            await db.fetch("SELECT * FROM users")
            loads.append(time.perf_counter() - t0)
        print(f"asyncpg {asyncpg.__version__}: lookup {ms(lat)}; "
              f"all users {min(loads):.2f}-{max(loads):.2f} s (3 runs)")
        listener = await asyncpg.connect(dsn)
        queue: asyncio.Queue[float] = asyncio.Queue()
        await listener.add_listener("bench", lambda *_: queue.put_nowait(time.perf_counter()))
        notify = []
        for i in range(500):
            t0 = time.perf_counter()
            await db.execute("SELECT pg_notify('bench', $1)", str(i))
            notify.append(await queue.get() - t0)
        print(f"asyncpg NOTIFY -> listener: {ms(notify)}")
        await db.close()
        await listener.close()

    asyncio.run(with_asyncpg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--groups", type=int, default=1_000)
    ap.add_argument("--lookups", type=int, default=10_000)
    ap.add_argument("--changes", type=int, default=300)
    ap.add_argument("--missed", type=int, default=1_000)
    ap.add_argument("--drivers", action="store_true", help="psycopg against asyncpg too")
    args = ap.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        pg = engines.start_postgres(Path(tmp))
        try:
            t0 = time.perf_counter()
            names = fill(pg.dsn, args.users, args.groups)
            print(f"filled {args.users:,} users in {args.groups:,} groups in "
                  f"{time.perf_counter() - t0:.1f} s (COPY)")
            directory = bench_load(pg.dsn)
            bench_lookup(directory, pg.dsn, names, args.lookups)
            directory.close()
            bench_follow(pg.dsn, args.changes)
            bench_catch_up(pg.dsn, args.missed, reload=False)
            bench_catch_up(pg.dsn, args.missed, reload=True)
            if args.drivers:
                bench_drivers(pg.dsn, names)
        finally:
            pg.stop()
    print(f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, "
          f"pid {os.getpid()}")


if __name__ == "__main__":
    main()
