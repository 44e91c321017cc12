"""Group ownership over a real etcd, between real node processes (tests/cluster/ownership_runner.py):
a killed home's groups are claimed by a survivor with a higher fencing number; a home paused past
its lease is replaced, and what it stamped is refused by the fencing rule while it learns it lost
its groups; losing one etcd member of three changes nothing; a home that stops cleanly frees its
groups at once; a batch of claims takes exactly the groups nobody holds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ptt.cluster.engines import Etcd
from ptt.cluster.lease import RENEWALS_PER_TTL
from ptt.cluster.ownership import (
    CLAIMS_PER_TXN,
    Change,
    Home,
    Ownership,
    OwnershipEvent,
    parse_endpoints,
)
from ptt.errors import ConfigError
from ptt.protocol.cluster_fencing import FencingView, Stamp, Verdict
from ptt.protocol.loop_silence import LIMIT_TTLS
from tests.cluster.conftest import FAST_ELECTION_MS, FAST_HEARTBEAT_MS, EngineStarter

ROOT = Path(__file__).resolve().parents[2]
# A survivor claims once the dead home's lease expired (TTL 1 s after its last renewal, at most
# 1 s before the kill), etcd's lessor noticed (it checks every 0.5 s) and the deletion reached the
# survivor's watch. Measured here: 1.15-1.6 s after SIGKILL; the margin absorbs a loaded host.
CLAIM_WITHIN = 1.0 + 2.5

Line = dict[str, Any]


@dataclass
class Node:
    """A runner process and the lines it printed so far."""

    name: str
    process: subprocess.Popen[str]
    lines: queue.Queue[Line] = field(default_factory=queue.Queue)
    seen: list[Line] = field(default_factory=list)

    def wait_for(self, event: str, within: float, **match: object) -> Line:
        """The first line (seen or coming) of this event with these fields."""
        deadline = time.monotonic() + within
        index = 0
        while True:
            while index < len(self.seen):
                line = self.seen[index]
                index += 1
                if line["event"] == event and all(line.get(k) == v for k, v in match.items()):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no {event} {match} within {within} s; "
                                     f"last lines {self.seen[-5:]}")
            try:
                self.seen.append(self.lines.get(timeout=left))
            except queue.Empty:
                continue

    def drain(self) -> None:
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return

    def since(self, t: float, event: str) -> list[Line]:
        self.drain()
        return [ln for ln in self.seen if ln["event"] == event and ln["t"] > t]


@pytest.fixture
def start_node() -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def start(name: str, endpoints: list[str], groups: list[str], ttl: int = 1) -> Node:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.cluster.ownership_runner", "--etcd", ",".join(endpoints),
             "--node", name, "--groups", ",".join(groups), "--ttl", str(ttl)],
            cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )
        node = Node(name, process)

        def pump() -> None:
            assert process.stdout is not None
            for text in process.stdout:
                node.lines.put(json.loads(text))

        threading.Thread(target=pump, daemon=True).start()
        nodes.append(node)
        node.wait_for("ready", within=20)
        return node

    yield start
    for node in nodes:
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGCONT)
            node.process.kill()
        node.process.wait()


def _groups(count: int) -> list[str]:
    """Group ids of this test alone (the session's etcd is shared)."""
    tag = uuid.uuid4().hex[:8]
    return [f"g{i}-{tag}" for i in range(count)]


def test_a_killed_home_is_claimed_by_the_survivor_with_a_higher_fencing_number(
        etcd_fast: Etcd, start_node: Callable[..., Node]) -> None:
    groups = _groups(2)
    a = start_node("a", [etcd_fast.endpoint], groups)
    first = {g: a.wait_for("claimed", 10, group=g)["fencing"] for g in groups}
    b = start_node("b", [etcd_fast.endpoint], groups)
    for g in groups:
        assert b.wait_for("learned", 10, group=g)["node"] == "a"
    assert not b.since(0, "claimed"), "b claimed a group a holds"

    killed = time.monotonic()
    a.process.kill()
    for g in groups:
        claim = b.wait_for("claimed", CLAIM_WITHIN, group=g)
        assert claim["fencing"] > first[g]
        assert claim["t"] - killed < CLAIM_WITHIN
        b.wait_for("stamp", 2, group=g, fencing=claim["fencing"])


def test_a_paused_home_is_replaced_and_what_it_stamps_is_refused(
        etcd_fast: Etcd, start_node: Callable[..., Node]) -> None:
    (group,) = _groups(1)
    access = FencingView()  # an access node, fed what it sees: stamps and claims
    a = start_node("a", [etcd_fast.endpoint], [group])
    claim_a = a.wait_for("claimed", 10, group=group)
    last_a = a.wait_for("stamp", 2, group=group)
    assert access.check(Stamp(group, last_a["fencing"])) is Verdict.ACCEPTED
    b = start_node("b", [etcd_fast.endpoint], [group])
    b.wait_for("learned", 10, group=group, node="a")

    a.process.send_signal(signal.SIGSTOP)
    paused = time.monotonic()
    claim_b = b.wait_for("claimed", CLAIM_WITHIN, group=group)
    assert claim_b["t"] - paused < CLAIM_WITHIN
    assert claim_b["fencing"] > claim_a["fencing"]
    access.learn_owner(Stamp(group, claim_b["fencing"]))
    # a grant or burst the paused home stamped (in flight, or sent on waking) is refused
    assert access.check(Stamp(group, last_a["fencing"])) is Verdict.REFUSED
    stamp_b = b.wait_for("stamp", 2, group=group)
    assert access.check(Stamp(group, stamp_b["fencing"])) is Verdict.ACCEPTED

    a.process.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    lost = a.wait_for("lost", 3, group=group)
    assert lost["t"] - resumed < 3
    assert a.wait_for("learned", 3, group=group)["node"] == "b"
    time.sleep(0.3)
    late = a.since(resumed, "stamp")
    assert all(access.check(Stamp(group, s["fencing"])) is Verdict.REFUSED for s in late)
    assert b.since(claim_b["t"], "lost") == []


def _leader_first(etcd: Etcd) -> list[str]:
    """The cluster's endpoints, the raft leader's first (the member the nodes' client uses)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    ids = []
    for endpoint in etcd.endpoints:
        request = urllib.request.Request(f"{endpoint}/v3/maintenance/status", data=b"{}")
        with opener.open(request, timeout=3) as reply:
            status = json.loads(reply.read())
        ids.append((status["header"]["member_id"], status["leader"]))
    leader = next(i for i, (member, lead) in enumerate(ids) if member == lead)
    return [etcd.endpoints[leader]] + [e for i, e in enumerate(etcd.endpoints) if i != leader]


@pytest.mark.parametrize("loss", ["killed", "paused"])
def test_losing_one_etcd_member_of_three_changes_no_home(
        loss: str, fresh_engines: EngineStarter, start_node: Callable[..., Node]) -> None:
    etcd = fresh_engines.etcd(3, heartbeat_ms=FAST_HEARTBEAT_MS, election_ms=FAST_ELECTION_MS)
    endpoints = _leader_first(etcd)
    (group,) = _groups(1)
    a = start_node("a", endpoints, [group])
    a.wait_for("claimed", 10, group=group)
    b = start_node("b", endpoints, [group])
    b.wait_for("learned", 10, group=group, node="a")

    # the worst member to lose: the raft leader, and the one both nodes' client talks to; a
    # paused one (a hung host) still holds its connections open, answering nothing
    killed = time.monotonic()
    member = etcd.members[etcd.endpoints.index(endpoints[0])]
    member.kill() if loss == "killed" else member.pause()
    time.sleep(4.0)
    changes = [ln for ln in a.since(killed, "lost") + b.since(killed, "claimed")]
    assert changes == [], [ln for ln in a.seen + b.seen if ln["event"] != "stamp"]
    stamps = a.since(killed, "stamp")
    assert stamps and stamps[-1]["t"] > killed + 3.0, "the home stopped renewing its lease"
    # and failover still works on the two members left: b's watch moved with its client
    first = a.since(0, "claimed")[0]["fencing"]
    dead = time.monotonic()
    a.process.kill()
    claim = b.wait_for("claimed", CLAIM_WITHIN, group=group)
    assert claim["fencing"] > first and claim["t"] - dead < CLAIM_WITHIN


def test_a_home_that_stops_cleanly_frees_its_groups_at_once(
        etcd_fast: Etcd, start_node: Callable[..., Node]) -> None:
    groups = _groups(2)
    a = start_node("a", [etcd_fast.endpoint], groups)
    first = {g: a.wait_for("claimed", 10, group=g)["fencing"] for g in groups}
    b = start_node("b", [etcd_fast.endpoint], groups)
    for g in groups:
        b.wait_for("learned", 10, group=g, node="a")
    stopping = time.monotonic()
    a.process.terminate()  # SIGTERM: the runner stops its Ownership, which revokes the lease
    a.wait_for("stopped", 5)
    for g in groups:
        claim = b.wait_for("claimed", 2, group=g)
        assert claim["fencing"] > first[g]
        # no lease to wait out: well under the 1 s TTL
        assert claim["t"] - stopping < 0.9


def test_etcd_endpoints_are_read_as_host_and_port() -> None:
    assert parse_endpoints(["http://127.0.0.1:2000", "etcd-b:2001"]) == [
        ("127.0.0.1", 2000), ("etcd-b", 2001)]


@pytest.mark.parametrize(("endpoints", "message"), [
    ([], "no etcd endpoint given"),
    (["https://127.0.0.1:2379"], "is not http://HOST:PORT"),
    (["http://127.0.0.1"], "is not http://HOST:PORT"),
    (["http://127.0.0.1:port"], "is not http://HOST:PORT"),
])
def test_bad_etcd_endpoints_are_one_clear_error(endpoints: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_endpoints(endpoints)


def test_a_start_or_a_claim_etcd_did_not_answer_is_made_once_etcd_answers(
        fresh_engines: EngineStarter) -> None:
    etcd = fresh_engines.etcd(heartbeat_ms=FAST_HEARTBEAT_MS, election_ms=FAST_ELECTION_MS)
    (group,) = _groups(1)
    events: list[OwnershipEvent] = []

    async def scenario() -> tuple[float, float]:
        node = Ownership([etcd.endpoint], "a", on_event=events.append)
        # a node starting while etcd answers nothing (a loaded machine) waits for it
        etcd.members[0].pause()
        starting = asyncio.create_task(node.start())
        await asyncio.sleep(0.5)
        assert not starting.done()
        etcd.members[0].resume()
        await asyncio.wait_for(starting, 5)
        try:
            etcd.members[0].pause()
            await node.want([group])  # the claim times out: nothing is claimed yet
            assert node.home(group) is None
            await asyncio.sleep(0.5)
            etcd.members[0].resume()
            resumed = time.monotonic()
            while node.holds(group) is None:
                assert time.monotonic() - resumed < 5, events
                await asyncio.sleep(0.02)
            return resumed, time.monotonic()
        finally:
            await node.stop()

    resumed, held = asyncio.run(scenario())
    claims = [e for e in events if e.change is Change.CLAIMED and e.group == group]
    # the claim etcd received while paused may be applied on waking and then lost with the
    # lease etcd expired meanwhile: what counts is that the node holds the group in the end
    assert claims and claims[-1].home is not None and claims[-1].home.node == "a"
    assert held - resumed < 3.0  # the next sweep, one TTL (1 s) apart, plus a renewal


# A login burst on a node: many tasks, each a few ms of CPU at a time between awaits, so that one
# turn of the event loop runs them all (100 x 5 ms = 0.5 s a turn) and anything else on the loop
# (a renewal's send, its answer) waits that long at each step.
BURST_TASKS = 100
BURST_SLICE = 0.005


async def _burst(duration: float) -> None:
    end = time.monotonic() + duration

    async def login() -> None:
        while time.monotonic() < end:
            busy_until = time.perf_counter() + BURST_SLICE
            while time.perf_counter() < busy_until:
                pass
            await asyncio.sleep(0)

    await asyncio.gather(*(login() for _ in range(BURST_TASKS)))


@contextlib.asynccontextmanager
async def _home_here(etcd: Etcd, groups: list[str], events: list[OwnershipEvent],
                     start_node: Callable[..., Node]) -> AsyncIterator[tuple[Ownership, Node]]:
    """Node a in this test's event loop, home of ``groups``; node b, a process, knows it."""
    node = Ownership([etcd.endpoint], "a", on_event=events.append)
    await node.start()
    try:
        await node.want(groups)
        assert all(node.holds(g) for g in groups), events
        b = await asyncio.to_thread(start_node, "b", [etcd.endpoint], groups)
        for g in groups:
            await asyncio.to_thread(b.wait_for, "learned", 10, group=g, node="a")
        yield node, b
    finally:
        await node.stop()


def test_a_busy_or_briefly_blocked_event_loop_keeps_its_groups(
        etcd_fast: Etcd, start_node: Callable[..., Node]) -> None:
    """The lease is renewed off the loop: 2.5 TTLs of a loop busy in 0.5 s turns (1 s on a
    loaded machine), then one blocking call of 1.5 TTLs (under the renewer's bound), and no
    group moves."""
    groups = _groups(2)
    events: list[OwnershipEvent] = []

    async def scenario() -> list[Line]:
        async with _home_here(etcd_fast, groups, events, start_node) as (node, b):
            busy = time.monotonic()
            await _burst(2.5 * node.ttl)
            await asyncio.sleep(0.5 * node.ttl)
            # a blocking call: the loop runs nothing meanwhile, for longer than the lease's TTL;
            # with the loop's last sign of life up to a renewal interval before, a second under
            # the renewer's bound
            assert 1.5 + 1 / RENEWALS_PER_TTL < LIMIT_TTLS - 1
            time.sleep(1.5 * node.ttl)
            # a lease that lapsed during either would be expired by now (its last renewal
            # before the block), and b's claim would follow etcd's 0.5 s expiry tick
            await asyncio.sleep(1.0 * node.ttl)
            assert all(node.holds(g) for g in groups), events
            return b.since(busy, "claimed")

    assert asyncio.run(scenario()) == []
    assert [e for e in events if e.change is not Change.CLAIMED] == []


# A loop starved of CPU: its thread niced by this much shares one CPU with a spinning process
# (~10% of that CPU for the loop), and runs one turn of STARVED_TURN_CPU s of its own CPU time:
# ~4 s of wall time without running a timer, nearly all of it runnable and not scheduled, as
# the survivors of the 100,000-client failover were at load 12 on 2 cores.
STARVED_NICE = 10
STARVED_TURN_CPU = 0.4
_SPIN = ("import os, sys, time; os.sched_setaffinity(0, {int(sys.argv[1])}); print(flush=True);"
         " end = time.monotonic() + 15\nwhile time.monotonic() < end: pass")


def test_a_starved_loop_keeps_its_groups(etcd_fast: Etcd,
                                         start_node: Callable[..., Node]) -> None:
    """A loop silent past the limit because it waited for a CPU is not charged with the wait:
    its renewer keeps renewing (``ptt.protocol.loop_silence``), no group moves. Fails with the
    wall-clock rule (the silence is checked to exceed LIMIT_TTLS)."""
    groups = _groups(2)
    events: list[OwnershipEvent] = []

    async def scenario() -> tuple[float, tuple[float, float], int, list[Line], list[Any]]:
        async with _home_here(etcd_fast, groups, events, start_node) as (node, b):
            cpu = min(os.sched_getaffinity(0))
            spinner = subprocess.Popen([sys.executable, "-c", _SPIN, str(cpu)],
                                       stdout=subprocess.PIPE, text=True)
            try:
                assert spinner.stdout is not None
                spinner.stdout.readline()  # pinned and spinning
                everywhere = os.sched_getaffinity(0)
                os.sched_setaffinity(0, {cpu})  # this thread alone: the loop's
                # niced relative to the spinner, which runs at this process's niceness (a test
                # run under `nice` would otherwise starve the loop less)
                nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + STARVED_NICE)
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
                started = time.monotonic()
                spent = time.thread_time() + STARVED_TURN_CPU
                while time.thread_time() < spent:  # one long turn of the loop
                    pass
                silent = time.monotonic() - started
                os.sched_setaffinity(0, everywhere)
            finally:
                spinner.kill()
                spinner.wait()
            # a lease withheld during the turn would be expired and claimed by now
            await asyncio.sleep(1.5 * node.ttl)
            assert all(node.holds(g) for g in groups), events
            renewer = node._renewer
            # before the stop; the session's etcd holds other tests' groups too (their nodes are
            # also "a" and "b"), which come and go meanwhile
            moved = [e for e in events if e.group in groups and e.change is not Change.CLAIMED]
            return (silent, renewer.longest_silence, renewer.withheld,
                    b.since(started, "claimed"), moved)

    # a thread of its own, ended after: its raised niceness cannot be lowered again
    with ThreadPoolExecutor(1) as pool:
        silent, (longest, charged), withheld, claims, moved = pool.submit(
            asyncio.run, scenario()).result(timeout=60)
    assert silent > LIMIT_TTLS + 0.5, "the loop was not starved: the test shows nothing"
    assert longest > LIMIT_TTLS and charged < LIMIT_TTLS, (longest, charged)
    assert (withheld, claims, moved) == (0, [], [])


