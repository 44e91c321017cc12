"""Losing one NATS member of three changes nothing a user notices (issue #17).

Two real ``ptt server --cluster`` nodes on a 3-member NATS cluster, each given all three URLs;
the group's home is b. ann talks on node a and bob listens on node b (her frames cross the bus
a -> b); the NATS member a node is connected to is SIGKILLed mid-burst. The node reconnects to
another member: bob still hears nearly every frame, and floor requests from a still reach the
home and are answered."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ptt.client.connection import Connection
from ptt.cluster.engines import Nats
from ptt.protocol import auth
from ptt.protocol.client import Participation
from ptt.protocol.messages import Role
from ptt.server.store import Store
from ptt.wire.voice import VoiceHeader, encode_voice, peek_frame
from tests.cluster.fixtures import EngineStarter
from tests.e2e.serverproc import ServerProcess

GROUP = "g"
HOME = "b"
FRAMES = 100  # 2 s of 20 ms frames
KILL_AT = 30  # the member dies after this many frames


def _directory(db: Path) -> dict[str, str]:
    store = Store(db)
    tokens = {}
    for name in ("ann", "bob", "cat"):
        token = secrets.token_urlsafe(24)
        creds = auth.make_credentials(token, secrets.token_bytes(16), auth.MIN_ITERATIONS)
        store.add_user(name, Role.VOLUNTEER, creds.salt, creds.iterations, creds.verifier)
        tokens[name] = token
    store.create_group(GROUP, mode="relay", encrypted=False)
    for name in tokens:
        store.add_member(GROUP, name)
    store.close()
    return tokens


@pytest.fixture
def nodes(tmp_path: Path, fresh_engines: EngineStarter
          ) -> Iterator[tuple[Nats, dict[str, ServerProcess], dict[str, str]]]:
    nats = fresh_engines.nats(3)
    seed = tmp_path / "seed.db"
    tokens = _directory(seed)
    servers = {}
    for node in ("a", "b"):
        d = tmp_path / node
        d.mkdir()
        shutil.copy(seed, d / "ptt.db")
        (d / "cluster.toml").write_text(
            f'node = "{node}"\nnodes = ["a", "b"]\nnats = {json.dumps(nats.urls)}\n'
            f'[homes]\n{GROUP} = "{HOME}"\n')
        servers[node] = ServerProcess(d / "ptt.db",
                                      extra_args=["--cluster", str(d / "cluster.toml")])
    try:
        with ThreadPoolExecutor(2) as pool:  # the two start-ups overlap
            list(pool.map(lambda s: s.start(), servers.values()))
        yield nats, servers, tokens
    finally:
        for srv in servers.values():
            srv.stop()


def _member_of(nats: Nats, node: str) -> int:
    """Which NATS member the node's bus is connected to (its monitoring endpoint's /connz)."""
    for i, port in enumerate(nats.monitor_ports):
        try:
            connections = _json(port, "connz")["connections"]
        except OSError:
            continue  # a member that is down
        if any(c.get("name") == f"ptt-node-{node}" for c in connections):
            return i
    raise AssertionError(f"node {node} is connected to no NATS member")


def _routes_back(nats: Nats, within: float = 10.0) -> None:
    """Every member routes to the two others again (a restarted member rejoined)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if all(_json(port, "routez").get("num_routes", 0) >= 2 for port in nats.monitor_ports):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the NATS members did not route to each other within {within} s")


def _json(port: int, what: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{what}", timeout=5) as reply:
        return json.load(reply)  # type: ignore[no-any-return]


@dataclass
class Burst:
    whose: str  # the node whose NATS member was killed
    placed: dict[str, int]  # node -> the member it was connected to
    heard: list[tuple[float, int]] = field(default_factory=list)  # (arrival, seq) at bob
    killed: float = 0.0
    answered: float = 0.0  # a request from node a after the switch, to its answer

    @property
    def lost(self) -> list[int]:
        return sorted(set(range(FRAMES)) - {seq for _, seq in self.heard})

    @property
    def silence(self) -> float:
        """The longest time bob heard nothing, from the kill on."""
        after = sorted(t for t, _ in self.heard if t > self.killed)
        return max((y - x for x, y in zip([self.killed, *after], after, strict=False)),
                   default=0.0)


def test_losing_one_nats_member_of_three_mid_burst(nodes) -> None:  # type: ignore[no-untyped-def]
    """Twice: the member of the talker's node (a) dies mid-burst; then, once it is back, the
    member of the listener's node (b, the group's home)."""
    nats, servers, tokens = nodes
    bursts: list[Burst] = []

    async def burst(ann: Connection, bob: Connection, cat: Connection, whose: str) -> Burst:
        b = Burst(whose, {n: _member_of(nats, n) for n in ("a", "b")})
        granted = await ann.request_floor(GROUP)
        assert granted.state is Participation.HAS_PERMISSION
        route = ann.core.talk_route(GROUP)
        assert route is not None
        gid, sid, burst_id = route
        bob.on_voice = lambda data: b.heard.append((time.monotonic(), peek_frame(data)[3]))
        start = time.monotonic()
        for seq in range(FRAMES):
            await asyncio.sleep(max(0.0, start + seq * 0.02 - time.monotonic()))
            if seq == KILL_AT:
                nats.members[b.placed[whose]].kill()
                b.killed = time.monotonic()
            ann.send_voice(encode_voice(VoiceHeader(gid, sid, burst_id, seq, seq * 320),
                                        b"\x01" * 60))
        await asyncio.sleep(0.15)  # the last frames' way across
        assert await ann.release_floor(GROUP, timeout=5)
        # a request from node a after the switch: forwarded to the home b and answered
        asked = time.monotonic()
        got = await cat.request_floor(GROUP)
        assert got.state is Participation.HAS_PERMISSION, got
        b.answered = time.monotonic() - asked
        assert await cat.release_floor(GROUP, timeout=5)
        return b

    async def main() -> None:
        async with Connection(servers["a"].address, "ann", tokens["ann"]) as ann, \
                Connection(servers["b"].address, "bob", tokens["bob"]) as bob, \
                Connection(servers["a"].address, "cat", tokens["cat"]) as cat:
            for c in (ann, bob, cat):
                await c.join(GROUP)
            await asyncio.sleep(0.5)  # node a's Presence reaches the home
            bursts.append(await burst(ann, bob, cat, "a"))
            nats.members[bursts[0].placed["a"]].start()
            await asyncio.to_thread(_routes_back, nats)
            bursts.append(await burst(ann, bob, cat, "b"))

    asyncio.run(main())
    for b in bursts:
        print(f"NATS members {b.placed}: node {b.whose}'s killed at frame {KILL_AT}: bob heard "
              f"{FRAMES - len(b.lost)}/{FRAMES} frames (lost {b.lost}), longest silence "
              f"{b.silence * 1000:.0f} ms; a request from a answered in "
              f"{b.answered * 1000:.1f} ms")
    for b in bursts:
        assert len(b.lost) <= 0.05 * FRAMES, f"bob lost {b.lost} of {FRAMES} frames"
        assert "reconnected" in servers[b.whose].output(), servers[b.whose].output()[-2000:]
