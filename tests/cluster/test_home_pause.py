"""Two failures of issue #17's list with three real ``ptt server --cluster`` nodes, the real
``ptt`` client and a 3-member etcd (short raft timers, 1 s leases), the talker on node a, the
listener on b and the group's home on c:

- the etcd member the nodes talk to (the raft leader) is SIGKILLed mid-burst: nothing visible
  changes (the burst plays to its end, heard whole; no group changes home, no node is taken
  for dead);
- then the home c is SIGSTOPped past its lease mid-burst: a survivor claims g with a higher
  fencing number, the floor is free and bob is granted; c is resumed while bob talks, and
  issues nothing any node accepts. What c sends is read off NATS, which carries a copy of every
  floor news a home sends (the peer plane's UDP carries the other)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nats as nats_py
import pytest

from ptt.cluster.engines import Nats
from ptt.wire import cluster as wc
from tests.acceptance.harness import finish, no_traceback, read_until, tone_wav, voiced_seconds
from tests.cluster.conftest import FAST_ELECTION_MS, FAST_HEARTBEAT_MS, EngineStarter
from tests.cluster.test_nodes import HOME, Cluster, _claimed_by, _start, read_log_until
from tests.cluster.test_ownership import _leader_first


class Tap:
    """Every message the nodes publish to each other over NATS, with when it came."""

    def __init__(self, url: str, prefix: str) -> None:
        self.seen: list[tuple[float, bytes]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._nc = asyncio.run_coroutine_threadsafe(self._open(url, prefix), self._loop).result(10)

    async def _open(self, url: str, prefix: str) -> nats_py.NATS:
        nc = await nats_py.connect(url, connect_timeout=5)

        async def got(msg) -> None:  # type: ignore[no-untyped-def]
            self.seen.append((time.monotonic(), msg.data))

        await nc.subscribe(f"{prefix}.node.*", cb=got)
        await nc.flush()
        return nc

    def from_home(self, home: str, since: float) -> list[wc.FloorNews | wc.Members]:
        """What ``home`` sent as the group's home (floor news, rosters) after ``since``."""
        out = []
        for t, data in list(self.seen):
            msg = wc.decode(data)
            if t > since and isinstance(msg, (wc.FloorNews, wc.Members)) and msg.home == home:
                out.append(msg)
        return out

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._nc.close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def cluster(tmp_path: Path, nats: Nats, fresh_engines: EngineStarter) -> Iterator[Cluster]:
    etcd = fresh_engines.etcd(3, heartbeat_ms=FAST_HEARTBEAT_MS, election_ms=FAST_ELECTION_MS)
    cluster = _start(tmp_path, nats, etcd, etcd_endpoints=_leader_first(etcd))
    c = next(cluster)
    c.etcd = etcd  # type: ignore[attr-defined]
    try:
        yield c
    finally:
        if c.nodes[HOME].proc.poll() is None:
            c.nodes[HOME].proc.send_signal(signal.SIGCONT)  # a stopped process ignores SIGTERM
        next(cluster, None)


def _stop(*procs) -> None:  # type: ignore[no-untyped-def]
    for p in procs:
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGINT)
            finish(p, timeout=10)


