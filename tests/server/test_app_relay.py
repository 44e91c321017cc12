"""A real PttServer on 127.0.0.1 relays a talker's frames to every listener, byte for byte, through
its sendmmsg fan-out and through the sendto fallback; sealed frames pass unopened."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from ptt.client.connection import Connection
from ptt.config import ServerConfig
from ptt.crypto.voice import VoiceCipher, VoiceKey
from ptt.net import sendmmsg
from ptt.net.sendmmsg import MmsgFanOut, SendtoFanOut
from ptt.protocol.client import Participation
from ptt.server.app import PttServer
from ptt.wire.voice import VoiceHeader, encode_voice

GROUP = "ops"
LISTENERS = ("bob", "cat", "dan")


async def relay_round(tmp_path: Path, use_sendmmsg: bool) -> None:
    server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / "ptt.db",
                                    record_dir=tmp_path / "rec"),
                       iterations=1000, use_sendmmsg=use_sendmmsg)
    await server.start()
    try:
        assert server.admin is not None
        now = asyncio.get_running_loop().time()
        tokens = {u: server.admin.create_user(u, "volunteer")[1] for u in ("ann", *LISTENERS)}
        server.admin.execute("group.create", {"name": GROUP}, now)
        server.admin.execute("group.add", {"name": GROUP, "users": ["ann", *LISTENERS]}, now)
        heard: dict[str, list[bytes]] = {u: [] for u in LISTENERS}
        conns = [Connection(server.address, u, tokens[u]) for u in ("ann", *LISTENERS)]
        for c in conns:
            await c.open()
        try:
            ann, *listeners = conns
            for c in conns:
                await c.join(GROUP)
            for c in listeners:
                c.on_voice = heard[c.user].append
            assert (await ann.request_floor(GROUP)).state is Participation.HAS_PERMISSION
            gid, sid, burst = ann.core.talk_route(GROUP)  # type: ignore[misc]
            cipher = VoiceCipher(VoiceKey(gid, 1, os.urandom(32)))
            frames = [encode_voice(VoiceHeader(gid, sid, burst, k, k * 320), bytes([k]) * 80)
                      for k in range(10)]
            frames += [cipher.seal(VoiceHeader(gid, sid, burst, k, k * 320), bytes([k]) * 80)
                       for k in range(10, 20)]
            for f in frames:
                ann.send_voice(f)
                await asyncio.sleep(0.002)
            for _ in range(200):  # bounded: 2 s
                if all(len(h) == len(frames) for h in heard.values()):
                    break
                await asyncio.sleep(0.01)
            for u in LISTENERS:
                assert heard[u] == frames, u  # every frame, in order, unchanged (sealed too)
            for k, f in enumerate(heard["bob"][10:], 10):  # sealed ones still open at the end
                header, payload = cipher.open(f)
                assert (header.seq, payload) == (k, bytes([k]) * 80)
            c = server.counters
            assert c.voice_in == len(frames)
            assert c.voice_out == len(frames) * len(LISTENERS)
            assert c.voice_send_failed == 0
            assert server._fanouts is not None and len(server._fanouts) == 1
            (route,) = [r for _, r in server._fanouts._entries.values()]
            expected = MmsgFanOut if use_sendmmsg else SendtoFanOut
            assert isinstance(route.fanout, expected)
            assert route.count == len(LISTENERS) and route.extra is None
        finally:
            for c in conns:
                await c.close()
    finally:
        server.close()


@pytest.mark.skipif(not sendmmsg.available(), reason="sendmmsg is Linux-only")
def test_relay_with_sendmmsg(tmp_path: Path) -> None:
    asyncio.run(relay_round(tmp_path, True))


def test_relay_with_sendto_fallback(tmp_path: Path) -> None:
    asyncio.run(relay_round(tmp_path, False))


def test_a_membership_change_builds_a_new_fanout(tmp_path: Path) -> None:
    async def main() -> None:
        server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / "ptt.db",
                                        record_dir=tmp_path / "rec"), iterations=1000)
        await server.start()
        try:
            assert server.admin is not None
            now = asyncio.get_running_loop().time()
            tokens = {u: server.admin.create_user(u, "volunteer")[1]
                      for u in ("ann", "bob", "cat")}
            server.admin.execute("group.create", {"name": GROUP}, now)
            server.admin.execute("group.add", {"name": GROUP, "users": ["ann", "bob", "cat"]},
                                 now)
            ann, bob, cat = (Connection(server.address, u, tokens[u])
                             for u in ("ann", "bob", "cat"))
            got: dict[str, list[bytes]] = {"bob": [], "cat": []}
            for c in (ann, bob):
                await c.open()
                await c.join(GROUP)
            bob.on_voice = got["bob"].append
            cat.on_voice = got["cat"].append
            try:
                assert (await ann.request_floor(GROUP)).state is Participation.HAS_PERMISSION
                gid, sid, burst = ann.core.talk_route(GROUP)  # type: ignore[misc]

                def frame(k: int) -> bytes:
                    return encode_voice(VoiceHeader(gid, sid, burst, k, k * 320), b"\x07" * 40)

                ann.send_voice(frame(0))
                for _ in range(100):
                    if got["bob"]:
                        break
                    await asyncio.sleep(0.01)
                await cat.open()
                await cat.join(GROUP)  # the target set changes: cat hears the next frame
                ann.send_voice(frame(1))
                for _ in range(100):
                    if got["cat"] and len(got["bob"]) == 2:
                        break
                    await asyncio.sleep(0.01)
                assert got["bob"] == [frame(0), frame(1)]
                assert got["cat"] == [frame(1)]
                assert server.counters.voice_out == 3
            finally:
                for c in (ann, bob, cat):
                    await c.close()
        finally:
            server.close()

    asyncio.run(main())
