"""Operational hardening against a live ``ptt server`` process and real ``ptt`` commands.

What an operator's machine keeps (logs) must not let anyone log in or hear a group: a full
session at the chattiest log level is searched for every secret it handled.
"""

from __future__ import annotations

import base64
import errno
import json
import select
import shlex
import shutil
import socket
import sqlite3
import subprocess
import threading
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# --- a membership change and its key, killed at every step ----------------------------------------


class CuttingProxy:
    """UDP between one ``ptt`` command and the server. At the client's ``kill_at``-th datagram
    it SIGKILLs the server: before forwarding it (the server never saw it) or, with ``after``,
    once the server has acted on it (its answer is lost). ``None``: only counts them."""

    def __init__(self, server: ServerProcess, kill_at: int | None, after: bool) -> None:
        self.server, self.kill_at, self.after = server, kill_at, after
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.bind(("127.0.0.1", 0))
        self.count = 0
        self.seen: list[bytes] = []  # per client datagram: its first byte, then its size
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _run(self) -> None:
        client = None
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock, self.up], [], [], 0.05)
            if self.sock in ready:
                data, client = self.sock.recvfrom(65536)
                self.count += 1
                self.seen.append(data[:1] + len(data).to_bytes(4, "big"))
                cut = self.count == self.kill_at
                if cut and not self.after:
                    self._kill()
                if not self.killed:
                    self.up.sendto(data, self.server.address)
                if cut and self.after:
                    acted_on(self.server.proc.pid)
                    self._kill()
            if self.up in ready:
                data = self.up.recv(65536)
                if not self.killed and client is not None:
                    self.sock.sendto(data, client)

    def _kill(self) -> None:
        self.killed = True
        self.server.kill()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        self.up.close()


def acted_on(pid: int, settle: float = 0.3, limit: float = 20.0) -> None:
    """Wait until the server, sent one datagram and nothing after it, has done all it will do
    with it: every thread asleep and no CPU time spent over 0.1 s, ``settle`` s at the least.

    A fixed pause is not enough: on a busy machine the server may not have run at all yet.
    Threads waiting on the disk are in state D, not S, so a commit in progress is waited for.
    """
    def sample() -> tuple[bool, int]:
        asleep, ticks = True, 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # a thread that just ended
            asleep = asleep and fields[0] == "S"
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return asleep, ticks

    time.sleep(settle)
    deadline = time.monotonic() + limit
    quiet, last = 0, None
    while quiet < 3 and time.monotonic() < deadline:
        asleep, ticks = sample()
        quiet = quiet + 1 if asleep and ticks == last else 0
        last = ticks
        time.sleep(0.05)


def stored(db: Path, group: str) -> tuple[set[str], int, dict[str, int]]:
    """(members, key epoch, user -> epoch of its grant) of ``group`` as committed in ``db``."""
    with sqlite3.connect(db) as conn:
        gid, epoch = conn.execute("SELECT id, key_epoch FROM groups WHERE name = ?",
                                  (group,)).fetchone()
        members = {n for (n,) in conn.execute(
            "SELECT u.name FROM memberships m JOIN users u ON u.id = m.user_id "
            "WHERE m.group_id = ?", (gid,))}
        grants = dict(conn.execute(
            "SELECT u.name, k.epoch FROM grants k JOIN users u ON u.id = k.user_id "
            "WHERE k.group_id = ?", (gid,)).fetchall())
    return members, int(epoch), {str(u): int(e) for u, e in grants.items()}


def user_exists(db: Path, name: str) -> bool:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None


