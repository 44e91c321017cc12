"""``ptt login`` checks credentials, writes a 0600 config that later commands use; PTT_* win."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest

from tests.cli.conftest import ServerProcess, closed_port, credentials, one_error_line, ptt, run


@pytest.fixture
def ann(coordinator: Path, uniq: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A volunteer on the shared server; afterwards no PTT_CONFIG, so the XDG file is used."""
    data = json.loads(run("user", "add", f"{uniq}-ann", "--json").stdout)
    monkeypatch.delenv("PTT_CONFIG")
    return data["name"], data["token"]


def xdg_config(home: Path) -> Path:
    return home / ".config" / "ptt" / "client.toml"


def test_login_writes_a_private_config_that_commands_use(
        home: Path, server: ServerProcess, ann: tuple[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    coord = credentials(server.credentials)
    proc = ptt("login", "--server", server.address, "--user", "Coordinator", "--token-stdin",
               input=coord["token"] + "\n")
    path = xdg_config(home)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"Saved the client config to {path} (mode 0600).\n"
    assert f"Logged in to {server.address} as 'coordinator' (coordinator)." in proc.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = tomllib.loads(path.read_text())
    assert (saved["server"], saved["user"], saved["token"]) == (
        server.address, "coordinator", coord["token"])

    listed = ptt("user", "list", "--json")  # no PTT_CONFIG: the XDG file
    assert listed.returncode == 0, listed.stderr
    assert ann[0] in {u["name"] for u in json.loads(listed.stdout)["users"]}

    # PTT_USER/PTT_TOKEN override the file: now a volunteer, refused
    with monkeypatch.context() as mp:
        mp.setenv("PTT_USER", ann[0])
        mp.setenv("PTT_TOKEN", ann[1])
        result = run("group", "create", "never")
        assert result.exit_code == 3 and f"'{ann[0]}' cannot run" in result.stderr
    # PTT_SERVER overrides it too, and --server overrides PTT_SERVER
    port = closed_port()
    monkeypatch.setenv("PTT_SERVER", f"127.0.0.1:{port}")
    monkeypatch.setenv("PTT_TIMEOUT", "0.3")
    result = run("user", "list")
    assert result.exit_code == 4
    assert f"nothing is listening at 127.0.0.1:{port} (connection refused)" in result.stderr
    assert run("user", "list", "--server", server.address).exit_code == 0
    # ... and the saved file never took a value from the environment
    assert tomllib.loads(path.read_text()) == saved


def test_login_with_the_credentials_file(home: Path, server: ServerProcess) -> None:
    result = run("login", "--credentials", str(server.credentials))
    assert result.exit_code == 0, result.stderr
    assert credentials(xdg_config(home)) == credentials(server.credentials)
    assert run("group", "list").exit_code == 0


def test_relogin_keeps_other_settings(home: Path, server: ServerProcess, ann: tuple[str, str]
                                      ) -> None:
    path = xdg_config(home)
    path.parent.mkdir(parents=True)
    path.write_text('server = "127.0.0.1:1"\nbitrate = 32000\n')
    result = run("login", "--server", server.address, "--user", ann[0], "--token-stdin",
                 input=ann[1])
    assert result.exit_code == 0, result.stderr
    saved = tomllib.loads(path.read_text())
    assert saved["bitrate"] == 32000 and saved["user"] == ann[0]
    assert saved["server"] == server.address
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # tightened, though it was 0644


def test_login_to_the_config_given_by_option_or_env(
        home: Path, server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_option = tmp_path / "a" / "ptt.toml"
    assert run("--config", str(by_option), "login", "--credentials",
               str(server.credentials)).exit_code == 0
    assert stat.S_IMODE(by_option.stat().st_mode) == 0o600
    by_env = tmp_path / "b.toml"
    monkeypatch.setenv("PTT_CONFIG", str(by_env))
    assert run("login", "--credentials", str(server.credentials)).exit_code == 0
    assert by_env.exists() and not xdg_config(home).exists()


def test_login_refused_saves_nothing(home: Path, server: ServerProcess, ann: tuple[str, str]
                                     ) -> None:
    proc = ptt("login", "--server", server.address, "--user", ann[0], "--token-stdin",
               input="wrong-token\n")
    assert proc.returncode == 3
    assert one_error_line(proc.stderr) == (
        f"error: login failed: wrong user or token (user '{ann[0]}' at {server.address}): "
        f"check the token, or ask a coordinator for a new one")
    port = closed_port()
    result = run("--timeout", "0.3", "login", "--server", f"127.0.0.1:{port}", "--user", ann[0],
                 "--token-stdin", input=ann[1])
    assert result.exit_code == 4 and f"nothing is listening at 127.0.0.1:{port}" in one_error_line(
        result.stderr)
    assert not xdg_config(home).exists()


def test_login_without_check_saves_offline(home: Path) -> None:
    port = closed_port()
    result = run("login", "--no-check", "--server", f"127.0.0.1:{port}", "--user", "bea",
                 "--token-stdin", input="some-token\n")
    assert result.exit_code == 0
    assert "Not checked" in result.stderr
    saved = tomllib.loads(xdg_config(home).read_text())
    assert (saved["server"], saved["user"], saved["token"]) == (
        f"127.0.0.1:{port}", "bea", "some-token")


def test_login_needs_user_and_token(home: Path) -> None:
    result = run("login", "--server", "127.0.0.1:7700", "--user", "bea")  # stdin: not a tty
    assert result.exit_code == 2 and "missing token" in result.stderr
    assert "--token-stdin" in result.stderr
    result = run("login", "--no-check", "--user", "bea", "--token-stdin", input="has space\n")
    assert result.exit_code == 2
    assert one_error_line(result.stderr) == (
        "error: Invalid value for '--token-stdin': invalid token: only printable ASCII without "
        "spaces is allowed")
    assert not xdg_config(home).exists()
