"""Bulk set-up: ``ptt user import`` of N users into a real server, then the same file again.

A real ``ptt server`` process on 127.0.0.1 (its own database, default PBKDF2 iterations) and the
real ``ptt`` console script as the coordinator. The file has ``--users`` users (names in Chinese,
with accents and plain), each in one of ``--groups`` encrypted groups, roles mixed. Reported: the first
import's wall time (tokens made and stretched on all cores, users added, one re-key per group),
users per second, the CPU seconds of the import (its key-stretching workers included) and of the
server, the load average before and after (the machine is shared: the key stretching is CPU
bound, so the wall time is about the import's CPU over the cores it gets), the re-run's wall
time (it must create nothing), and the files written. Then the machine's floor in the same
minutes (:func:`stretch_floor`: the key stretching alone, in a pool as large as the import's)
and the import's wall time as a multiple of it.

    .venv/bin/python bench/bench_import.py                     # 5,000 users in 50 groups
    .venv/bin/python bench/bench_import.py --users 1000 --groups 10

Bounded: every ``ptt`` run has a timeout (``--timeout``, default 600 s).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ptt.protocol import auth  # noqa: E402
from tests.e2e.serverproc import PTT, ServerProcess  # noqa: E402

TARGET_5000_S = 90.0
SCRIPTS = ("张{}", "zoë{}", "vol{}")


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    """CPU seconds of the finished children (the import and its key-stretching workers)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _stretch(n: int) -> int:
    for i in range(n):
        auth.derive_verifier(f"token-{i}", bytes(16), auth.DEFAULT_ITERATIONS)
    return n


def stretch_floor(users: int, workers: int | None = None) -> float:
    """The machine's floor for the import in the same minute: the wall time of what no import
    can skip, one PBKDF2 at the default iteration count per user, in a pool of as many worker
    processes as the import uses, in jobs of 64 users (the pool's start included)."""
    n = workers or os.cpu_count() or 1
    jobs = [min(64, users - i) for i in range(0, users, 64)]
    t0 = time.monotonic()
    with ProcessPoolExecutor(max_workers=n, mp_context=get_context("spawn")) as pool:
        done = sum(pool.map(_stretch, jobs))
    assert done == users
    return time.monotonic() - t0


def roster(users: int, groups: int) -> str:
    lines = ["name,role,groups"]
    for i in range(users):
        name = SCRIPTS[i % len(SCRIPTS)].format(i)
        role = "dispatcher" if i % 50 == 0 else ""
        lines.append(f"{name},{role},team {i % groups}")
    return "\n".join(lines) + "\n"


def run(users: int = 5_000, groups: int = 50, timeout: float = 600.0,
        workers: int | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ptt-bench-import-") as tmp:
        root = Path(tmp)
        (root / "db").mkdir()
        server = ServerProcess(root / "db" / "ptt.db")
        server.start()
        try:
            env = {**os.environ, "PTT_CONFIG": str(root / "db" / "coordinator.toml"),
                   "HOME": str(root / "home")}
            src = root / "event.csv"
            src.write_text(roster(users, groups), encoding="utf-8")
            out = root / "creds"
            cmd = [PTT, "user", "import", str(src), "--out", str(out), "--json",
                   *(["--workers", str(workers)] if workers else [])]
            assert server.proc is not None
            load0 = os.getloadavg()[0]
            cpu0, server0 = _children_cpu(), _cpu(server.proc.pid)
            t0 = time.monotonic()
            first = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                   timeout=timeout)
            t_first = time.monotonic() - t0
            cpu_first, server_first = _children_cpu() - cpu0, _cpu(server.proc.pid) - server0
            load1 = os.getloadavg()[0]
            if first.returncode != 0:
                raise RuntimeError(f"import exited {first.returncode}: {first.stderr[-2000:]}")
            made = json.loads(first.stdout)
            t0 = time.monotonic()
            again = subprocess.run([c for c in cmd if c != "--json"], capture_output=True,
                                   text=True, env=env, timeout=timeout)
            t_again = time.monotonic() - t0
            rerun = (again.stdout.strip().splitlines() or [""])[0] if again.returncode == 0 \
                else f"exited {again.returncode}: {again.stderr.strip()[-300:]}"
            files = len(list(out.glob("*.toml")))
        finally:
            server.stop()
    load2 = os.getloadavg()[0]
    floor = stretch_floor(users, workers)
    return {
        "users": users, "groups": groups, "cores": os.cpu_count(),
        "first_s": round(t_first, 1), "users_per_s": round(users / t_first, 1),
        "import_cpu_s": round(cpu_first, 1), "server_cpu_s": round(server_first, 1),
        "load_avg_before_after": [round(load0, 2), round(load1, 2)],
        "new": len(made["new"]), "rekeyed_groups": len(made["epochs"]),
        "rerun_s": round(t_again, 1), "rerun_says": rerun,
        "credential_files": files,
        "stretch_floor_s": round(floor, 1), "ratio_to_floor": round(t_first / floor, 2),
        "load_avg_floor": round(load2, 2),
        "target_s": TARGET_5000_S if users == 5_000 else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=5_000)
    ap.add_argument("--groups", type=int, default=50)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=600.0)
    ns = ap.parse_args()
    res = run(ns.users, ns.groups, ns.timeout, ns.workers)
    print(json.dumps(res, ensure_ascii=False, indent=2))
    if res["target_s"] is not None and res["first_s"] > res["target_s"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