# ~40 s on a quiet machine, 120 s seen at load average 10: the hang guard is set above that
@pytest.mark.timeout(360)
@pytest.mark.slow
@pytest.mark.parametrize("verb", ["remove", "add", "user-remove"])
def test_a_membership_change_killed_at_every_step_leaves_before_or_after_and_reruns(
        tmp_path: Path, verb: str) -> None:
    """``ptt group remove ops dan`` / ``ptt group add ops eve`` / ``ptt user remove dan`` with
    the server SIGKILLed at each datagram of the command, before the server sees it and after
    it acted on it: what is committed is the state before (member set, key epoch, grants
    unchanged) or the state after (member set changed, the next epoch granted to exactly the
    new member set), never a removed member with the key in force or a member without it; the
    command run again completes the change (a user removed already is unknown: nothing to
    complete)."""
    site = Site(tmp_path / "template")
    site.start()
    site.add_users("ann", "bob", "dan", "eve")
    site.group("ops", "ann", "bob", "dan")
    site.stop()
    template = site.server.db.parent
    members0, epoch0, grants0 = stored(site.server.db, "ops")
    assert members0 == {"ann", "bob", "dan"} and set(grants0) == members0 and epoch0 >= 1
    who = "eve" if verb == "add" else "dan"
    members1 = members0 | {who} if verb == "add" else members0 - {who}
    command = ["user", "remove", who] if verb == "user-remove" else ["group", verb, "ops", who]

    def settled(db: Path, rerun: bool) -> str:
        members, epoch, grants = stored(db, "ops")
        if (members, epoch, grants) == (members0, epoch0, grants0) and not rerun:
            return "before"
        assert members == members1, f"members {members} (epoch {epoch})"
        assert epoch > epoch0, f"{who} {verb}d, but the key stayed at epoch {epoch}"
        assert grants == dict.fromkeys(members1, epoch), f"grants {grants} at epoch {epoch}"
        return "after"

    def attempt(n: int, kill_at: int | None, after: bool) -> tuple[list[bytes], str]:
        """Copy the template, run the command through a proxy cutting at ``kill_at``, then
        check the stored state; rerun it on a fresh server. Returns what the client sent
        (first byte and size of each datagram) and which state was committed."""
        root = tmp_path / f"run{n}"
        shutil.copytree(template, root, ignore=shutil.ignore_patterns("server-*.log"))
        server = ServerProcess(root / "ptt.db")
        server.start()
        proxy = CuttingProxy(server, kill_at, after)
        env = {**site.env("coordinator"), "PTT_CONFIG": str(root / "coordinator.toml"),
               "PTT_SERVER": proxy.address, "PTT_TIMEOUT": "1", "PTT_MULTICAST": "off"}
        try:
            first = site.ptt("coordinator", *command, env=env, timeout=60)
        finally:
            proxy.close()
            server.stop()
        assert proxy.killed or first.returncode == 0, first.stderr
        assert "Traceback" not in first.stderr, first.stderr
        state = settled(server.db, rerun=False)
        gone = not user_exists(server.db, who)
        again = ServerProcess(server.db)
        again.start()
        try:
            env["PTT_SERVER"] = f"127.0.0.1:{again.port}"
            rerun = site.ptt("coordinator", *command, env=env, timeout=60)
            if verb == "user-remove" and gone:
                assert rerun.returncode == 1 and f"unknown user '{who}'" in rerun.stderr, \
                    rerun.stderr
            else:
                assert rerun.returncode == 0, f"run again after {state}: {rerun.stderr}"
        finally:
            again.stop()
        settled(again.db, rerun=True)
        return proxy.seen, state

    sent, state = attempt(0, None, False)
    assert state == "after" and 3 <= len(sent) <= 30, sent
    # the operation's steps: the sealed datagrams after the plain login ('S') up to the request
    # carrying the change (the largest: the grants), cut before the server sees each and after
    # it acted on it; for add, which takes the same path, the change request only
    sealed = [k for k, d in enumerate(sent, 1) if d[:1] == b"S"]
    change = max(sealed, key=lambda k: int.from_bytes(sent[k - 1][1:], "big"))
    steps = {"remove": [k for k in sealed if k <= change], "add": [change],
             # leaving the group with its key, then the account going (the next request)
             "user-remove": [change, change + 1]}[verb]
    seen = set()
    for k in steps:
        for after in (False, True):
            _, state = attempt(2 * k + after, k, after)
            seen.add(state)
    assert seen == {"before", "after"}  # the cuts fell on both sides of the commit
