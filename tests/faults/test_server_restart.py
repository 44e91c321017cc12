"""The server killed with SIGKILL and restarted on the same port and database.

What "a floor request made during the outage is answered after it" means here: the client keeps
retransmitting a request for ``RETRY_TOTAL`` (5.5 s). If the server is back within that window,
the request is answered by the restarted server with a floor decision (granted, queued or denied)
without the user asking again. If the server comes back later, the request ends with a definite
failure (not permitted) no later than the window's end; it never hangs. In both cases the client
logs in and re-joins by itself.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ptt.client.connection import Connection
from ptt.protocol import client as cl
from ptt.protocol.transactions import RETRY_TOTAL
from tests.e2e.serverproc import ServerProcess
from tests.faults.helpers import Stamped, directory, provision

GROUPS = {"volunteers": ["ann", "bob", "cat", "dan"], "medics": ["bob", "cat"],
          "drivers": ["dan"]}
ROLES = {"cat": "dispatcher", "dan": "coordinator"}


def test_sigkill_restart_keeps_the_directory_and_clients_return_within_2_s(
        server: ServerProcess) -> None:
    async def main() -> None:
        tokens = await provision(server, GROUPS, ROLES)
        before = await directory(server)
        conns = [Connection(server.address, u, tokens[u]) for u in ("ann", "bob", "cat", "dan")]
        for c in conns:
            await c.open()
        try:
            for c in conns:
                for g, members in GROUPS.items():
                    if c.user in members:
                        await c.join(g)
            watch = [Stamped(c) for c in conns]
            server.kill()
            await asyncio.sleep(1.0)
            server.start()
            t_up = time.monotonic()
            await asyncio.sleep(2.5)
            for w in watch:
                w.stop()
                back = w.first(cl.Connected, after=t_up)
                assert back is not None, f"{w.conn.user} did not log in again"
                joined = {ev.state.group for t, ev in w.of(cl.GroupJoined) if t >= t_up}
                assert joined == {g for g, ms in GROUPS.items() if w.conn.user in ms}
                last_join = max(t for t, ev in w.of(cl.GroupJoined))
                assert last_join - t_up < 2.0, f"{w.conn.user} back after {last_join - t_up:.2f} s"
                assert w.conn.connected
            # the floor works again for everybody, without any user action
            got = await conns[0].request_floor("volunteers")
            assert got.state is cl.Participation.HAS_PERMISSION
            queued = await conns[1].request_floor("volunteers")
            assert (queued.state, queued.position) == (cl.Participation.QUEUED, 1)
        finally:
            for c in conns:
                await c.close()
        after = await directory(server)
        assert after == before
        assert after["users"]["cat"] == "dispatcher" and after["groups"]["medics"] == ["bob", "cat"]

    asyncio.run(main())


async def _request_during_outage(server: ServerProcess, outage: float
                                 ) -> tuple[cl.ClientEvent, float, float, Stamped]:
    """bob asks for the floor 0.3 s into an outage of ``outage`` s; (outcome, asked, up)."""
    tokens = await provision(server, {"volunteers": ["ann", "bob"]})
    async with Connection(server.address, "bob", tokens["bob"]) as bob:
        await bob.join("volunteers")
        watch = Stamped(bob)
        server.kill()
        await asyncio.sleep(0.3)
        t_ask = time.monotonic()
        ask = asyncio.create_task(bob.request_floor("volunteers", timeout=12.0))
        await asyncio.sleep(outage - 0.3)
        server.start()
        t_up = time.monotonic()
        outcome = await ask
        deadline = time.monotonic() + 4.0
        while watch.first(cl.GroupJoined, after=t_up) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        watch.stop()
        return outcome, t_ask, t_up, watch


def test_request_during_a_short_outage_resolves_at_the_restart(server: ServerProcess) -> None:
    """What holds today: the request never hangs; it ends when the restarted server answers
    (NO_SESSION), and bob is back and can be granted at once."""
    async def main() -> None:
        outcome, t_ask, t_up, watch = await _request_during_outage(server, 1.5)
        t_done = watch.first(cl.FloorStateChanged, after=t_up)
        assert isinstance(outcome, cl.FloorStateChanged)
        assert t_done is not None and t_done - t_up < 1.0
        print(f"outcome {outcome.state.name} {t_done - t_up:.3f} s after the restart")

    asyncio.run(main())


def test_request_during_a_short_outage_is_answered_by_the_restarted_server(
        server: ServerProcess) -> None:
    async def main() -> None:
        outcome, t_ask, t_up, watch = await _request_during_outage(server, 1.5)
        assert t_up - t_ask < RETRY_TOTAL
        assert isinstance(outcome, cl.FloorStateChanged)
        assert outcome.state is cl.Participation.HAS_PERMISSION  # the floor was idle
        t_done = watch.first(cl.FloorStateChanged, after=t_up)
        assert t_done is not None and t_done - t_up < 2.0

    asyncio.run(main())


def test_request_outliving_the_retransmission_window_fails_definitely(
        server: ServerProcess) -> None:
    async def main() -> None:
        outcome, t_ask, t_up, watch = await _request_during_outage(server, 7.0)
        assert isinstance(outcome, cl.FloorStateChanged)
        assert outcome.state is cl.Participation.NO_PERMISSION
        t_done = min(t for t, ev in watch.of(cl.FloorStateChanged)
                     if ev.state is cl.Participation.NO_PERMISSION)
        assert t_done - t_ask <= RETRY_TOTAL + 0.3  # never later than the window
        assert t_done < t_up  # decided while the server was still down
        t_back = watch.first(cl.GroupJoined, after=t_up)
        assert t_back is not None and t_back - t_up < 2.5  # relogin backoff is capped at 2 s

    asyncio.run(main())


def test_a_restarted_server_calls_its_clients_back_at_once(
        tmp_path: Path) -> None:
    """Idle clients heartbeat every IDLE_HEARTBEAT_INTERVAL (55 s, ptt.protocol.keepalive):
    without the restart announcement they would not notice the restart for up to that long;
    with it they are back within a second, as when every client heartbeated once a second."""
    server = ServerProcess(tmp_path / "ptt.db")
    server.start()

    async def main() -> None:
        groups = {"volunteers": ["ann", "bob", "cat"]}
        tokens = await provision(server, groups)
        conns = [Connection(server.address, u, tokens[u]) for u in ("ann", "bob", "cat")]
        for c in conns:
            await c.open()
        try:
            for c in conns:
                await c.join("volunteers")
            await asyncio.sleep(0.5)  # the server records where its clients are (0.25 s)
            watch = [Stamped(c) for c in conns]
            server.kill()
            await asyncio.sleep(0.5)
            server.start()
            t_up = time.monotonic()
            await asyncio.sleep(1.5)
            for w in watch:
                w.stop()
                back = w.first(cl.GroupJoined, after=t_up - 1.0)
                assert back is not None, f"{w.conn.user} was not called back"
                print(f"{w.conn.user} joined again {(back - t_up) * 1000:.0f} ms after the "
                      f"restart")
                assert back - t_up < 1.0, f"{w.conn.user} back after {back - t_up:.2f} s"
                assert w.conn.connected
            got = await conns[0].request_floor("volunteers")
            assert got.state is cl.Participation.HAS_PERMISSION
        finally:
            for c in conns:
                await c.close()

    try:
        asyncio.run(main())
        assert "told 3 client(s) of the last run to log in again" in server.output()
    finally:
        server.stop()
