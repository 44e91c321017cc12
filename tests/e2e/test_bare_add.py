"""A bare ``group.add`` (membership without a key change) is refused on an encrypted group that
holds a key, naming the command that adds with the next key; elsewhere it still works."""

from __future__ import annotations

import asyncio

import pytest

from ptt.client.connection import Connection
from ptt.client.keys import VoiceKeys, add_user, change_members, rekey
from ptt.errors import RequestError
from tests.e2e.serverproc import ServerProcess


def test_a_bare_add_to_a_keyed_group_is_refused_naming_ptt_group_add(
        server: ServerProcess) -> None:
    async def main() -> None:
        cred = server.credentials
        async with Connection(server.address, cred["user"], cred["token"]) as boss:
            tokens = {u: await add_user(boss, u) for u in ("ann", "dan", "lou")}
            await boss.admin("group.create", {"name": "ops"})
            # no key yet: members may come before the first one, which covers them all
            await boss.admin("group.add", {"name": "ops", "users": ["ann"]})
            assert await rekey(boss, "ops") == 1
            with pytest.raises(RequestError) as refused:
                await boss.admin("group.add", {"name": "ops", "users": ["dan"]})
            text = str(refused.value)
            assert "encrypted" in text and "ptt group add ops USER" in text, text
            # ... and nothing changed: dan is no member, the key is the same
            shown = await boss.admin("group.show", {"name": "ops"})
            assert [mi["user"] for mi in shown["members"]] == ["ann"]
            assert shown["key_epoch"] == 1
            # the way that works: the change with the next key in one request
            changed = await change_members(boss, "ops", add=["dan"])
            assert changed["added"] == ["dan"] and changed["epoch"] == 2
            # a plain group takes a bare add
            await boss.admin("group.create", {"name": "lobby", "plain": True})
            await boss.admin("group.add", {"name": "lobby", "users": ["lou"]})
            shown = await boss.admin("group.show", {"name": "lobby"})
            assert [mi["user"] for mi in shown["members"]] == ["lou"]
        async with Connection(server.address, "dan", tokens["dan"]) as dan:
            keys = VoiceKeys.of(dan, signers={})
            await dan.join("ops")
            for _ in range(100):  # bounded: 5 s
                if keys.epoch("ops") == 2:
                    break
                await asyncio.sleep(0.05)
            assert keys.epoch("ops") == 2

    asyncio.run(main())
