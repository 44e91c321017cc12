"""Start and stop a real `ptt server` process on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tests.ports import free_udp_port

PTT = str(Path(sys.executable).with_name("ptt"))


@dataclass
class ServerProcess:
    db: Path
    port: int = field(default_factory=free_udp_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    extra_args: list[str] = field(default_factory=list)  # more `ptt server` options

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def credentials(self) -> dict[str, str]:
        return tomllib.loads((self.db.parent / "coordinator.toml").read_text())

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        home = self.db.parent / "home"
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
                   XDG_DATA_HOME=str(home / ".local/share"), PYTHONUNBUFFERED="1")
        return env

    def start(self, timeout: float = 15.0) -> None:
        self.log = self.db.parent / f"server-{time.monotonic_ns()}.log"
        with open(self.log, "wb") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [PTT, "server", "--host", "127.0.0.1", "--port", str(self.port),
                 "--db", str(self.db), *self.extra_args],
                stdout=out, stderr=subprocess.STDOUT, env=self.env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            if b"listening" in self.log.read_bytes():
                return
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def output(self) -> str:
        return self.log.read_text() if self.log else ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(5)
        return self.proc.returncode if self.proc else 0


def add_member_without_key(db: Path, group: str, user: str) -> None:
    """Make ``user`` a member of ``group`` in the database alone, with no grant of its key: the
    state a bare ``group.add`` left behind on servers that still took it for an encrypted
    group. Call it while no server runs on ``db``."""
    with sqlite3.connect(db) as conn:
        added = conn.execute(
            "INSERT INTO memberships (group_id, user_id, listen_only) SELECT g.id, u.id, 0 "
            "FROM groups g, users u WHERE g.name = ? AND u.name = ?", (group, user)).rowcount
    conn.close()
    if added != 1:
        raise AssertionError(f"no group '{group}' or user '{user}' in {db}")