def test_a_loop_blocked_past_the_bound_lets_its_groups_go(
        etcd_fast: Etcd, start_node: Callable[..., Node]) -> None:
    """A wedged loop does not hold its groups for ever: the renewer stops renewing once the
    loop has been silent for LIMIT_TTLS, etcd expires the lease and a survivor claims;
    on waking the node reports its groups lost and learns their new home."""
    groups = _groups(2)
    events: list[OwnershipEvent] = []

    async def scenario() -> tuple[float, list[Line]]:
        async with _home_here(etcd_fast, groups, events, start_node) as (node, b):
            first = {g: node.holds(g) for g in groups}
            blocked = time.monotonic()
            # wedged until the survivor claims: the loop runs nothing meanwhile
            claims = [b.wait_for("claimed", LIMIT_TTLS * node.ttl + CLAIM_WITHIN, group=g)
                      for g in groups]
            woke = time.monotonic()
            while not all(g in node.homes and node.homes[g].node == "b" for g in groups):
                assert time.monotonic() - woke < 3, events
                await asyncio.sleep(0.02)
            for g, claim in zip(groups, claims, strict=True):
                assert claim["fencing"] > first[g].fencing  # type: ignore[union-attr]
                assert node.holds(g) is None
            return blocked, claims

    blocked, claims = asyncio.run(scenario())
    for claim in claims:
        # not before the bound: the renewer kept the lease while the loop was silent less
        assert LIMIT_TTLS * 1.0 < claim["t"] - blocked
    lost = {e.group for e in events if e.change is Change.LOST}
    assert lost == set(groups)


