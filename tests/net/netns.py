"""Run a scenario inside a network namespace of its own: the only place tests send multicast.

``unshare -n`` gives the child a fresh network stack with nothing but a down loopback. The shell
brings ``lo`` up and, unless ``route=False``, routes 224.0.0.0/4 out of it, so that ptt's
loopback default (interface 127.0.0.1) passes its route check there, and nowhere else::

    result = run_in_netns("page_three", {"tmp": str(tmp_path)})   # JSON printed by the scenario

Tests call :func:`require_netns` first: it skips them, with the reason, where namespaces cannot
be made (no ``unshare``, not root and no user namespaces, a seccomp profile that forbids it).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LO_UP = "ip link set lo up"
MCAST_ROUTE = "ip route add 224.0.0.0/4 dev lo"


@functools.cache
def netns_unavailable() -> str | None:
    """None when ``unshare -n`` works here, else why not."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (util-linux, iproute2)"
    try:
        res = subprocess.run(["unshare", "-n", "sh", "-c", f"{LO_UP} && {MCAST_ROUTE}"],
                             capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare -n failed: {exc}"
    if res.returncode != 0:
        return f"cannot create a network namespace (unshare -n): {res.stderr.strip()}"
    return None


def require_netns() -> None:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"multicast tests run only inside a network namespace of their own; {reason}")


def netns_command(argv: list[str], route: bool = True) -> list[str]:
    """``argv`` wrapped to run in a new network namespace with lo up (and the multicast route)."""
    setup = f"{LO_UP} && {MCAST_ROUTE}" if route else LO_UP
    return ["unshare", "-n", "sh", "-c", f'{setup} && exec "$@"', "sh", *argv]


def run_in_netns(scenario: str, args: dict[str, Any] | None = None, *, route: bool = True,
                 timeout: float = 180.0, module: str = "tests.net.scenarios") -> Any:
    """Run ``python -m module scenario ARGS`` in a new namespace; returns the JSON it printed
    last. A failure raises AssertionError with the scenario's output."""
    argv = [sys.executable, "-m", module, scenario, json.dumps(args or {})]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PTT_CONFIG", None)
    res = subprocess.run(netns_command(argv, route), cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout, check=False)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        raise AssertionError(f"scenario {scenario} failed (exit {res.returncode}):\n"
                             f"{res.stdout[-4000:]}\n{res.stderr[-6000:]}")
    return json.loads(lines[-1])
