"""A member forging another member's voice on a multicast LAN, run inside a network namespace.

    python -m tests.security.talker_scenarios forge_holder '{"tmp": "/tmp/x"}'   # one JSON line

Never run outside a namespace: it multicasts (``tests.net.netns.run_in_netns`` makes one).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ptt.audio.codec import OpusEncoder
from ptt.audio.samples import make_speech_wav
from ptt.audio.streams import ToneSource
from ptt.client.connection import Connection
from ptt.client.keys import VoiceKeys, add_user, rekey
from ptt.crypto.identity import identity_from_token
from ptt.media.sender import Packetizer
from ptt.net.multicast import open_sender_socket, resolve_interface
from ptt.wire.voice import decode_voice
from tests.net import scenarios
from tests.net.scenarios import (
    GROUP,
    RELAY_ONLY,
    SHORT,
    Server,
    close_all,
    connect,
    join_all,
    page,
    scenario,
    stats,
)

AHEAD = 3  # the forger's frames carry seq numbers this far ahead of the talker's


@scenario
async def forge_holder(args: dict[str, Any]) -> dict[str, Any]:
    """An encrypted multicast group: ann pages speech to bob and cat; eve, a member holding the
    group key, multicasts a 1 kHz tone sealed with it, naming ann's session and burst, with
    sequence numbers a few frames ahead of ann's (so hers would arrive first). Reports how many
    of eve's datagrams the listeners' connections handed to their players, and how well they
    heard ann."""
    tmp = Path(args["tmp"])
    wav = make_speech_wav(tmp / "speech.wav", SHORT)
    users = ["ann", "bob", "cat", "eve"]
    async with Server(tmp, process=True) as server:
        cred = server.credentials
        coordinator = identity_from_token(cred["token"], cred["user"]).public
        async with Connection(server.address, cred["user"], cred["token"], RELAY_ONLY) as boss:
            tokens = {u: await add_user(boss, u) for u in users}
            await boss.admin("group.create", {"name": GROUP, "mode": "multicast"})
            await boss.admin("group.add", {"name": GROUP, "users": users})
            epoch = await rekey(boss, GROUP)
        conns = await connect(server, tokens, users)
        keys = {u: VoiceKeys.of(c, signers={cred["user"]: coordinator})
                for u, c in conns.items()}
        ann, eve = conns["ann"], conns["eve"]
        sent: set[bytes] = set()
        delivered = dict.fromkeys(["bob", "cat"], 0)
        try:
            paths = await join_all(conns)
            for _ in range(200):  # the grants, and the talker keys they vouch for (bounded)
                if all(k.epoch(GROUP) == epoch for k in keys.values()):
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)
            state = eve.core.groups[GROUP].state
            assert state is not None and state.mcast_addr is not None
            dest = (state.mcast_addr, state.mcast_port)
            tx = open_sender_socket(resolve_interface("127.0.0.1"), 1)
            tone, codec = ToneSource(1000.0, -3.0, realtime=False), OpusEncoder()

            async def forge() -> None:
                for _ in range(500):  # until ann holds the floor (bounded: 5 s)
                    if ann.core.talk_route(GROUP) is not None:
                        break
                    await asyncio.sleep(0.01)
                route = ann.core.talk_route(GROUP)
                assert route is not None
                loop = asyncio.get_running_loop()
                began = loop.time()
                await asyncio.sleep(0.3)  # the listeners' counting hooks are in place
                pk = Packetizer(route[0], route[1], route[2], 0)
                for _ in range(int((loop.time() - began) / 0.02) + AHEAD):
                    pk.packetize(codec.encode(await tone.read()))
                sealer = keys["eve"].sealer(GROUP)
                assert sealer is not None
                for _ in range(100):
                    datagram = sealer.seal(*decode_voice(pk.packetize(
                        codec.encode(await tone.read()))))
                    sent.add(datagram)
                    tx.sendto(datagram, dest)
                    await asyncio.sleep(0.02)

            def counting(user: str, conn: Connection) -> None:
                play = conn.on_voice
                assert play is not None

                def on_voice(data: bytes) -> None:
                    if data in sent:
                        delivered[user] += 1
                    play(data)

                conn.on_voice = on_voice

            forger = asyncio.create_task(forge())
            listeners = [conns["bob"], conns["cat"]]
            paging = asyncio.create_task(page(ann, listeners, wav))
            await asyncio.sleep(0.05)  # page() made the Listeners: count what reaches them
            for u in ("bob", "cat"):
                counting(u, conns[u])
            during = await paging
            await forger
            tx.close()
            unverified = {u: getattr(keys[u], "unverified", None) for u in ("bob", "cat")}
        finally:
            await close_all(conns)
    return {"paths": paths, "epoch": epoch, "forged_sent": len(sent), "delivered": delivered,
            "during": during, "stats": stats(conns), "unverified": unverified,
            "server_log": server.process.output()[-3000:] if server.process else ""}


if __name__ == "__main__":
    scenarios.main()
