"""Event scale through a live server: answers and requests larger than one datagram.

An encrypted group of 1,000 members (its re-key carries 1,000 grants, ~290 kB, five times what one
datagram holds) and a directory of 2,000 users (``user list`` and ``group show`` past their old
ceilings of ~1,395 users and ~1,815 members), all through the real ``ptt`` CLI. The users are
made over one coordinator connection with the lowest iteration count, so the test takes seconds.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ptt.client.keys import add_user
from ptt.config import load_client_config
from ptt.cli.remote import connect
from ptt.crypto.groupkeys import open_grant, peek_grant
from ptt.crypto.identity import identity_from_token
from ptt.errors import AuthError
from ptt.protocol.auth import MIN_ITERATIONS
from ptt.server.store import Store
from tests.acceptance.harness import COORDINATOR, Site

USERS = 2_000
MEMBERS = 1_000


async def _make_users(site: Site, names: list[str], pins: Path) -> dict[str, str]:
    config = load_client_config(site.config(COORDINATOR))
    conn, _ = await connect(config, 10.0)
    try:
        return {n: await add_user(conn, n, iterations=MIN_ITERATIONS, pins=pins) for n in names}
    finally:
        await conn.close()


def _grants(site: Site, group: str) -> tuple[int, int, dict[str, bytes]]:
    store = Store(site.server.db)
    try:
        key = store.group_key(group)
        return store.get_group(group).id, key.epoch, key.grants
    finally:
        store.close()


@pytest.mark.slow
def test_thousand_member_group_keyed_and_directory_listed(site: Site, tmp_path: Path) -> None:
    names = [f"vol{i:04d}" for i in range(USERS)]
    tokens = asyncio.run(_make_users(site, names, tmp_path / "pins"))
    members = names[:MEMBERS]
    site.ptt(COORDINATOR, "group", "create", "big", check=True)
    site.ptt(COORDINATOR, "group", "add", "big", *members, check=True, timeout=60)

    gid, epoch, grants = _grants(site, "big")
    assert epoch >= 1 and set(members) <= set(grants)
    signer = peek_grant(next(iter(grants.values())))
    trusted = {signer.signer: signer.signer_key}
    keys = set()
    for user in members:  # every member's grant opens, with that member's own key
        me = identity_from_token(tokens[user], user)
        keys.add(open_grant(grants[user], me, user, trusted, "big", gid).secret)
    assert len(keys) == 1  # one group key, wrapped for each

    gone = members[7]
    site.ptt(COORDINATOR, "group", "remove", "big", gone, check=True, timeout=60)
    _, new_epoch, new_grants = _grants(site, "big")
    assert new_epoch == epoch + 1 and gone not in new_grants
    assert len([u for u in new_grants if u in members]) == MEMBERS - 1
    me = identity_from_token(tokens[members[8]], members[8])
    new_key = open_grant(new_grants[members[8]], me, members[8], trusted, "big", gid).secret
    assert new_key not in keys
    removed = identity_from_token(tokens[gone], gone)
    for user, blob in new_grants.items():  # the removed member's key opens nothing new
        with pytest.raises(AuthError):
            open_grant(blob, removed, gone, trusted, "big", gid)
        with pytest.raises(AuthError):  # not even claiming to be the recipient
            open_grant(blob, removed, user, trusted, "big", gid)

    listed = json.loads(site.ptt(COORDINATOR, "user", "list", "--json", check=True).stdout)
    listed_names = {u["name"] for u in (listed["users"] if isinstance(listed, dict) else listed)}
    assert set(names) <= listed_names and len(listed_names) == USERS + 1

    site.ptt(COORDINATOR, "group", "create", "all", "--plain", check=True)
    site.ptt(COORDINATOR, "group", "add", "all", *names, check=True, timeout=60)
    shown = json.loads(site.ptt(COORDINATOR, "group", "show", "all", "--json",
                               check=True).stdout)
    assert sorted(m["user"] for m in shown["members"]) == names
