"""Operating a server: what it leaves on disk, and how it fails when its database cannot be
used (shared with another server, damaged). Real ``ptt server`` processes, real ``ptt`` commands."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.acceptance.harness import Site, finish, no_traceback, read_until, tone_wav
from tests.e2e.serverproc import PTT, ServerProcess, free_udp_port

STOPPED = (0, 143)  # a clean stop on SIGTERM (143: 128 + SIGTERM, as ptt.errors.Interrupted)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, tuple[int, int]]:
    """(permission bits, the ones wanted) of ``root`` and everything under it, by relative
    path: 0700 for a folder, 0600 for a file."""
    out = {}
    for path in [root, *root.rglob("*")]:
        out[str(path.relative_to(root))] = (stat.S_IMODE(path.stat().st_mode),
                                            0o700 if path.is_dir() else 0o600)
    return out


# --- recordings ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_recordings_of_server_and_member_are_private_under_umask_022(tmp_path: Path) -> None:
    """Decrypted audio written by ``ptt record`` and everything ``ptt server --record`` writes:
    files 0600, folders 0700, whatever the umask lets through."""
    server_dir, member_dir = tmp_path / "server-rec", tmp_path / "member-rec"
    with umask(0o022):
        site = Site(tmp_path / "site", server_args=["--record", str(server_dir)]).start()
        try:
            site.add_users("ann", "bob")
            site.group("ops", "ann", "bob")
            site.group("lobby", "ann", "bob", plain=True)
            env = site.env("bob", PTT_MULTICAST="off")
            recorder = site.spawn("bob", "record", "ops", "--out", str(member_dir),
                                  "--duration", "10", env=env)
            read_until(recorder, "recording ops", stream="stderr")
            page = tone_wav(tmp_path / "page.wav", 1.0)
            for group in ("ops", "lobby"):
                talked = site.ptt("ann", "talk", group, "--wav", str(page),
                                  env=site.env("ann", PTT_MULTICAST="off"))
                assert talked.returncode == 0, talked.stderr
            code, out, err = finish(recorder, timeout=30)
            assert code == 0, err
            assert "recorded 1 bursts" in out, out
        finally:
            site.stop()
    seen = {**{f"server:{k}": v for k, v in modes(server_dir).items()},
            **{f"member:{k}": v for k, v in modes(member_dir).items()}}
    opus = [k for k in seen if k.endswith(".opus")]
    assert any(k.startswith("member:ops/") for k in opus), seen  # the decrypted audio
    assert any(k.startswith("server:lobby/") for k in opus), seen  # the plain group's audio
    assert any(k.endswith("events.jsonl") for k in seen), seen
    loose = {k: oct(mode) for k, (mode, wanted) in seen.items() if mode != wanted}
    assert not loose, f"not private: {loose}"


# --- one database, one server ----------------------------------------------------------------------


def test_a_second_server_on_the_same_database_refuses_naming_the_first(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "ptt.db")
    first.start()
    try:
        site_db = first.db
        port = free_udp_port()
        second = subprocess.run(
            [PTT, "server", "--host", "127.0.0.1", "--port", str(port), "--db", str(site_db)],
            capture_output=True, text=True, timeout=30, env=first.env())
        assert second.returncode not in (0, 70), second.stderr
        no_traceback(second.stderr)
        lines = [ln for ln in second.stderr.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1, second.stderr
        line = lines[0]
        assert str(site_db) in line, line
        assert f"pid {first.proc.pid}" in line, line  # type: ignore[union-attr]
        assert f"127.0.0.1:{first.port}" in line, line
        assert "server listening" not in second.stderr
        # the first one's list of clients to call back is untouched, and it still serves
        assert first.proc is not None and first.proc.poll() is None
        creds = first.credentials
        env = {**first.env(), "PTT_SERVER": creds["server"], "PTT_USER": creds["user"],
               "PTT_TOKEN": creds["token"]}
        listed = subprocess.run([PTT, "user", "list"], capture_output=True, text=True,
                                timeout=30, env=env)
        assert listed.returncode == 0 and "coordinator" in listed.stdout, listed.stderr
    finally:
        assert first.stop() in STOPPED
    # the lock goes with the process: a server started after the first stopped runs
    again = ServerProcess(tmp_path / "ptt.db")
    again.start()
    assert again.stop() in STOPPED


def test_a_killed_server_leaves_no_lock_behind(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "ptt.db")
    first.start()
    first.kill()
    again = ServerProcess(tmp_path / "ptt.db")
    again.start()
    assert again.stop() in STOPPED


# --- a damaged database ----------------------------------------------------------------------------


def _damage(db: Path) -> None:
    """Overwrite the middle of every page after the first two: the header still opens, the
    tables do not."""
    with sqlite3.connect(db) as conn:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    for start in range(2 * page, len(data), page):
        data[start + 100:start + page - 100] = os.urandom(page - 200)
    db.write_bytes(bytes(data))


def _damage_a_record(db: Path) -> None:
    """Bytes that are not text inside one user's name: every page still passes SQLite's checks."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("UPDATE users SET name = CAST(x'41ff42' AS TEXT) WHERE name = 'bob'")
        assert conn.execute("SELECT changes()").fetchone()[0] == 1
    finally:
        conn.close()


