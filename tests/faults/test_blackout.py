"""A client loses its network for 10 s (proxy blackout) and comes back.

Timeline: the server stops hearing the client and ends its session after 5 s (its floor and
presence go); the client stops hearing the server and starts logging in again after 5 s, retrying
until the network is back. It must then log in, re-join its groups and be able to take the floor,
with no user action.
"""

from __future__ import annotations

import asyncio
import time

from ptt.client.connection import Connection
from ptt.faults.proxy import ImpairmentProxy, ProxyConfig
from ptt.protocol import client as cl
from tests.e2e.serverproc import ServerProcess
from tests.faults.helpers import Stamped, provision

BLACKOUT = 10.0


def test_client_rejoins_by_itself_after_a_10_s_network_blackout(server: ServerProcess) -> None:
    async def main() -> None:
        tokens = await provision(server, {"volunteers": ["ann", "bob"], "medics": ["ann"]})
        async with ImpairmentProxy(ProxyConfig(server=server.address)) as proxy, \
                Connection(proxy.address, "ann", tokens["ann"]) as ann, \
                Connection(server.address, "bob", tokens["bob"]) as bob:
            await ann.join("volunteers")
            await ann.join("medics")
            await bob.join("volunteers")
            assert (await ann.request_floor("volunteers")).state is cl.Participation.HAS_PERMISSION
            mine, theirs = Stamped(ann), Stamped(bob)
            t0 = time.monotonic()
            proxy.blackout(BLACKOUT)
            await asyncio.sleep(BLACKOUT)
            t_back = time.monotonic()
            deadline = t_back + 5
            while not (ann.connected and len([1 for t, _ in mine.of(cl.GroupJoined)
                                              if t >= t_back]) >= 2):
                assert time.monotonic() < deadline, "ann did not come back"
                await asyncio.sleep(0.05)
            rejoined = time.monotonic() - t_back
            got = await ann.request_floor("volunteers")
            mine.stop()
            theirs.stop()
            # during the blackout: ann noticed the silence, lost her floor and tried to log in
            t_lost = mine.first(cl.Disconnected)
            assert t_lost is not None and 4.5 < t_lost - t0 < 6.5
            assert proxy.counters.up.control.blacked_out > 0
            # bob saw ann's floor end and ann go offline, then come back
            idle = [t for t, ev in theirs.of(cl.TalkerChanged) if ev.talker is None]
            assert idle and idle[0] - t0 < 6.5  # her session expired after 5 s
            presence = [(t, ev.online) for t, ev in theirs.of(cl.PresenceChanged)
                        if ev.user == "ann"]
            assert [online for _, online in presence] == [False, True]
            assert presence[1][0] >= t_back
            # after it: logged in and joined both groups by herself, and can talk again
            assert rejoined < 3.0, f"back {rejoined:.2f} s after the network returned"
            assert {ev.state.group for t, ev in mine.of(cl.GroupJoined) if t >= t_back} == {
                "volunteers", "medics"}
            assert got.state is cl.Participation.HAS_PERMISSION
            print(f"session lost at +{t_lost - t0:.2f} s, back {rejoined:.2f} s after the "
                  f"network returned")

    asyncio.run(main())
