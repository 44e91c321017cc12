"""Event replay: a recorded race for the floor, replayed by simulated users, gives the same grants."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptt.audio.codec import OpusEncoder
from ptt.audio.streams import SILENCE
from ptt.client.connection import Connection
from ptt.media.sender import Packetizer
from ptt.protocol.client import Participation
from tests.e2e.serverproc import PTT
from tests.e2e.test_record_replay import RecordingServer, setup_plain_group

SILENT = OpusEncoder().encode(SILENCE)


@pytest.fixture
def rserver(tmp_path: Path) -> Iterator[RecordingServer]:
    s = RecordingServer(tmp_path / "ptt.db", extra_args=["--record", str(tmp_path / "rec")])
    s.start()
    yield s
    s.stop()


async def hold(conn: Connection, group: str, seconds: float) -> None:
    """Wait for the grant, talk (Opus silence) for ``seconds``, release."""
    assert (await conn.wait_floor(group, 5)).state is Participation.HAS_PERMISSION
    route = conn.core.talk_route(group)
    assert route is not None
    pk = Packetizer(*route)
    for i in range(int(seconds / 0.02)):
        conn.send_voice(pk.packetize(SILENT, last=i == int(seconds / 0.02) - 1))
        await asyncio.sleep(0.02)
    await conn.release_floor(group)


def grants(path: Path) -> list[str]:
    return [e["user"] for e in map(json.loads, path.read_text().splitlines())
            if e["kind"] == "floor_grant"]


def test_event_replay_reproduces_the_order_of_grants(rserver: RecordingServer,
                                                     tmp_path: Path) -> None:
    rec = tmp_path / "rec"

    async def race() -> None:
        tokens = await setup_plain_group(rserver, ["ann", "bob", "cat"])
        cred = rserver.credentials
        async with Connection(rserver.address, cred["user"], cred["token"]) as coord:
            await coord.admin("group.create", {"name": "replayed", "plain": True})
        async with Connection(rserver.address, "ann", tokens["ann"]) as ann, \
                Connection(rserver.address, "bob", tokens["bob"]) as bob, \
                Connection(rserver.address, "cat", tokens["cat"]) as cat:
            for c in (ann, bob, cat):
                await c.join("volunteers")
            # three requests 30 ms apart: ann gets it, cat queues first, bob second
            assert (await ann.request_floor("volunteers")).state is (
                Participation.HAS_PERMISSION)
            await asyncio.sleep(0.03)
            assert (await cat.request_floor("volunteers")).position == 1
            await asyncio.sleep(0.03)
            assert (await bob.request_floor("volunteers")).position == 2
            await asyncio.gather(hold(ann, "volunteers", 0.5), hold(cat, "volunteers", 0.4),
                                 hold(bob, "volunteers", 0.4))
            await asyncio.sleep(0.2)

    asyncio.run(race())
    log = rec / "volunteers" / "events.jsonl"
    assert grants(log) == ["ann", "cat", "bob"]

    result = subprocess.run(
        [PTT, "replay", "--events", str(log), "--group", "replayed"], capture_output=True,
        text=True, timeout=60, env=rserver.cli_env(tmp_path / "coordinator.toml"),
        check=False)
    assert result.returncode == 0, result.stderr
    assert "done: grants in order: ann, cat, bob" in result.stdout, result.stdout
    assert "cat: queued #1" in result.stdout and "bob: queued #2" in result.stdout
    # and the server saw the same race between the simulated users
    deadline = time.monotonic() + 3
    replayed = rec / "replayed" / "events.jsonl"
    while time.monotonic() < deadline and len(grants(replayed)) < 3:
        time.sleep(0.05)
    assert grants(replayed) == ["replay-ann", "replay-cat", "replay-bob"]
    users = subprocess.run([PTT, "user", "list"], capture_output=True, text=True, timeout=30,
                           env=rserver.cli_env(tmp_path / "coordinator.toml"), check=True)
    assert "replay-" not in users.stdout, result.stderr  # the temporary users were removed


def test_the_server_records_only_events_of_an_encrypted_group(rserver: RecordingServer,
                                                              tmp_path: Path) -> None:
    from ptt.audio.streams import SilenceSource
    from ptt.client.keys import add_user, rekey
    from ptt.client.voice import Talker

    rec = tmp_path / "rec"

    async def page() -> None:
        cred = rserver.credentials
        async with Connection(rserver.address, cred["user"], cred["token"]) as coord:
            tokens = {u: await add_user(coord, u) for u in ("ann", "bob")}
            await coord.admin("group.create", {"name": "sealed"})
            await coord.admin("group.add", {"name": "sealed", "users": ["ann", "bob"]})
            assert await rekey(coord, "sealed") == 1
        async with Connection(rserver.address, "ann", tokens["ann"]) as ann, \
                Connection(rserver.address, "bob", tokens["bob"]) as bob:
            for c in (ann, bob):
                assert (await c.join("sealed")).key_epoch == 1
            for _ in range(2):
                assert (await ann.request_floor("sealed")).state is Participation.HAS_PERMISSION
                await Talker(ann, "sealed").send(SilenceSource(), max_frames=25)
                await ann.release_floor("sealed")
                await asyncio.sleep(0.2)

    asyncio.run(page())
    rserver.stop()
    folder = rec / "sealed"
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in events]
    assert kinds.count("floor_grant") == 2  # the floor is recorded
    assert kinds.count("voice_encrypted") == 2  # once per burst
    assert not list(folder.glob("*.opus")) and not list(rec.rglob("*.opus"))  # no audio at all
    assert "end-to-end encrypted" in rserver.output()
