"""Voice injected through the multicast bridge, run inside a network namespace of its own.

    python -m tests.security.bridge_scenarios bridge_inject '{"tmp": "/tmp/x"}'   # one JSON line

Never run outside a namespace: it multicasts (``tests.net.netns.run_in_netns`` makes one).
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

from ptt.net.multicast import open_member_socket, open_sender_socket, resolve_interface
from ptt.wire.voice import PROBE_SEQ, VoiceFlags, VoiceHeader, add_mac, encode_voice
from tests.net import scenarios
from tests.net.scenarios import GROUP, RELAY_ONLY, Server, close_all, connect, provision, scenario

MARKS = (b"REAL", b"ANON", b"EVE!", b"JUNK")


@scenario
async def bridge_inject(args: dict[str, Any]) -> dict[str, Any]:
    """ann holds the floor; bob is served by the relay, so the server bridges to him what it
    hears on the group address. From the LAN: frames naming ann's session and burst with no
    MAC (a host that never logged in), with eve's MAC (a member), with a random one; an
    anonymous 1,392-byte probe naming bob's session. Then ann's own multicast frames."""
    tmp = Path(args["tmp"])
    users = ["ann", "bob", "eve"]
    async with Server(tmp, process=True) as server:
        tokens = await provision(server, users, "multicast")
        conns = await connect(server, tokens, users, {u: RELAY_ONLY for u in users})
        ann, bob, eve = conns["ann"], conns["bob"], conns["eve"]
        heard: dict[bytes, int] = dict.fromkeys(MARKS, 0)
        echoes: list[int] = []
        try:
            for c in conns.values():
                await c.join(GROUP)
            state = bob.core.groups[GROUP].state
            assert state is not None and state.mcast_addr is not None
            dest = (state.mcast_addr, state.mcast_port)
            iface = resolve_interface("127.0.0.1")
            tx = open_sender_socket(iface, 1)
            rx = open_member_socket(dest[0], dest[1], iface)

            def on_voice(data: bytes) -> None:
                mark = bytes(data[22:26])
                if mark in heard:
                    heard[mark] += 1

            bob.on_voice = on_voice
            granted = await ann.request_floor(GROUP)
            gid, sid, burst = ann.core.talk_route(GROUP)  # type: ignore[misc]

            def frame(seq: int, mark: bytes) -> bytes:
                return encode_voice(VoiceHeader(gid, sid, burst, seq, seq * 320), mark * 10)

            for k in range(20):
                tx.sendto(frame(k, b"ANON"), dest)
                tx.sendto(add_mac(eve.core.voice_key, frame(100 + k, b"EVE!")), dest)
                junk = bytearray(frame(200 + k, b"JUNK") + os.urandom(8))
                junk[2] |= VoiceFlags.AUTH
                tx.sendto(bytes(junk), dest)
                await asyncio.sleep(0.02)
            probe = encode_voice(VoiceHeader(gid, bob.core.session_id, 0x7777, PROBE_SEQ, 0,
                                             VoiceFlags.PROBE), bytes(1_370))
            tx.sendto(probe, dest)
            for k in range(10):  # the holder's own frames, multicast with its MAC: bridged
                tx.sendto(add_mac(ann.core.voice_key, frame(300 + k, b"REAL")), dest)
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)
            for _ in range(10_000):  # what reached the group address (bounded)
                try:
                    data = rx.recv(2048)
                except (BlockingIOError, socket.timeout):
                    break
                if data[:1] == b"V" and data[12:16] == (0x7777).to_bytes(4, "big") and \
                        data[16:18] == (1).to_bytes(2, "big"):
                    echoes.append(len(data))
            tx.close()
            rx.close()
        finally:
            await close_all(conns)
    return {"granted": granted.state.name, "heard": {k.decode(): v for k, v in heard.items()},
            "echo_sizes": echoes}


if __name__ == "__main__":
    scenarios.main()
