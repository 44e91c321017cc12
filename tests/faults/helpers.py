"""Shared pieces of the fault tests: provisioning, event draining, timing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ptt.client.connection import Connection
from ptt.client.keys import add_user
from ptt.protocol import client as cl
from tests.e2e.serverproc import ServerProcess


async def provision(server: ServerProcess, groups: dict[str, list[str]],
                    roles: dict[str, str] | None = None) -> dict[str, str]:
    """Create the users (volunteers unless ``roles`` says otherwise) and groups; user -> token."""
    cred = server.credentials
    tokens: dict[str, str] = {}
    roles = roles or {}
    async with Connection(server.address, cred["user"], cred["token"]) as coord:
        for u in dict.fromkeys(u for members in groups.values() for u in members):
            tokens[u] = await add_user(coord, u, roles.get(u, "volunteer"))
        for g, members in groups.items():
            await coord.admin("group.create", {"name": g})
            await coord.admin("group.add", {"name": g, "users": members})
    return tokens


async def directory(server: ServerProcess) -> dict[str, Any]:
    """Users (name -> role) and groups (name -> member names) as the server reports them."""
    cred = server.credentials
    async with Connection(server.address, cred["user"], cred["token"]) as coord:
        users = {u["name"]: u["role"] for u in (await coord.admin("user.list", {}))["users"]}
        groups = {}
        for g in (await coord.admin("group.list", {}))["groups"]:
            shown = await coord.admin("group.show", {"name": g["name"]})
            groups[g["name"]] = sorted(mb["user"] for mb in shown["members"])
    return {"users": users, "groups": groups}


def drain(q: asyncio.Queue[cl.ClientEvent]) -> list[cl.ClientEvent]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


class Stamped:
    """Every event of a connection with the monotonic time it was seen."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.events: list[tuple[float, cl.ClientEvent]] = []
        self._q = conn.subscribe()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            ev = await self._q.get()
            self.events.append((time.monotonic(), ev))

    def first(self, kind: type, after: float = 0.0) -> float | None:
        for t, ev in self.events:
            if t >= after and isinstance(ev, kind):
                return t
        return None

    def of(self, kind: type) -> list[tuple[float, Any]]:
        return [(t, ev) for t, ev in self.events if isinstance(ev, kind)]

    def stop(self) -> None:
        self._task.cancel()
        self.conn.unsubscribe(self._q)
