"""A coordinator manages users and groups with the CLI against a real server process."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ptt.client.connection import Connection
from ptt.protocol import client as cl
from tests.cli.conftest import ServerProcess, run

T = TypeVar("T")


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result.stdout


def ok_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json"))


def test_users_and_groups_from_creation_to_deletion(coordinator: Path, uniq: str) -> None:
    ann, bob, vol = f"{uniq}-ann", f"{uniq}-bob", f"{uniq}-vol"

    out = ok("user", "add", ann.upper())  # names fold to lower case
    token_line = next(line for line in out.splitlines() if line.startswith("Token"))
    token = token_line.split()[-1]
    assert f"Created volunteer '{ann}'" in out
    assert "ptt login --server 127.0.0.1:" in out and f"--user {ann} --token-stdin" in out
    assert out.count(token) == 1  # on the Token line only: never in a command to copy

    added = ok_json("user", "add", bob, "--role", "Dispatcher")
    assert added["name"] == bob and added["role"] == "dispatcher" and len(added["token"]) >= 16

    users = {u["name"]: u for u in ok_json("user", "list")["users"]}
    assert users[ann] == {"name": ann, "role": "volunteer", "online": False, "groups": 0}
    assert users["coordinator"]["online"]  # the list is made while it is logged in
    table = ok("user", "list").splitlines()
    assert table[0].split() == ["USER", "ROLE", "ONLINE", "GROUPS"]
    row = next(line for line in table if line.startswith(bob + " "))
    assert row.split() == [bob, "dispatcher", "no", "0"]
    # aligned: every column starts at the same offset on every line
    assert row.index("dispatcher") == table[0].index("ROLE")

    created = ok_json("group", "create", vol, "--max-talk", "20s", "--mode", "relay")
    assert created == {"name": vol, "max_talk_ms": 20000, "mode": "relay", "record": False,
                       "members": 0, "online": 0, "talker": None, "encrypted": True,
                       "key_epoch": 1}  # keyed at once by this coordinator
    assert "max talk 1.5 s, mode relay, recording on" in ok(
        "group", "update", vol, "--max-talk", "1.5", "--record")
    assert ok_json("group", "update", vol, "--max-talk", "2m", "--mode", "auto")["max_talk_ms"] \
        == 120_000

    assert ok("group", "add", vol, ann) == f"Added {ann} to '{vol}'.\n"
    assert ok("group", "add", vol, bob, "--listen-only") \
        == f"Added {bob} to '{vol}' as listen-only members.\n"

    shown = ok_json("group", "show", vol)
    assert shown["members"] == [
        {"user": ann, "online": False, "listen_only": False, "devices": ""},
        {"user": bob, "online": False, "listen_only": True, "devices": ""}]
    assert shown["talker"] is None and shown["queue"] == [] and shown["mode"] == "auto"
    human = ok("group", "show", vol)
    assert "Max talk   120 s" in human and "Members    2 (0 online)" in human
    assert "Mode       auto (multicast 239.255." in human
    member_rows = human.split("\n\n")[1].splitlines()
    assert member_rows[0].split() == ["MEMBER", "ONLINE", "LISTEN-ONLY", "FLOOR", "DEVICES"]
    assert member_rows[2].split() == [bob, "no", "yes", "-", "-"]

    listed = {g["name"]: g for g in ok_json("group", "list")["groups"]}
    assert listed[vol]["members"] == 2 and listed[vol]["max_talk_ms"] == 120_000
    line = next(x for x in ok("group", "list").splitlines() if x.startswith(vol + " "))
    assert line.split() == [vol, "2", "0", "-", "120", "s", "auto", "yes"]

    assert ok_json("group", "remove", vol, ann) == {"name": vol, "users": [ann]}
    assert [m["user"] for m in ok_json("group", "show", vol)["members"]] == [bob]
    assert ok("user", "remove", ann) == f"Removed user '{ann}'.\n"
    assert ok("group", "delete", vol) == f"Deleted group '{vol}'.\n"
    assert vol not in {g["name"] for g in ok_json("group", "list")["groups"]}
    assert ann not in {u["name"] for u in ok_json("user", "list")["users"]}


def test_tokens_keys_and_rekeying_from_the_cli(coordinator: Path, uniq: str) -> None:
    import stat

    from ptt.client.keys import MEMBER_PINS
    from ptt.crypto.identity import identity_from_token, load_pins

    ann, bob, vol, open_ = f"{uniq}-ann", f"{uniq}-bob", f"{uniq}-vol", f"{uniq}-open"
    out = ok("user", "add", ann)
    token = next(x for x in out.splitlines() if x.startswith("Token")).split()[-1]
    fingerprint = identity_from_token(token, ann).public.fingerprint
    assert f"Key fingerprint of {ann}: {fingerprint}" in out
    assert "Signing key of coordinator" in out
    pins = coordinator.parent / MEMBER_PINS  # next to the client config, private
    assert stat.S_IMODE(pins.stat().st_mode) == 0o600
    assert load_pins(pins).get(ann) == identity_from_token(token, ann).public
    bob_token = ok_json("user", "add", bob)["token"]
    assert ok_json("user", "add", f"{uniq}-x")["fingerprint"] != fingerprint

    assert "end-to-end encrypted (key epoch 1)" in ok("group", "create", vol)
    added = run("group", "add", vol, ann, bob)
    assert added.exit_code == 0 and f"Re-keyed '{vol}': key epoch 2." in added.stderr
    assert ok_json("group", "show", vol)["key_epoch"] == 2
    assert ok_json("group", "rekey", vol) == {"name": vol, "epoch": 3}
    removed = run("group", "remove", vol, bob)
    assert removed.exit_code == 0 and "key epoch 4" in removed.stderr
    gone = run("user", "remove", ann)
    assert gone.exit_code == 0 and f"Re-keyed '{vol}': key epoch 5." in gone.stderr
    assert "Voice      end-to-end encrypted (key epoch 5)" in ok("group", "show", vol)
    assert load_pins(pins).get(ann) is None  # a removed user's key is forgotten too

    plain = ok_json("group", "create", open_, "--plain")
    assert plain["encrypted"] is False and plain["key_epoch"] == 0
    added = run("group", "add", open_, bob)
    assert added.exit_code == 0 and "Re-keyed" not in added.stderr, added.stderr
    refused = run("group", "rekey", open_)
    assert refused.exit_code != 0 and "plain" in refused.stderr
    assert "plain voice" in ok("group", "show", open_)
    del bob_token


def test_adding_a_member_again_changes_only_listen_only(coordinator: Path, uniq: str) -> None:
    ann, vol = f"{uniq}-ann", f"{uniq}-vol"
    ok("user", "add", ann)
    ok("group", "create", vol)
    ok("group", "add", vol, ann)
    ok("group", "add", vol, ann, "--listen-only")
    assert ok_json("group", "show", vol)["members"] == [
        {"user": ann, "online": False, "listen_only": True, "devices": ""}]


class _Loop:
    """An event loop in a thread, for clients that stay online while the CLI runs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[_Loop]:
    lp = _Loop()
    yield lp
    lp.close()


