"""Operating a server: what it leaves on disk, and how it fails when its database cannot be
used (shared with another server, damaged). Real ``ptt server`` processes, real ``ptt`` commands."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.acceptance.harness import Site, finish, no_traceback, read_until, tone_wav
from tests.e2e.serverproc import PTT, ServerProcess, free_udp_port


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


def test_recordings_of_server_and_member_are_private_under_umask_022(tmp_path: Path) -> None:
    """Decrypted audio written by ``ptt record`` and everything ``ptt server --record`` writes:
    files 0600, folders 0700, whatever the umask lets through."""
    server_dir, member_dir = tmp_path / "server-rec", tmp_path / "member-rec"
    with umask(0o022):
        site = Site(tmp_path / "site", server_args=["--record", str(server_dir)]).start()
        try:
            site.add_user("ann")
            site.add_user("bob")
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
        assert first.stop() == 0
    # the lock goes with the process: a server started after the first stopped runs
    again = ServerProcess(tmp_path / "ptt.db")
    again.start()
    assert again.stop() == 0


def test_a_killed_server_leaves_no_lock_behind(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "ptt.db")
    first.start()
    first.kill()
    again = ServerProcess(tmp_path / "ptt.db")
    again.start()
    assert again.stop() == 0


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


def test_a_damaged_database_is_named_with_what_to_do(tmp_path: Path) -> None:
    site = Site(tmp_path).start()
    for name in ("ann", "bob", "cat", "dan"):
        site.add_user(name)
    site.group("ops", "ann", "bob", "cat", "dan")
    assert site.stop() == 0
    db = site.server.db
    _damage(db)
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
