"""Fixtures for CLI tests: a real ``ptt server`` process on 127.0.0.1, and two ways to run ``ptt``.

``run`` calls the click group in-process with CliRunner (fast, for behaviour); ``ptt`` runs the
console script as a subprocess (what a user sees: exit codes, stderr, no traceback). Both see
the same environment: HOME and the XDG directories in a temporary directory, no ``PTT_*``
variables from outside.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ptt.cli.main import cli
from tests.ports import free_udp_port

PTT = str(Path(sys.executable).with_name("ptt"))
START_TIMEOUT = 15.0


def closed_port() -> int:
    """A loopback UDP port nobody listens on (freed just now): 'server unreachable'."""
    return free_udp_port()


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTT_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local/share"), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class ServerProcess:
    """``ptt server`` as a subprocess; stderr goes to a log file the test can read."""

    db: Path
    home: Path
    port: int = field(default_factory=free_udp_port)
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def credentials(self) -> Path:
        return self.db.parent / "coordinator.toml"

    def start(self, *extra: str) -> None:
        log = self.db.parent.parent / f"server-{len(self.logs)}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [PTT, "server", "--port", str(self.port), "--db", str(self.db), *extra],
                stdout=out, stderr=out, env=clean_env(self.home))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()}")
            if b"listening on" in log.read_bytes():
                return
            time.sleep(0.02)
        raise RuntimeError(f"server did not start: {log.read_text()}")

    def output(self) -> str:
        return self.logs[-1].read_text() if self.logs else ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise
        return self.proc.returncode


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the admin tests (each uses its own names); started once, ~0.7 s."""
    base = tmp_path_factory.mktemp("server")
    srv = ServerProcess(base / "db" / "ptt.db", base / "home")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's HOME and XDG directories, in os.environ too (for CliRunner)."""
    h = tmp_path / "home"
    h.mkdir()
    for k in list(os.environ):
        if k.startswith("PTT_"):
            monkeypatch.delenv(k)
    for k, v in clean_env(h).items():
        if os.environ.get(k) != v:
            monkeypatch.setenv(k, v)
    return h


@pytest.fixture
def coordinator(home: Path, server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Commands run as the server's coordinator (PTT_CONFIG = the first-start credentials)."""
    monkeypatch.setenv("PTT_CONFIG", str(server.credentials))
    return server.credentials


_counter = itertools.count()


@pytest.fixture
def uniq(request: pytest.FixtureRequest) -> str:
    """A name prefix no other test uses, as the session's server is shared."""
    return f"t{next(_counter)}{os.getpid() % 1000}"


def run(*args: str, input: str | None = None) -> Result:
    """``ptt ARGS`` in-process; the exit code, stdout and stderr are what the script gives."""
    return CliRunner().invoke(cli, list(args), input=input, prog_name="ptt")


def ptt(*args: str, env: dict[str, str] | None = None, timeout: float = 20.0,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``ptt ARGS`` as a subprocess with os.environ (or ``env``), ``input`` on its stdin."""
    return subprocess.run([PTT, *args], capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else dict(os.environ), input=input)


def one_error_line(stderr: str) -> str:
    """The single line of a failed command's stderr; fails on tracebacks or extra lines."""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def credentials(path: Path) -> dict[str, str]:
    return tomllib.loads(path.read_text())
