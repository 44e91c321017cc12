"""Floor control against a real `ptt server` process over real UDP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time

from ptt.client.connection import Connection
from ptt.client.keys import add_user
from ptt.protocol import messages as m
from ptt.protocol.client import FloorStateChanged, GroupJoined, Participation
from ptt.wire.voice import VoiceHeader, encode_voice
from tests.e2e.serverproc import ServerProcess


async def setup_group(server: ServerProcess, users: list[str], group: str = "volunteers"
                      ) -> dict[str, str]:
    cred = server.credentials
    tokens = {}
    async with Connection(server.address, cred["user"], cred["token"]) as coord:
        for u in users:
            tokens[u] = await add_user(coord, u)
        await coord.admin("group.create", {"name": group})
        await coord.admin("group.add", {"name": group, "users": users})
    return tokens


async def talk(conn: Connection, group: str, seconds: float) -> None:
    """Send dummy voice frames for the current burst (the relay does not decode audio)."""
    end = asyncio.get_running_loop().time() + seconds
    seq = 0
    while asyncio.get_running_loop().time() < end:
        route = conn.core.talk_route(group)
        if route is None:
            return
        gid, sid, burst = route
        conn.send_voice(encode_voice(VoiceHeader(gid, sid, burst, seq, seq * 320), b"\x01" * 60))
        seq += 1
        await asyncio.sleep(0.02)


def test_queue_then_emergency_preemption_over_the_wire(server: ServerProcess) -> None:
    async def main() -> None:
        tokens = await setup_group(server, ["ann", "bob", "cat"])
        async with Connection(server.address, "ann", tokens["ann"]) as ann, \
                Connection(server.address, "bob", tokens["bob"]) as bob, \
                Connection(server.address, "cat", tokens["cat"]) as cat:
            for c in (ann, bob, cat):
                await c.join("volunteers")
            got = await ann.request_floor("volunteers")
            assert got.state is Participation.HAS_PERMISSION
            talking = asyncio.create_task(talk(ann, "volunteers", 5))
            queued = await bob.request_floor("volunteers")
            assert (queued.state, queued.position) == (Participation.QUEUED, 1)
            events = ann.subscribe()
            t0 = time.monotonic()
            emergency = await cat.request_floor("volunteers", m.Priority.EMERGENCY)
            # the emergency caller is queued at the head while ann's grace runs, then granted
            assert emergency.state in (Participation.QUEUED, Participation.HAS_PERMISSION)
            granted = await cat.wait_floor("volunteers", timeout=3)
            assert granted.state is Participation.HAS_PERMISSION
            assert time.monotonic() - t0 < 1.5  # grace is 0.5 s
            revoked = [e for e in _drain(events) if isinstance(e, FloorStateChanged)
                       and e.revoke_cause is not None]
            assert revoked and revoked[0].revoke_cause is m.RevokeCause.PREEMPTED
            assert ann.core.participation("volunteers") is Participation.NO_PERMISSION
            talking.cancel()
            # bob is still queued behind, now at position 1 after the emergency holder
            assert bob.core.participation("volunteers") is Participation.QUEUED
            await cat.release_floor("volunteers")
            assert (await bob.wait_floor("volunteers", timeout=3)).state is (
                Participation.HAS_PERMISSION)

    asyncio.run(main())


def _drain(q: asyncio.Queue[object]) -> list[object]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def test_silent_holder_loses_the_floor_within_t1(server: ServerProcess) -> None:
    async def main() -> None:
        tokens = await setup_group(server, ["ann", "bob"])
        async with Connection(server.address, "ann", tokens["ann"]) as ann, \
                Connection(server.address, "bob", tokens["bob"]) as bob:
            await ann.join("volunteers")
            await bob.join("volunteers")
            assert (await ann.request_floor("volunteers")).state is Participation.HAS_PERMISSION
            assert (await bob.request_floor("volunteers")).state is Participation.QUEUED
            t0 = time.monotonic()
            got = await bob.wait_floor("volunteers", timeout=4)  # ann never sends voice
            assert got.state is Participation.HAS_PERMISSION
            assert 1.3 < time.monotonic() - t0 < 2.2  # T1 = 1.5 s

    asyncio.run(main())


def test_server_killed_and_restarted_keeps_everything_and_clients_return(
        server: ServerProcess) -> None:
    async def main() -> None:
        tokens = await setup_group(server, ["ann", "bob"])
        async with Connection(server.address, "ann", tokens["ann"]) as ann:
            await ann.join("volunteers")
            events = ann.subscribe()
            server.kill()
            await asyncio.sleep(0.5)
            server.start()
            t0 = time.monotonic()
            await ann.wait_for(events, lambda e: isinstance(e, GroupJoined), 5, "no re-join")
            back = time.monotonic() - t0
            assert ann.connected
            assert back < 2.0, f"re-registered after {back:.2f} s"
            assert (await ann.request_floor("volunteers")).state is Participation.HAS_PERMISSION
        cred = server.credentials
        async with Connection(server.address, cred["user"], cred["token"]) as coord:
            users = {u["name"] for u in (await coord.admin("user.list", {}))["users"]}
            shown = await coord.admin("group.show", {"name": "volunteers"})
        assert {"ann", "bob", "coordinator"} <= users
        assert [mb["user"] for mb in shown["members"]] == ["ann", "bob"]

    asyncio.run(main())


def test_one_to_one_call(server: ServerProcess) -> None:
    async def main() -> None:
        tokens = await setup_group(server, ["ann", "bob"])
        async with Connection(server.address, "ann", tokens["ann"]) as ann, \
                Connection(server.address, "bob", tokens["bob"]) as bob:
            heard: list[bytes] = []
            bob.on_voice = heard.append
            incoming = bob.subscribe()
            group = await ann.call("bob")
            assert group == "call:ann+bob"
            await asyncio.sleep(0.3)
            assert any(type(e).__name__ == "IncomingCall" for e in _drain(incoming))
            assert bob.core.groups[group].state is not None  # bob joined by itself
            assert (await ann.request_floor(group)).state is Participation.HAS_PERMISSION
            await talk(ann, group, 0.5)
            await asyncio.sleep(0.1)
            assert len(heard) >= 20
            await ann.leave(group)
            await bob.leave(group)
            await asyncio.sleep(0.2)
        cred = server.credentials
        async with Connection(server.address, cred["user"], cred["token"]) as coord:
            groups = [g["name"] for g in (await coord.admin("group.list", {}))["groups"]]
        assert groups == ["volunteers"]  # the private call group is gone and was never listed

    asyncio.run(main())


def test_malformed_datagrams_are_logged_dropped_and_the_server_keeps_serving(
        server: ServerProcess) -> None:
    import random
    rng = random.Random(7)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(300):
            s.sendto(rng.randbytes(rng.randint(0, 200)) if i % 3 else b"V\x01garbage",
                     server.address)

    async def main() -> None:
        tokens = await setup_group(server, ["ann"])
        async with Connection(server.address, "ann", tokens["ann"]) as ann:
            assert (await ann.join("volunteers")).group == "volunteers"

    asyncio.run(main())
    assert server.proc is not None and server.proc.poll() is None
    assert "event=dropped" in server.output()  # the event log's line for a dropped datagram
