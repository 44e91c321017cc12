"""A member of an encrypted group that holds no key for it is told so when it joins, and told
again when the key arrives (pushed by the server as soon as a coordinator issues it)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from ptt.cli.remote import connect
from ptt.config import load_client_config
from tests.acceptance.harness import (COORDINATOR, Site, no_traceback, spawn_logged,
                                     stop_logged, wait_in_file)


async def _add_without_key(site: Site, group: str, user: str) -> None:
    """The wire's group.add: membership only, no grant (what an older coordinator client sent)."""
    conn, _ = await connect(load_client_config(site.config(COORDINATOR)), 10.0)
    try:
        await conn.admin("group.add", {"name": group, "users": [user]})
    finally:
        await conn.close()


def test_member_without_key_warned_at_join_and_told_when_it_arrives(site: Site) -> None:
    site.add_users("ann", "bob")
    site.group("ops", "ann")  # key epoch 1 at creation, 2 with ann
    asyncio.run(_add_without_key(site, "ops", "bob"))
    log = Path(site.root) / "bob-listen.log"
    listen = spawn_logged(site, "bob", log, "listen", "ops", "--duration", "30",
                          "--out", str(Path(site.root) / "bob.wav"))
    try:
        text = wait_in_file(listen, log, "warning: no key for 'ops' (epoch 2) yet", timeout=15)
        assert "joined ops" in text and "ptt group rekey ops" in text
        site.ptt(COORDINATOR, "group", "rekey", "ops", check=True)
        text = wait_in_file(listen, log, "ops  key received (epoch 3): its voice opens now",
                            timeout=15)
    finally:
        code = stop_logged(listen, signal.SIGINT)
    no_traceback(log.read_text())
    assert code == 130
