"""Issue 8's fuzz must-show, small: 20,000 hostile datagrams against a real `ptt server` process.

The harness is bench/bench_fuzz.py's (the full run sends 1,000,000): a corpus recorded from a real
session through a forwarder, mutated by ptt.faults.fuzz, sent from 256 sockets on 8 loopback
addresses while three legitimate sessions stay logged in. Asserted: the server lives and logs no
traceback, the directory (admin API), the database rows and the sessions are unchanged, the
resident set does not grow, the log stays bounded, and the members still get the floor and
relayed voice afterwards.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import bench_fuzz  # noqa: E402

COUNT = 20_000
MAX_GROWTH_MIB = 4.0


@pytest.mark.timeout(90)
def test_twenty_thousand_hostile_datagrams_change_nothing(tmp_path: Path) -> None:
    r = asyncio.run(bench_fuzz.fuzz_live(COUNT, 30.0, seed=8, root=tmp_path))

    assert r["server_alive"], "the server process died under fuzzing"
    assert r["tracebacks"] == []
    assert r["datagrams_sent"] == COUNT, f"only {r['datagrams_sent']} sent within the time cap"
    # paced by the server's own counter: it read (nearly) every datagram, the kernel dropped few
    assert r["datagrams_received_by_server"] >= COUNT * 0.95, r["datagrams_received_by_server"]
    assert r["send_errors"] == 0
    # every kind of mutation went out, built from a corpus with control and voice in it
    assert all(n > 0 for n in r["mutations"].values()), r["mutations"]
    assert r["corpus_kinds"]["voice"] > 0
    assert r["corpus_kinds"]["control"] + r["corpus_kinds"]["sealed"] > 10

    assert r["directory_unchanged"], "users, groups, members or floor state changed"
    assert r["db_unchanged"], "the database's rows changed"
    assert r["db_rows"] > 0
    assert r["sessions_kept"], r["session_events"]
    assert r["clients_online_before"] == r["clients_online_after"] == 3

    assert r["rss_growth_after_warmup_mib"] < MAX_GROWTH_MIB, r["rss_samples_mib"]
    assert r["log_lines_during_run"] <= r["log_lines_allowed"]
    # no amplification worth the name: the answers are small and far fewer bytes than sent
    assert r["max_answer_bytes"] <= 512
    assert r["answer_bytes"] < r["bytes_sent"] / 10

    assert r["legit_served"], f"floor or relay failed after the run (heard {r['voice_heard']})"
    assert bench_fuzz.verdict(r) == []
