"""Emergency rights per role, set on a real `ptt server` process with --emergency-roles."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptt.client.connection import Connection
from ptt.client.keys import add_user
from ptt.protocol import messages as m
from ptt.protocol.client import Participation
from tests.e2e.serverproc import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path / "ptt.db", extra_args=["--emergency-roles", "dispatcher,coordinator"])
    s.start()
    yield s
    s.stop()


def test_volunteer_emergency_refused_when_only_dispatchers_may(server: ServerProcess) -> None:
    async def main() -> None:
        cred = server.credentials
        async with Connection(server.address, cred["user"], cred["token"]) as coord:
            ann = await add_user(coord, "ann")
            dora = await add_user(coord, "dora", "dispatcher")
            await coord.admin("group.create", {"name": "ops"})
            await coord.admin("group.add", {"name": "ops", "users": ["ann", "dora"]})
        async with Connection(server.address, "ann", ann) as a, \
                Connection(server.address, "dora", dora) as d:
            await a.join("ops")
            await d.join("ops")
            refused = await a.request_floor("ops", m.Priority.EMERGENCY)
            assert refused.state is Participation.NO_PERMISSION
            assert refused.deny_cause is m.DenyCause.NOT_ALLOWED
            normal = await a.request_floor("ops")  # she can still talk
            assert normal.state is Participation.HAS_PERMISSION
            await a.release_floor("ops")
            granted = await d.request_floor("ops", m.Priority.EMERGENCY)
            assert granted.state in (Participation.HAS_PERMISSION, Participation.QUEUED)
            if granted.state is Participation.QUEUED:
                granted = await d.wait_floor("ops", timeout=3)
            assert granted.state is Participation.HAS_PERMISSION

    asyncio.run(main())