def test_show_tells_who_is_online_talking_and_queued(
        coordinator: Path, server: ServerProcess, uniq: str, loop: _Loop) -> None:
    ann, bob, cat, vol = f"{uniq}-ann", f"{uniq}-bob", f"{uniq}-cat", f"{uniq}-vol"
    tokens = {u: ok_json("user", "add", u)["token"] for u in (ann, bob, cat)}
    ok("group", "create", vol)
    ok("group", "add", vol, ann, bob, cat)
    address = ("127.0.0.1", server.port)

    async def online() -> list[Connection]:
        conns = []
        for u in (ann, bob):
            conn = Connection(address, u, tokens[u])
            await conn.open()
            await conn.join(vol)
            conns.append(conn)
        granted = await conns[0].request_floor(vol)
        queued = await conns[1].request_floor(vol)
        assert granted.state is cl.Participation.HAS_PERMISSION
        assert queued.state is cl.Participation.QUEUED
        return conns

    conns = loop.run(online())
    try:
        shown = ok_json("group", "show", vol)
        assert shown["talker"] == ann and shown["queue"] == [bob] and shown["online"] == 2
        assert {m["user"]: m["online"] for m in shown["members"]} == {ann: True, bob: True,
                                                                      cat: False}
        human = ok("group", "show", vol)
        assert f"Talker     {ann}" in human and f"Queue      1. {bob}" in human
        rows = {r.split()[0]: r.split()[1:] for r in human.split("\n\n")[1].splitlines()[1:]}
        dev_ann, dev_bob = conns[0].core.device, conns[1].core.device  # the devices online
        assert rows == {ann: ["yes", "no", "talking", dev_ann],
                        bob: ["yes", "no", "queued", "#1", dev_bob], cat: ["no", "no", "-", "-"]}
        line = next(x for x in ok("group", "list").splitlines() if x.startswith(vol + " "))
        assert line.split()[:4] == [vol, "3", "2", ann]
        online_users = {u["name"] for u in ok_json("user", "list")["users"] if u["online"]}
        assert {ann, bob} <= online_users and cat not in online_users
    finally:
        async def close() -> None:
            for c in conns:
                await c.close()
        loop.run(close())


def test_group_list_when_there_are_none(home: Path, tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "db" / "ptt.db", home)
    srv.start()
    try:
        result = run("--config", str(srv.credentials), "group", "list")
        assert result.exit_code == 0 and result.stdout == ""
        assert "No groups yet" in result.stderr
        assert json.loads(run("--config", str(srv.credentials), "group", "list", "--json")
                          .stdout) == {"groups": []}
    finally:
        assert srv.stop() == 143  # SIGTERM
