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


@pytest.mark.timeout(60)
def test_distinct_drop_reasons_do_not_grow_the_server(tmp_path: Path) -> None:
    """Malformed datagrams that each carry a different message type: memory must stay flat."""
    import random
    import socket
    import time

    import msgpack

    server = bench_fuzz.ServerUnderTest(tmp_path)
    server.start()
    rng = random.Random(9)
    socks: list[socket.socket] = []
    try:
        before = server.rss_kib()["rss"]
        t0 = time.monotonic()
        sent = 0
        while time.monotonic() - t0 < 6.0:  # ~23,000 datagrams: below every rate limit
            for s in socks:
                s.close()
            socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(200)]
            for k, s in enumerate(socks):
                s.bind((f"127.0.0.{2 + k % 8}", 0))
                for _ in range(6):  # within each new address's burst allowance
                    s.sendto(msgpack.packb([1, rng.randbytes(180).hex()]), server.address)
                    sent += 1
            time.sleep(0.3)
        time.sleep(1.0)
        assert server.alive()
        received = server.metrics()["ptt_datagrams_in_total"]
        assert received >= sent * 0.9
        growth_mib = (server.rss_kib()["rss"] - before) / 1024
        assert growth_mib < 4.0, f"{growth_mib:.1f} MiB for {sent} malformed datagrams"
    finally:
        for s in socks:
            s.close()
        server.stop()
