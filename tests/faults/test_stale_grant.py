"""A grant from the queue that the grantee never heard, under control loss (deterministic).

bob is queued behind ann; bob's downlink goes dark (the proxy drops every control datagram to him);
ann releases, so the server grants bob burst X from the queue and keeps resending FloorGranted(X);
bob, hearing nothing, withdraws (ending X at the server) and asks again (the server grants burst
Y). When his downlink comes back, the answers and the stale FloorGranted(X) reach him. bob must end
up holding Y, with the server agreeing. Before the fix the client gave X back (a FloorRelease naming X) and
the server, which ignored the burst named in a release, ended Y: bob lost a floor he was granted.
"""

from __future__ import annotations

import asyncio

from ptt.client.connection import Connection
from ptt.faults.proxy import Direction, Impairment, ImpairmentProxy, ProxyConfig
from ptt.protocol import client as cl
from ptt.wire.voice import VoiceHeader, encode_voice
from tests.e2e.serverproc import ServerProcess
from tests.faults.helpers import Stamped, provision

DARK = Direction(control=Impairment(loss=1.0))


async def keep_talking(conn: Connection, group: str, seconds: float) -> None:
    """Send a voice frame every 20 ms for whatever burst ``conn`` holds (none: send nothing)."""
    loop = asyncio.get_running_loop()
    end, seq = loop.time() + seconds, 0
    while loop.time() < end:
        route = conn.core.talk_route(group)
        if route is not None:
            gid, sid, burst = route
            conn.send_voice(encode_voice(VoiceHeader(gid, sid, burst, seq, seq * 320), b"\x01" * 40))
            seq += 1
        await asyncio.sleep(0.02)


def test_stale_grant_from_the_queue_does_not_cost_the_new_grant(server: ServerProcess) -> None:
    async def main() -> None:
        tokens = await provision(server, {"volunteers": ["ann", "bob"]})
        async with ImpairmentProxy(ProxyConfig(server=server.address)) as proxy, \
                Connection(server.address, "ann", tokens["ann"]) as ann, \
                Connection(proxy.address, "bob", tokens["bob"]) as bob:
            await ann.join("volunteers")
            await bob.join("volunteers")
            assert (await ann.request_floor("volunteers")).state is cl.Participation.HAS_PERMISSION
            assert (await bob.request_floor("volunteers")).state is cl.Participation.QUEUED
            proxy.configure(down=DARK)
            await ann.release_floor("volunteers")  # the server grants X to bob: he never hears
            await asyncio.sleep(0.3)
            await bob.release_floor("volunteers")  # withdraws: ends X at the server
            await asyncio.sleep(0.3)
            asking = asyncio.create_task(bob.request_floor("volunteers"))  # granted Y, unheard
            await asyncio.sleep(0.3)
            watch = Stamped(ann)
            proxy.configure(down=Direction())
            got = await asking
            # a holder talks: without voice T1 (1.5 s) would end Y, which is the rule, not the bug
            talking = asyncio.create_task(keep_talking(bob, "volunteers", 1.2))
            await asyncio.sleep(1.2)  # the server's FloorGranted(X) was resent every 0.5 s
            await talking
            watch.stop()
            assert got.state is cl.Participation.HAS_PERMISSION
            assert bob.core.participation("volunteers") is cl.Participation.HAS_PERMISSION
            server_view = ann.core.groups["volunteers"]
            assert server_view.talker == "bob", [ev for _, ev in watch.events]
            assert server_view.talker_burst == bob.core.groups["volunteers"].my_burst

    asyncio.run(main())
