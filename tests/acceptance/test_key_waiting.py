"""A member of an encrypted group that holds no key for it is told so when it joins, and told
again when the key arrives (pushed by the server as soon as a coordinator issues it)."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.acceptance.harness import (
    COORDINATOR,
    Site,
    no_traceback,
    spawn_logged,
    stop_logged,
    wait_in_file,
)
from tests.e2e.serverproc import add_member_without_key


def test_member_without_key_warned_at_join_and_told_when_it_arrives(site: Site) -> None:
    site.add_users("ann", "bob")
    site.group("ops", "ann")  # key epoch 1 at creation, 2 with ann
    # bob a member with no grant: what a bare group.add left in the database of a server that
    # still took it for an encrypted group (servers now refuse it)
    site.stop()
    add_member_without_key(site.server.db, "ops", "bob")
    site.start()
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
