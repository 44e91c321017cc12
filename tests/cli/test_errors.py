"""Every CLI error is one line on stderr with a fixed exit code, never a traceback.

The cases run ``ptt`` as a subprocess, as a user would; the handler's rare paths (internal
error, Ctrl-C) are forced in-process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ptt.cli import remote
from ptt.errors import PttError
from ptt.protocol import messages as m
from tests.cli.conftest import PTT, ServerProcess, closed_port, one_error_line, ptt, run


@pytest.fixture
def volunteer(coordinator: Path, uniq: str) -> tuple[str, str]:
    """A volunteer account on the shared server: (name, token)."""
    result = run("user", "add", f"{uniq}-vol", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    return data["name"], data["token"]


def fails(args: list[str], code: int, *expected: str, env: dict[str, str] | None = None,
          as_process: bool = True) -> str:
    """Run ``ptt ARGS``: it must exit ``code`` with one stderr line holding each ``expected``.

    One case per kind of error runs the console script; variants run in-process (same handler,
    a second less each).
    """
    if as_process:
        proc = ptt(*args, env=env)
        returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    else:
        assert env is None
        result = run(*args)
        returncode, stdout, stderr = result.exit_code, result.stdout, result.stderr
    assert returncode == code, (returncode, stdout, stderr)
    assert stdout == ""
    line = one_error_line(stderr)
    assert line.startswith("error: "), line
    for text in expected:
        assert text in line, line
    return line


def test_server_unreachable(coordinator: Path) -> None:
    port = closed_port()
    t0 = time.monotonic()
    line = fails(["group", "list", "--server", f"127.0.0.1:{port}"], 4,
                 f"127.0.0.1:{port}", "is 'ptt server' running")
    assert line == (f"error: nothing is listening at 127.0.0.1:{port} (connection refused): "
                    f"is 'ptt server' running at 127.0.0.1:{port}?")
    assert time.monotonic() - t0 < 4.0  # told at once, not after the 6 s timeout


def test_server_silent(coordinator: Path) -> None:
    # a port that swallows datagrams (bound, never answers): the timeout is what tells
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        port = sink.getsockname()[1]
        line = fails(["--timeout", "0.5", "group", "list", "--server", f"127.0.0.1:{port}"], 4,
                     f"127.0.0.1:{port} did not answer", "is 'ptt server' running")
    assert line == (f"error: server at 127.0.0.1:{port} did not answer (after 0.5 s): "
                    f"is 'ptt server' running at 127.0.0.1:{port}?")


def test_wrong_token(coordinator: Path) -> None:
    env = dict(os.environ, PTT_TOKEN="not-the-right-token")
    fails(["group", "list"], 3, "login failed: wrong user or token", "user 'coordinator'",
          env=env)


def test_unknown_group(coordinator: Path, uniq: str) -> None:
    fails(["group", "show", f"{uniq}-nope"], 1, f"error: unknown group '{uniq}-nope'")
    fails(["group", "delete", f"{uniq}-nope"], 1, f"unknown group '{uniq}-nope'",
          as_process=False)


def test_unknown_user(coordinator: Path, uniq: str) -> None:
    assert run("group", "create", f"{uniq}-g").exit_code == 0
    fails(["group", "add", f"{uniq}-g", f"{uniq}-nobody"], 1,
          f"error: unknown user '{uniq}-nobody'")
    fails(["user", "remove", f"{uniq}-nobody"], 1, f"unknown user '{uniq}-nobody'",
          as_process=False)


def test_not_a_coordinator(volunteer: tuple[str, str], uniq: str) -> None:
    name, token = volunteer
    env = dict(os.environ, PTT_USER=name, PTT_TOKEN=token)
    line = fails(["group", "create", f"{uniq}-g"], 3, env=env)
    assert line == (f"error: permission denied: not a coordinator ('{name}' cannot run "
                    f"'ptt group create')")
    assert run("group", "show", f"{uniq}-g").exit_code == 1  # nothing was created


def test_name_taken(coordinator: Path, uniq: str) -> None:
    assert run("group", "create", f"{uniq}-g").exit_code == 0
    fails(["group", "create", f"{uniq}-G"], 1, f"error: group '{uniq}-g' already exists")
    assert run("user", "add", f"{uniq}-u").exit_code == 0
    fails(["user", "add", f"{uniq}-u"], 1, f"error: user '{uniq}-u' already exists",
          as_process=False)


@pytest.mark.parametrize("args, expected", [
    (["group", "create", "bad/name"], "invalid group name 'bad/name'"),
    (["user", "add", "-x"], "No such option '-x'"),
    (["user", "add", "a" * 33], "33 characters, at most 32"),
    (["group", "add", "ok", "ann", "b@d"], "invalid user name 'b@d'"),
    (["user", "add", "zed", "--role", "boss"], "invalid role 'boss'"),
])
def test_invalid_names_and_values_never_reach_the_server(
        args: list[str], expected: str, home: Path) -> None:
    # no login config and no server: the value is refused first
    if args[:2] == ["group", "create"]:
        proc = ptt(*args)
        code, stderr = proc.returncode, proc.stderr
    else:
        result = run(*args)
        code, stderr = result.exit_code, result.stderr
    assert code == 2
    assert expected in stderr and "Traceback" not in stderr
    if "No such option" not in expected:  # click's usage errors keep click's usage block
        assert one_error_line(stderr).startswith("error: Invalid value for ")


@pytest.mark.parametrize("value, expected", [
    ("0", "'0': expected more than 0 s and at most 3600 s"),
    ("-5", "'-5' is not a duration"),
    ("2h", "'2h' is not a duration"),
    ("3601", "'3601': expected more than 0 s and at most 3600 s"),
    ("soon", "'soon' is not a duration"),
])
def test_bad_max_talk(value: str, expected: str, home: Path) -> None:
    line = fails(["group", "create", "g", f"--max-talk={value}"], 2, expected,
                 as_process=value == "0")
    assert line.startswith("error: Invalid value for '--max-talk': ")


def test_missing_login_config(home: Path, server: ServerProcess) -> None:
    fails(["group", "list", "--server", server.address], 2, "no user configured",
          "run 'ptt login --server HOST:PORT --user NAME' (it asks for the token)")


def test_missing_named_config_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = home / "nowhere.toml"
    fails(["--config", str(missing), "user", "list"], 2, f"config file not found: {missing}",
          as_process=False)
    monkeypatch.setenv("PTT_CONFIG", str(missing))
    fails(["user", "list"], 2, f"config file not found: {missing}", as_process=False)


def test_usage_errors_keep_clicks_format(home: Path) -> None:
    proc = ptt("group", "frobnicate")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Usage: ptt group [OPTIONS] COMMAND [ARGS]...")
    assert "Error: No such command 'frobnicate'." in proc.stderr
    missing = run("group", "add", "g")
    assert missing.exit_code == 2 and "Missing argument 'USERS...'" in missing.stderr


def test_internal_error_is_one_line_unless_debugging(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> dict[str, object]:
        raise KeyError("surprise")

    monkeypatch.setattr(remote, "admin", boom)
    result = run("group", "list")
    assert result.exit_code == 70
    assert one_error_line(result.stderr) == ("internal error: KeyError: 'surprise' "
                                             "(run with PTT_DEBUG=1 for details)")
    monkeypatch.setenv("PTT_DEBUG", "1")
    result = run("group", "list")
    assert result.exit_code == 70
    assert "Traceback (most recent call last)" in result.stderr and "boom" in result.stderr
    assert result.stderr.splitlines()[-1] == "internal error: KeyError: 'surprise'"


def test_ctrl_c_exits_130_silently(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object) -> dict[str, object]:
        raise KeyboardInterrupt

    monkeypatch.setattr(remote, "admin", interrupted)
    result = run("user", "list")
    assert result.exit_code == 130
    assert result.stderr.strip() == "" and result.stdout == ""


def _as_from_a_shell() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


def test_sigint_while_waiting_for_the_server(coordinator: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # a server that never answers
        silent.bind(("127.0.0.1", 0))
        silent.settimeout(15)
        # ptt starts as from a shell, Ctrl-C neither ignored nor blocked, whatever this test
        # process inherited or was left with (both pass on to a child through exec)
        print("this process: SIGINT", signal.getsignal(signal.SIGINT), "blocked",
              signal.pthread_sigmask(signal.SIG_BLOCK, []))
        proc = subprocess.Popen(
            [PTT, "user", "list", "--server", "127.0.0.1:%d" % silent.getsockname()[1]],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_shell)
        # its login (a Hello naming the coordinator): it is now waiting for an answer. Other
        # datagrams are strays: the port is an ephemeral one, and a client of another test may
        # still retransmit to a server that had it before
        while True:
            data, _ = silent.recvfrom(2048)
            try:
                msg = m.decode_message(data)
            except PttError:
                continue
            if isinstance(msg, m.Hello) and msg.user == "coordinator":
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)  # a hang guard: ~0.2 s on a quiet machine
    assert proc.returncode == 130, err
    assert out == "" and err.strip() == ""  # click ends the ^C line; nothing else