@pytest.mark.parametrize("damage", [_damage, _damage_a_record], ids=["pages", "a record"])
def test_a_damaged_database_is_named_with_what_to_do(
        tmp_path: Path, damage: Callable[[Path], None]) -> None:
    site = Site(tmp_path).start()
    site.add_users("ann", "bob", "cat", "dan")
    site.group("ops", "ann", "bob", "cat", "dan")
    assert site.stop() in STOPPED
    db = site.server.db
    damage(db)
    t0 = time.monotonic()
    proc = subprocess.run(
        [PTT, "server", "--host", "127.0.0.1", "--port", "0", "--db", str(db)],
        capture_output=True, text=True, timeout=60, env=site.server.env())
    assert proc.returncode not in (0, 70), proc.stderr
    no_traceback(proc.stderr)
    assert "internal error" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert str(db) in lines[0] and "damaged" in lines[0] and "backup" in lines[0], lines[0]
    assert "server listening" not in proc.stderr
    assert time.monotonic() - t0 < 30


# --- tokens never on a command line ------------------------------------------------------------------


def test_user_add_never_suggests_a_token_on_the_command_line(site: Site) -> None:
    made = site.ptt("coordinator", "user", "add", "ann", check=True)
    token_lines = [ln for ln in made.stdout.splitlines() if ln.startswith("Token")]
    assert len(token_lines) == 1, made.stdout
    token = token_lines[0].split()[-1]
    others = [ln for ln in made.stdout.splitlines() if ln not in token_lines]
    assert not any(token in ln for ln in others), made.stdout
    assert "--token " not in made.stdout, made.stdout
    assert "ptt login --server" in made.stdout and "--token-stdin" in made.stdout, made.stdout


def test_login_refuses_a_token_on_the_command_line_and_takes_it_from_stdin(site: Site) -> None:
    info = json.loads(site.ptt("coordinator", "user", "add", "ann", "--json", check=True).stdout)
    token = str(info["token"])
    config = site.config("ann")
    refused = site.ptt("ann", "login", "--server", site.address, "--user", "ann",
                       "--token", token)
    assert refused.returncode == 2, refused.stderr
    no_traceback(refused.stderr)
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), refused.stderr
    assert "--token-stdin" in lines[0] and "--credentials" in lines[0], lines[0]
    assert token not in refused.stderr
    assert not config.exists()
    piped = site.ptt("ann", "login", "--server", site.address, "--user", "ann",
                     "--token-stdin", input=token + "\n")
    assert piped.returncode == 0, piped.stderr
    assert token in config.read_text()
    assert site.ptt("ann", "group", "list").returncode == 0


def test_user_add_writes_a_private_credentials_file_to_log_in_with(site: Site,
                                                                   tmp_path: Path) -> None:
    handover = tmp_path / "handover" / "bob.toml"
    with umask(0o022):
        made = site.ptt("coordinator", "user", "add", "bob", "--credentials-out", str(handover))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(handover.stat().st_mode) == 0o600
    assert f"ptt login --credentials {handover}" in made.stdout, made.stdout
    token = tomllib.loads(handover.read_text())["token"]
    assert token not in made.stdout and token not in made.stderr  # one copy: the file
    logged = site.ptt("bob", "login", "--credentials", str(handover))
    assert logged.returncode == 0, logged.stderr
    assert site.ptt("bob", "group", "list").returncode == 0
    again = site.ptt("coordinator", "user", "add", "cat", "--credentials-out", str(handover))
    assert again.returncode != 0 and "exists" in again.stderr, again.stderr
    no_traceback(again.stderr)
