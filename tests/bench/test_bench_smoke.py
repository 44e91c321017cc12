"""Smoke test of the network benchmarks: each runs in a tiny mode and produces sane numbers.

Real server process and real sockets on 127.0.0.1, as the benchmarks use them; a few seconds each.
The figures are not checked against the targets (CI machines are too noisy), only for sanity.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import bench_core_relay  # noqa: E402
import bench_floor_access  # noqa: E402
import bench_idle  # noqa: E402
import bench_import  # noqa: E402
import bench_node_parity  # noqa: E402
import bench_relay  # noqa: E402
import echo_floor  # noqa: E402
import loadgen  # noqa: E402


def test_core_relay_tiny() -> None:
    best, median = bench_core_relay.run(members=5, frames=50, repeats=2)
    assert 0 < best <= median < 1000  # microseconds of CPU per frame


def test_idle_heartbeat_cost_tiny() -> None:
    r = bench_idle.heartbeat_cost(beats=200, repeats=2)
    assert 0 < r["best_us"] <= r["median_us"] < 1000  # microseconds of CPU per heartbeat


@pytest.mark.timeout(60)
def test_node_parity_tiny() -> None:
    """A node with every member on it runs few calls per turn beyond a single server's
    (bench_node_parity: 9-10 more a heartbeat, 13-14 a frame, 4-5 an empty turn: a turn that
    gives the routing nothing ends at once, a frame's other nodes are worked out once, the
    routing's timer is one number)."""
    counts = asyncio.run(bench_node_parity.both(5, True))
    single, node = counts["single"], counts["node"]
    extra = {k: node[k]["calls"] - single[k]["calls"] for k in bench_node_parity.KINDS}
    assert single["heartbeat"]["calls"] > 50 and single["frame"]["calls"] > 30
    assert 0 < extra["heartbeat"] <= 13 and 0 < extra["empty"] <= 8, extra
    assert 0 < extra["frame"] <= 19, extra
    assert node["frame"]["by_func"].get("voice.py:peek_frame", 0) == single["frame"][
        "by_func"].get("voice.py:peek_frame", 0)  # the node reads no frame header again


def test_percentiles() -> None:
    p = loadgen.percentiles(range(1, 101))
    assert (p["p50"], p["p95"], p["p99"], p["max"]) == (50, 95, 99, 100)
    assert math.isnan(loadgen.percentiles([])["p50"])


@pytest.mark.timeout(60)
def test_floor_access_tiny() -> None:
    r = bench_floor_access.measure(60, 1.0, group_size=10, probe_groups=3, rate=30, settle=0.2)
    assert r["online"] == 60
    assert r["grants"] >= 5 and r["queued"] >= 1
    assert r["failed"] == 0 and r["disconnects"] == 0
    assert 0 < r["grant_p50_ms"] <= r["grant_p99_ms"] <= r["grant_max_ms"] < 1000
    assert 0 < r["queued_p50_ms"] < 1000
    assert 0 < r["server_cpu_pct"] < 200
    assert r["server_datagrams_in_per_s"] > 30  # heartbeats at least


@pytest.mark.timeout(60)
def test_echo_floor_tiny() -> None:
    r = echo_floor.measure(500, 1.0, sockets=20, probe_rate=50, settle=0.2)
    assert r["samples"] >= 20 and r["lost"] == 0
    assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"] < 1000
    assert 0 < r["kernel_p50_ms"] <= r["p50_ms"]  # the kernel saw the answer before the probe
    assert 0 < r["server_cpu_pct"] < 100


@pytest.mark.timeout(60)
def test_relay_tiny() -> None:
    res = bench_relay.run(quick=True, listeners=(3,), loaded=(2, 3), duration=0.5)
    # plain, plain loaded, then the same two with sealed frames
    assert [(r["talkers"], r["listeners"], r["sealed"]) for r in res["results"]] == [
        (1, 3, False), (2, 3, False), (1, 3, True), (2, 3, True)]
    assert [r["datagram_bytes"] for r in res["results"]] == [102, 102, 118, 118]
    for r in res["results"][:2]:  # the kernel floor ran after each plain run
        assert 0 < r["floor_us_per_packet"] < 10_000
        assert 0 < r["floor_latency_p50_ms"] < 1000 and r["floor_loss_pct"] < 5
    for r in res["results"]:
        assert r["forwarded"] >= 0.8 * r["talkers"] * r["listeners"] * 0.5 / 0.02
        assert 0 < r["cpu_us_per_packet"] < 10_000
        assert 0 < r["latency_p50_ms"] <= r["latency_p99_ms"] < 1000
        assert r["loss_pct"] < 5
    assert res["rows"] and res["command"].startswith(".venv/bin/python bench/bench_relay.py")


def test_import_tiny() -> None:
    res = bench_import.run(users=12, groups=2, timeout=120)
    assert res["new"] == 12 and res["credential_files"] == 12 and res["rekeyed_groups"] == 2
    assert res["rerun_says"].startswith("0 new users, 12 kept"), res


def test_fanout_tiny() -> None:
    import bench_fanout

    res = bench_fanout.run(members=40, readers=3, duration=1.0, ways=(True,))
    (r,) = res["results"]
    assert r["send"] == "sendmmsg" and r["sessions_online"] == 40 and r["joined"] == 40
    assert r["forwarded_per_frame"] == 39  # every member but the talker, deaf ones included
    assert 0 < r["cpu_us_per_packet"] < 10_000 and 0 < r["kernel_floor_us_per_packet"] < 10_000
    assert r["readers_loss_pct"] < 5 and 0 < r["readers_latency_p50_ms"] < 1000
    assert sorted(r["rss_mib"], key=int) == ["0", "36", "40"]
    assert res["rows"] and res["tables"][0]["rows"]
    assert res["command"].startswith(".venv/bin/python bench/bench_fanout.py")


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCH.glob("*.py")
                                          if "argparse" in p.read_text(encoding="utf-8")))
def test_every_bench_explains_its_options(script: str, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` prints the options and exits 0 (argparse formats help with %: a bare % broke it),
    and leaves the process's logging as it was: the suite's other tests share the process (a
    bench that called ``logging.disable`` before reading its options silenced them all)."""
    module = __import__(script)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--help"])
    disabled = logging.root.manager.disable
    with pytest.raises(SystemExit) as stop:
        module.main()
    assert stop.value.code == 0
    assert "usage:" in capsys.readouterr().out
    assert logging.root.manager.disable == disabled
