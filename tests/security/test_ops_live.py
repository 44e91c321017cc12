"""Operational hardening against a live ``ptt server`` process and real ``ptt`` commands.

What an operator's machine keeps (logs) must not let anyone log in or hear a group: a full
session at the chattiest log level is searched for every secret it handled.
"""

from __future__ import annotations

import base64
import errno
import json
import shlex
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from ptt.crypto.groupkeys import GroupKeyring
from ptt.crypto.identity import identity_from_token
from tests.acceptance.harness import Site, finish, read_until, tone_wav
from tests.e2e.serverproc import PTT, ServerProcess


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


# --- recording onto a full disk ------------------------------------------------------------------


class TmpfsServer(ServerProcess):
    """``ptt server`` in a mount namespace of its own, with a ``size``-byte tmpfs on ``mount``
    (its recording directory): the disk fills up for the server alone. Needs root (or a user
    namespace that allows mounting): :func:`can_mount_tmpfs` says whether this machine can."""

    def __init__(self, db: Path, mount: Path, size: int, extra_args: list[str]) -> None:
        super().__init__(db, extra_args=extra_args)
        self.mount, self.size = mount, size

    def start(self, timeout: float = 15.0) -> None:
        self.log = self.db.parent / f"server-{time.monotonic_ns()}.log"
        cmd = shlex.join([PTT, "server", "--host", "127.0.0.1", "--port", str(self.port),
                          "--db", str(self.db), *self.extra_args])
        script = (f"mount -t tmpfs -o size={self.size} tmpfs {shlex.quote(str(self.mount))} "
                  f"&& exec {cmd}")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(["unshare", "-m", "sh", "-c", script], stdout=out,
                                         stderr=subprocess.STDOUT, env=self.env())
        deadline = time.monotonic() + timeout
        while b"listening" not in self.log.read_bytes():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def inside(self, path: Path) -> Path:
        """``path`` as the server sees it (its own mounts)."""
        assert self.proc is not None
        return Path(f"/proc/{self.proc.pid}/root") / path.relative_to("/")


def can_mount_tmpfs(where: Path) -> str | None:
    """None if ``unshare -m`` + ``mount -t tmpfs`` work here, else why not."""
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    probe = subprocess.run(["unshare", "-m", "sh", "-c",
                            f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(str(where))}"],
                           capture_output=True, text=True, timeout=10)
    return None if probe.returncode == 0 else f"cannot mount a tmpfs: {probe.stderr.strip()}"


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until the disk is full; returns it."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for _ in range(10_000):  # far more than the tmpfs holds
            try:
                f.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return filler
    raise AssertionError("the tmpfs never filled up")


def test_recording_onto_a_full_disk_backs_off_keeps_serving_and_resumes(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    rec.mkdir()
    why = can_mount_tmpfs(rec)
    if why is not None:
        pytest.skip(f"a size-limited filesystem is needed: {why}")
    site = Site(tmp_path / "site")
    server = site.server = TmpfsServer(site.server.db, rec, 256 * 1024,
                                       ["--record", str(rec)])
    site.start()
    try:
        site.add_user("ann")
        site.add_user("bob")
        site.group("lobby", "ann", "bob", plain=True)
        folder = server.inside(rec)
        filler = fill(folder)
        page = tone_wav(tmp_path / "page.wav", 2.0)
        env = {u: site.env(u, PTT_MULTICAST="off") for u in ("ann", "bob")}
        for user in ("ann", "bob"):  # two bursts (~100 voice datagrams each) onto a full disk
            talked = site.ptt(user, "talk", "lobby", "--wav", str(page), env=env[user])
            assert talked.returncode == 0, talked.stderr
        opus = sorted((folder / "lobby").glob("*.opus")) if (folder / "lobby").exists() else []
        assert len(opus) <= 2, f"{len(opus)} files for 2 bursts: {[p.name for p in opus[:5]]}"
        assert site.ptt("bob", "group", "list").returncode == 0  # still serving
        filler.unlink()  # space comes back
        time.sleep(2.5)  # past the back-off
        for _ in range(3):  # the first page after the back-off is recorded
            talked = site.ptt("ann", "talk", "lobby", "--wav", str(page), env=env["ann"])
            assert talked.returncode == 0, talked.stderr
            written = [p for p in (folder / "lobby").glob("*.opus") if p.stat().st_size > 4000]
            if written:
                break
            time.sleep(2.5)
        assert written, "recording did not resume once space came back"
    finally:
        site.stop()
    log = server.output()
    paused = [ln for ln in log.splitlines() if "recording paused" in ln]
    assert len(paused) == 1, log
    assert "No space left on device" in paused[0], paused[0]
    assert sum("recording resumed" in ln for ln in log.splitlines()) == 1, log
