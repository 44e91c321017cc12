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

from ptt.cli.remote import connect
from ptt.client.connection import Connection
from ptt.client.keys import add_user
from ptt.config import load_client_config
from ptt.crypto.groupkeys import open_grant, peek_grant
from ptt.crypto.identity import identity_from_token
from ptt.errors import AuthError, RequestError
from ptt.protocol import parts
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


# ~40 s on a quiet machine, 120 s seen at load average 10: the hang guard is set above that
@pytest.mark.timeout(360)
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
    rows = {u["name"]: u for u in (listed["users"] if isinstance(listed, dict) else listed)}
    assert set(names) <= set(rows) and len(rows) == USERS + 1
    assert rows["vol0000"]["groups"] == 1 and rows[gone]["groups"] == 0
    assert rows[names[-1]]["groups"] == 0 and rows[names[-1]]["role"] == "volunteer"

    site.ptt(COORDINATOR, "group", "create", "all", "--plain", check=True)
    site.ptt(COORDINATOR, "group", "add", "all", *names, check=True, timeout=60)
    shown = json.loads(site.ptt(COORDINATOR, "group", "show", "all", "--json",
                               check=True).stdout)
    assert sorted(m["user"] for m in shown["members"]) == names


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _flood_parts(site: Site, user: str, rounds: int) -> tuple[int, int, list[str]]:
    """A logged-in volunteer starts ``rounds`` uploads of the largest size and never finishes
    any, plus parts that break each rule; returns (accepted, refused, refusal texts)."""
    host, port = site.address.rsplit(":", 1)
    conn = Connection((host, int(port)), user, site.tokens[user])
    await conn.open(10.0)
    accepted, refused, texts = 0, 0, []
    full = {str(i): bytes([i]) * parts.CHUNK_BYTES for i in range(12)}
    count = parts.MAX_PARTS
    bad = [
        {"upload": 1, "index": 0, "count": count + 1, "total": parts.MAX_TOTAL + 1,
         "data": full},  # oversized total
        {"upload": 1, "index": 0, "count": count * 4, "total": parts.MAX_TOTAL,
         "data": full},  # too many parts
        {"upload": 1, "index": count, "count": count, "total": parts.MAX_TOTAL,
         "data": full},  # index past the end
        {"upload": 1, "index": 0, "count": count, "total": parts.MAX_TOTAL,
         "data": {"0": b"x"}},  # short part
    ]
    try:
        for i in range(rounds):
            args = bad[i] if i < len(bad) else {
                "upload": i + 1, "index": 0, "count": count, "total": parts.MAX_TOTAL,
                "data": full}
            try:
                await conn._admin_once(parts.PART_OP, args, 10.0)
                accepted += 1
            except RequestError as exc:
                refused += 1
                texts.append(str(exc))
        with pytest.raises(RequestError, match="no such upload|incomplete"):
            await conn._admin_once("group.list", {parts.PARTS_KEY: 5}, 10.0)  # never complete
    finally:
        await conn.close()
    return accepted, refused, texts


def test_flood_of_unfinished_and_malformed_parts_refused_without_memory_growth(
        site: Site) -> None:
    site.add_user("vol")
    with pytest.raises(AuthError, match="not a coordinator"):  # parts: coordinators only
        asyncio.run(_flood_parts(site, "vol", 1))
    site.add_user("mallory", role="coordinator")  # a coordinator's broken or hostile client
    pid = site.server.proc.pid  # type: ignore[union-attr]
    asyncio.run(_flood_parts(site, "mallory", 20))  # warm-up: the first answers' allocations
    before = _rss_kib(pid)
    accepted, refused, texts = asyncio.run(_flood_parts(site, "mallory", 300))
    grown = _rss_kib(pid) - before
    # 300 parts of 48,000 bytes (14 MB) sent; at most two uploads of one part each are kept
    assert accepted <= parts.MAX_UPLOADS_PER_USER and refused >= 300 - accepted
    assert any("at most 2 unfinished uploads" in t for t in texts)
    assert any("must be an integer" in t for t in texts)
    assert grown < 3 * 1024, f"server RSS grew by {grown} KiB"
    # the server still serves everyone
    assert site.ptt(COORDINATOR, "group", "list", check=True).returncode == 0
