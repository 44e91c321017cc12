"""The idle keepalive cadence with a real `ptt server` process: an idle client heartbeats rarely
and stays connected past the busy session timeout. (That an idle client still learns of a
restart within a second: tests/faults/test_server_restart.py.)"""

from __future__ import annotations

import asyncio
import time

from ptt.client.connection import Connection
from ptt.crypto.channel import KEEPALIVE_MAGIC
from ptt.protocol import client as cl
from ptt.protocol.keepalive import IDLE_HEARTBEAT_INTERVAL, SESSION_TIMEOUT
from tests.e2e.serverproc import ServerProcess
from tests.faults.helpers import Stamped, provision


def test_an_idle_client_stays_connected_past_the_busy_timeout(server: ServerProcess) -> None:
    async def main() -> None:
        tokens = await provision(server, {"volunteers": ["ann", "bob"]})
        async with Connection(server.address, "bob", tokens["bob"]) as bob:
            await bob.join("volunteers")
            beats: list[float] = []
            take = bob.core.datagrams_to_send

            def counting() -> list[bytes]:
                out = take()
                beats.extend(time.monotonic() for d in out if d[:1] == bytes([KEEPALIVE_MAGIC]))
                return out

            bob.core.datagrams_to_send = counting  # type: ignore[method-assign]
            watch = Stamped(bob)
            sid = bob.core.session_id
            await asyncio.sleep(1.5)  # the first heartbeat after the Welcome, then idle
            assert bob.core.heartbeat_interval() == IDLE_HEARTBEAT_INTERVAL
            t0 = time.monotonic()
            await asyncio.sleep(SESSION_TIMEOUT + 2.0)
            watch.stop()
            assert [t for t in beats if t >= t0] == []  # not one heartbeat in 7 s
            assert bob.connected and bob.core.session_id == sid
            assert not watch.of(cl.Disconnected) and not watch.of(cl.Connected)
            # the server still holds the session: the floor is granted without a new login
            got = await bob.request_floor("volunteers")
            assert got.state is cl.Participation.HAS_PERMISSION
            assert bob.core.session_id == sid

    asyncio.run(main())
