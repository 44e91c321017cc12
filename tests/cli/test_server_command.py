"""``ptt server`` as a process: first start, serving, clean exits, persistence, start-up errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
from pathlib import Path

import pytest

from ptt.config import ServerConfig
from ptt.protocol.messages import Role
from tests.cli.conftest import ServerProcess, clean_env, credentials, one_error_line, ptt, run


def test_first_start_serves_stops_cleanly_and_keeps_everything(home: Path, tmp_path: Path
                                                               ) -> None:
    srv = ServerProcess(tmp_path / "data" / "ptt.db", home)
    srv.start()
    first = srv.output()
    cred = srv.credentials
    assert f"credentials are in {cred} (mode 0600)" in first
    assert f"export PTT_CONFIG={cred}" in first and f"ptt login --credentials {cred}" in first
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    assert credentials(cred)["server"] == srv.address  # names the port it really bound

    config = ["--config", str(cred)]
    assert run(*config, "user", "add", "ann").exit_code == 0
    assert run(*config, "group", "create", "volunteers", "--max-talk", "25").exit_code == 0
    assert run(*config, "group", "add", "volunteers", "ann").exit_code == 0
    assert srv.stop(signal.SIGTERM) == 143  # stopped cleanly by SIGTERM: 128 + 15
    assert "ptt server stopped" in srv.output() and "Traceback" not in srv.output()

    srv.start()  # same --db and port
    assert "First start" not in srv.output() and "credentials are in" not in srv.output()
    shown = json.loads(run(*config, "group", "show", "volunteers", "--json").stdout)
    assert shown["max_talk_ms"] == 25_000
    assert [m["user"] for m in shown["members"]] == ["ann"]
    users = json.loads(run(*config, "user", "list", "--json").stdout)["users"]
    assert {u["name"] for u in users} == {"ann", "coordinator"}
    assert srv.stop(signal.SIGINT) == 130
    assert "Traceback" not in srv.output()


def test_busy_port_is_one_line(home: Path, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        proc = ptt("server", "--port", str(port), "--db", str(tmp_path / "ptt.db"),
                   env=clean_env(home))
    assert proc.returncode == 4
    assert one_error_line(proc.stderr.splitlines()[-1]) == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "Traceback" not in proc.stderr


def test_bad_db_path_is_one_line(home: Path, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    proc = ptt("server", "--port", "0", "--db", str(not_a_dir / "ptt.db"), env=clean_env(home))
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert line.startswith(f"error: cannot open database {not_a_dir / 'ptt.db'}: ")


def test_bad_host_and_port(home: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "ptt.db")
    result = run("server", "--host", "not a host", "--port", "0", "--db", db)
    assert result.exit_code == 2
    assert one_error_line(result.stderr) == (
        "error: host: invalid host in 'not a host': expected an IPv4 address, [IPv6] address "
        "or host name")
    result = run("server", "--port", "70000", "--db", db)
    assert result.exit_code == 2
    assert one_error_line(result.stderr) == (
        "error: Invalid value for '--port': invalid port '70000': expected a number 0-65535")


def test_server_settings_from_env(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                  ) -> None:
    # PTT_SERVER_PORT reaches the server through click's auto_envvar_prefix and ptt.config;
    # a busy port makes the server stop right after opening its database
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        monkeypatch.setenv("PTT_SERVER_PORT", str(port))
        monkeypatch.setenv("PTT_SERVER_DB", str(tmp_path / "x.db"))
        result = run("server")
    assert result.exit_code == 4 and f"127.0.0.1:{port}" in result.stderr
    assert (tmp_path / "x.db").exists()
    assert not os.path.exists(home / ".local/share/ptt/ptt.db")


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[ServerConfig]:
    """``ptt server`` in-process up to the point where it would serve: the configs it built."""
    import ptt.server.app

    configs: list[ServerConfig] = []

    async def fake_run(config: ServerConfig, **_: object) -> None:
        configs.append(config)

    monkeypatch.setattr(ptt.server.app, "run", fake_run)
    return configs


def test_emergency_roles_option_env_and_file(home: Path, tmp_path: Path,
                                             started: list[ServerConfig],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    db = str(tmp_path / "ptt.db")
    assert run("server", "--db", db).exit_code == 0
    assert started[-1].emergency_roles == {Role.VOLUNTEER, Role.DISPATCHER, Role.COORDINATOR}
    result = run("server", "--db", db, "--emergency-roles", "dispatcher,coordinator")
    assert result.exit_code == 0, result.stderr
    assert started[-1].emergency_roles == {Role.DISPATCHER, Role.COORDINATOR}
    assert run("server", "--db", db, "--emergency-roles", "none").exit_code == 0
    assert started[-1].emergency_roles == frozenset()

    toml = tmp_path / "server.toml"
    toml.write_text('emergency_roles = ["coordinator"]\n')
    assert run("server", "--db", db, "--config", str(toml)).exit_code == 0
    assert started[-1].emergency_roles == {Role.COORDINATOR}
    monkeypatch.setenv("PTT_SERVER_EMERGENCY_ROLES", "dispatcher")  # the variable beats the file
    assert run("server", "--db", db, "--config", str(toml)).exit_code == 0
    assert started[-1].emergency_roles == {Role.DISPATCHER}
    # and the option beats both
    assert run("server", "--db", db, "--config", str(toml),
               "--emergency-roles", "volunteer").exit_code == 0
    assert started[-1].emergency_roles == {Role.VOLUNTEER}


def test_unknown_emergency_role_is_one_line(home: Path, tmp_path: Path,
                                            started: list[ServerConfig]) -> None:
    db = str(tmp_path / "ptt.db")
    result = run("server", "--db", db, "--emergency-roles", "dispatcher,pilot")
    assert result.exit_code == 2
    assert one_error_line(result.stderr) == (
        "error: Invalid value for '--emergency-roles': invalid role 'pilot': expected volunteer, "
        "coordinator or dispatcher")
    result = run("server", "--db", db, "--emergency-roles", "dispatcher,,coordinator")
    assert result.exit_code == 2
    assert one_error_line(result.stderr) == (
        "error: Invalid value for '--emergency-roles': expected role names separated by commas, "
        "or 'none', got 'dispatcher,,coordinator'")
    assert started == []  # refused before anything started
