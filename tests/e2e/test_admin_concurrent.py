"""Admin requests in flight together on one connection (``ptt user import`` sends many): each
gets its own answer, and the refusal of one is not taken as the answer to the others."""

from __future__ import annotations

import asyncio

from ptt.client.connection import Connection
from ptt.errors import RequestError
from tests.e2e.serverproc import ServerProcess


def test_a_refused_admin_request_fails_only_itself(server: ServerProcess) -> None:
    async def go() -> None:
        cred = server.credentials
        async with Connection(server.address, cred["user"], cred["token"]) as conn:
            for _ in range(5):  # a few rounds: one lucky ordering must not pass the test
                asks = [conn.admin("user.keys", {"name": "nobody"}),
                        *(conn.admin("server.info", {}) for _ in range(8)),
                        conn.admin("user.keys", {"name": cred["user"]})]
                got = await asyncio.gather(*asks, return_exceptions=True)
                assert isinstance(got[0], RequestError) and got[0].code == "not_found"
                assert "unknown user 'nobody'" in str(got[0])
                for answer in got[1:-1]:
                    assert isinstance(answer, dict) and answer["iterations"] > 0, answer
                assert got[-1] == {"name": cred["user"], "groups": []}, got[-1]

    asyncio.run(asyncio.wait_for(go(), 60))


def test_refusals_in_flight_together_each_name_their_own_request(server: ServerProcess
                                                                 ) -> None:
    async def go() -> None:
        cred = server.credentials
        async with Connection(server.address, cred["user"], cred["token"]) as conn:
            got = await asyncio.gather(*(conn.admin("user.keys", {"name": f"nobody{i}"})
                                         for i in range(6)), return_exceptions=True)
            for i, exc in enumerate(got):
                assert isinstance(exc, RequestError) and f"'nobody{i}'" in str(exc), got

    asyncio.run(asyncio.wait_for(go(), 60))