def test_a_batch_claim_where_some_groups_are_taken_claims_exactly_the_rest(
        etcd_fast: Etcd, start_node: Callable[..., Node]) -> None:
    """One transaction claims the groups etcd has no home for and reads the holders of the
    others, whatever the claimant's view says (a survivor's lags the other survivors' claims);
    and ``want`` sends as few transactions as the batch size allows."""
    groups = _groups(CLAIMS_PER_TXN)
    taken = groups[::7] + groups[-2:]
    a = start_node("a", [etcd_fast.endpoint], taken)
    held = {g: a.wait_for("claimed", 10, group=g)["fencing"] for g in taken}
    more = _groups(2 * CLAIMS_PER_TXN + 1)
    events: list[OwnershipEvent] = []
    b = f"b-{uuid.uuid4().hex[:8]}"  # the session's etcd may hold keys of other tests' "b"

    async def scenario() -> tuple[dict[str, Home], dict[str, int], Ownership]:
        node = Ownership([etcd_fast.endpoint], b, on_event=events.append)
        await node.start()
        try:
            homes = await node.claim_batch(groups)
            sent = dict(node.claims_sent)
            await node.want(more)
            assert all(node.holds(g) for g in more)
            return homes, sent, node
        finally:
            await node.stop()

    homes, sent, node = asyncio.run(scenario())
    assert sent["txns"] == 1 and sent["claimed"] == len(groups) - len(set(taken))
    assert set(homes) == set(groups)
    for g in groups:
        if g in held:  # a's claim stands, with its fencing number, and b learned it
            assert homes[g] == Home(g, "a", held[g])
        else:
            assert homes[g].node == b and homes[g].fencing > max(held.values())
    # a batch's claims share the transaction's revision: each key's create revision
    assert len({homes[g].fencing for g in groups if g not in held}) == 1
    claimed = {e.group for e in events if e.change is Change.CLAIMED}
    assert claimed == (set(groups) - set(taken)) | set(more)
    assert not a.since(0, "lost"), "a lost a group b's batch found taken"
    assert node.claims_sent["txns"] - sent["txns"] == 3  # 201 groups in batches of 100