def test_an_etcd_member_lost_changes_nothing_then_a_paused_home_issues_nothing_accepted(
        cluster: Cluster, nats: Nats, tmp_path: Path) -> None:
    etcd = cluster.etcd  # type: ignore[attr-defined]
    claimed = read_log_until(cluster.nodes[HOME], "group g: claimed")
    first = int(claimed.split("fencing ")[1].rstrip(")"))
    for node in ("a", "b"):
        read_log_until(cluster.nodes[node], f"group g: learned (home c, fencing {first})")
    tap = Tap(nats.url, cluster.prefix)
    ann = dan = bob = None
    try:
        # 1. the etcd leader, the member every node talks to, SIGKILLed 0.5 s into ann's page
        dan = cluster.spawn("dan", "b", "listen", "g", "--out", str(tmp_path / "dan1.wav"))
        read_until(dan, "g", timeout=20)
        ann = cluster.spawn("ann", "a", "talk", "g", "--wav", str(tone_wav(tmp_path / "4s.wav", 4.0)))
        read_until(ann, "floor granted", timeout=20)
        read_until(dan, "ann is talking", timeout=10)
        logs = {n: len(srv.output()) for n, srv in cluster.nodes.items()}
        time.sleep(0.5)
        etcd.members[0].kill()  # _leader_first: the nodes' first endpoint is the leader
        killed = time.monotonic()
        code, out, err = finish(ann, timeout=20)
        no_traceback(err)
        assert code == 0 and "another took over" not in out + err, (out, err)
        read_until(dan, "floor idle", timeout=10)
        time.sleep(max(0.0, killed + 3.5 - time.monotonic()))  # 3 lease TTLs and an election
        _stop(dan)
        for n, srv in cluster.nodes.items():
            after = srv.output()[logs[n]:]
            assert "group g:" not in after and " died" not in after, (n, after)
        heard = voiced_seconds(tmp_path / "dan1.wav")
        assert heard >= 3.5, f"dan heard {heard:.1f} s of ann's 4 s page"
        print(f"etcd leader killed mid-burst: no home changed, no node taken for dead, "
              f"dan heard {heard:.1f} s of 4")

        # 2. the home c SIGSTOPped mid-burst, past its 1 s lease
        dan = cluster.spawn("dan", "b", "listen", "g", "--out", str(tmp_path / "dan2.wav"))
        read_until(dan, "g", timeout=20)
        ann = cluster.spawn("ann", "a", "talk", "g", "--wav", str(tone_wav(tmp_path / "8s.wav", 8.0)))
        read_until(ann, "floor granted", timeout=20)
        read_until(dan, "ann is talking", timeout=10)
        deadline = time.monotonic() + 5
        while not tap.from_home(HOME, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tap.from_home(HOME, 0), "the tap saw no floor news of the home: it sees nothing"
        cluster.nodes[HOME].proc.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        new_home, line = _claimed_by(cluster, ("a", "b"))
        second = int(line.split("fencing ")[1].rstrip(")"))
        assert second > first, line
        other = "b" if new_home == "a" else "a"
        read_log_until(cluster.nodes[other], f"group g: learned (home {new_home}, fencing {second})")
        read_until(dan, "floor idle", timeout=10)
        told = time.monotonic() - paused
        code, out, err = finish(ann, timeout=20)
        no_traceback(err)
        assert code != 0 and "another took over" in out + err, (out, err)
        bob = cluster.spawn("bob", "b", "talk", "g", "--wav",
                            str(tone_wav(tmp_path / "3s.wav", 3.0, 660.0)))
        read_until(bob, "floor granted", timeout=20)
        read_until(dan, "bob is talking", timeout=10)
        # c wakes while bob holds the floor its new home gave him
        cluster.nodes[HOME].proc.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        read_log_until(cluster.nodes[HOME], f"group g: learned (home {new_home}, fencing {second})")
        code, out, err = finish(bob, timeout=20)
        no_traceback(err)
        assert code == 0 and "another took over" not in out + err, (out, err)
        time.sleep(0.5)  # anything c sent on waking has reached the tap
        lines = read_until(dan, "floor idle", timeout=10)  # bob's burst ended by his release
        assert not [x for x in lines if "is talking" in x], lines
        stale = tap.from_home(HOME, resumed)
        # What reached NATS from c after it woke: at most the bus copies of news it decided
        # before the stop (the stop can catch them in its 10 ms gather, their UDP copies gone
        # already), all stamped with its old term, which both nodes refuse: each had the new
        # one before c woke. Nothing decided on waking: no burst ended, no grant but ann's
        # (granted before the stop), no queue, no denial.
        assert all(m.term == first for m in stale), stale
        decided = [e for m in stale if isinstance(m, wc.FloorNews) for e in m.events]
        assert all(e[0] == wc.EventKind.GRANTED and e[1] == "ann" for e in decided), decided
        for n in ("a", "b"):
            assert "bad message on the bus" not in cluster.nodes[n].output()
        print(f"home c paused: {new_home} claimed g (fencing {first} -> {second}), dan told the "
              f"floor is free after {told:.2f} s; c resumed while bob talked: sent "
              f"{len(stale)} message(s) as g's home, bob's burst untouched")
    finally:
        _stop(ann, dan, bob)
        tap.close()
