"""Operational hardening against a live ``ptt server`` process and real ``ptt`` commands.

What an operator's machine keeps (logs) must not let anyone log in or hear a group: a full
session at the chattiest log level is searched for every secret it handled.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
from pathlib import Path

from ptt.crypto.groupkeys import GroupKeyring
from ptt.crypto.identity import identity_from_token
from tests.acceptance.harness import Site, finish, read_until, tone_wav
from tests.e2e.serverproc import ServerProcess


def forms(secret: bytes | str) -> set[str]:
    """Every way a log line could spell ``secret``: text, hex, base64 (both alphabets), repr."""
    if isinstance(secret, str):
        return {secret}
    out = {secret.hex(), secret.hex().upper(), repr(secret),
           base64.b64encode(secret).decode().rstrip("="),
           base64.urlsafe_b64encode(secret).decode().rstrip("=")}
    # a repr split across lines or cut short still starts the same way: look for its middle too
    return {s for s in out if len(s) >= 16}


def verbose_site(root: Path, *server_args: str) -> Site:
    """A Site whose server and every command run at -vv (PTT_VERBOSE=2)."""
    site = Site(root, server_args=list(server_args))
    server = site.server
    plain_env = ServerProcess.env

    def env() -> dict[str, str]:
        return {**plain_env(server), "PTT_VERBOSE": "2"}

    server.env = env  # type: ignore[method-assign]
    return site


def test_a_full_session_at_debug_level_logs_no_token_salt_verifier_or_key(tmp_path: Path) -> None:
    site = verbose_site(tmp_path).start()
    outputs: list[str] = []
    try:
        def run(user: str, *args: str) -> subprocess.CompletedProcess[str]:
            proc = site.ptt(user, *args, env=site.env(user, PTT_VERBOSE="2",
                                                      PTT_MULTICAST="off"))
            outputs.append(proc.stderr)
            assert proc.returncode == 0, proc.stderr
            return proc

        site.add_user("ann")
        site.add_user("bob")
        site.group("ops", "ann", "bob")
        run("coordinator", "group", "rekey", "ops")
        run("ann", "group", "list")
        listener = site.spawn("bob", "listen", "ops", "--out", str(tmp_path / "heard.wav"),
                              "--duration", "12",
                              env=site.env("bob", PTT_VERBOSE="2", PTT_MULTICAST="off"))
        read_until(listener, "ops")
        run("ann", "talk", "ops", "--wav", str(tone_wav(tmp_path / "page.wav", 1.5)))
        _, _, err = finish(listener, timeout=30)
        outputs.append(err)
    finally:
        site.stop()
    db = sqlite3.connect(site.server.db)
    secrets: dict[str, set[str]] = {}
    for name, salt, verifier in db.execute("SELECT name, salt, verifier FROM users"):
        secrets[f"{name}'s salt"] = forms(bytes(salt))
        secrets[f"{name}'s verifier"] = forms(bytes(verifier))
    coordinator_token = site.server.credentials["token"]
    tokens = {**site.tokens, "coordinator": coordinator_token}
    for name, token in tokens.items():
        secrets[f"{name}'s token"] = forms(token)
        private = identity_from_token(token, name)
        secrets[f"{name}'s identity key"] = forms(private.to_bytes())
    grants = db.execute("SELECT g.name, g.id, u.name, k.grant FROM grants k "
                        "JOIN groups g ON g.id = k.group_id JOIN users u ON u.id = k.user_id")
    opened = 0
    for group, gid, user, grant in grants:
        ring = GroupKeyring(group, gid)
        me = identity_from_token(tokens[user], user)
        coord = identity_from_token(coordinator_token, "coordinator")
        ring.accept(bytes(grant), me, user, {"coordinator": coord.public.ed25519}, 0.0)
        assert ring.current is not None
        secrets[f"the key of {group} (epoch {ring.current.epoch})"] = forms(ring.current.secret)
        opened += 1
    db.close()
    assert opened >= 2 and len(secrets) >= 12
    log = site.server.output()
    assert "user.add" in log and "floor granted" in log  # it is the debug log of the session
    for where, text in [("the server log", log)] + [(f"command {i}'s stderr", o)
                                                      for i, o in enumerate(outputs)]:
        for what, spellings in secrets.items():
            for s in spellings:
                assert s not in text, f"{what} is in {where} (as {s!r})"


def test_user_add_json_for_scripts_still_has_the_token(tmp_path: Path) -> None:
    """The one place a token may appear is the coordinator's own output, made for handing it
    over; the log of the same command must not repeat it."""
    site = verbose_site(tmp_path).start()
    try:
        made = site.ptt("coordinator", "user", "add", "dan", "--json",
                        env=site.env("coordinator", PTT_VERBOSE="2"))
        assert made.returncode == 0, made.stderr
        token = json.loads(made.stdout)["token"]
        assert token not in made.stderr
    finally:
        site.stop()
    assert token not in site.server.output()
