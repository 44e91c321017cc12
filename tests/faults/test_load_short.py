"""A short version of the load run (bench/bench_load.py): 200 clients, 20 groups, 8 s of churn."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_load  # noqa: E402


@pytest.mark.slow
def test_short_load_run_has_no_double_grants_no_lost_releases_and_resolves_everything() -> None:
    r = bench_load.measure(200, 8.0, think=6.0)
    print({k: r[k] for k in bench_load.ROW_KEYS})
    assert r["online"] == 200
    assert r["requests"] >= 100 and r["queued"] >= 10  # real churn, with queues
    assert r["double_grants"] == 0, r["double_examples"]
    assert r["lost_releases"] == 0, r["burst_ends"]
    assert r["unresolved"] == 0, r["failures"]
    assert r["revoked"] == 0 and r["relogins"] == 0, r["failures"]
    assert r["resolve_max_ms"] < 2000
    assert r["frames_heard"] >= 5 * r["frames_sent"]  # groups of 10: ~9 listeners per frame
    assert r["voice_dropped"] == 0
    assert r["server_cpu_pct"] > 0 and r["server_peak_rss_mib"] > 10
