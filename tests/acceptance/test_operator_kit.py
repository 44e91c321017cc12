"""The operator's kit, run as an operator runs it: ``python -m ptt``, the sample server.toml, the
systemd unit's command line, ``ptt server --check-config``, shell completion."""

from __future__ import annotations

import configparser
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from tests.acceptance.harness import (
    COORDINATOR,
    PTT,
    Site,
    clean_env,
    no_traceback,
    read_until,
    signal_and_time,
)
from tests.e2e.serverproc import free_udp_port

ROOT = Path(__file__).resolve().parents[2]


def python_m_ptt(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ptt", *args], capture_output=True, text=True,
                          timeout=30, env=clean_env(home, **env), stdin=subprocess.DEVNULL,
                          cwd=home, check=False)


def test_python_m_ptt_is_the_ptt_command(site: Site, tmp_path: Path) -> None:
    version = python_m_ptt("--version", home=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("ptt "), version
    bad = python_m_ptt("group", "create", "a/b", home=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    # a real command against the server, as the coordinator
    listed = python_m_ptt("user", "list", home=tmp_path,
                          PTT_CONFIG=str(site.config(COORDINATOR)))
    assert listed.returncode == 0, listed.stderr
    assert COORDINATOR in listed.stdout


def test_pyproject_license_is_an_spdx_string() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "MIT"
    # setuptools reads the SPDX string from 77 on; older ones took only the deprecated table
    assert "setuptools>=77" in project["build-system"]["requires"]


# --- ptt server --check-config ----------------------------------------------------------------


def _ptt(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PTT, *args], capture_output=True, text=True, timeout=30,
                          env=clean_env(home, **env), stdin=subprocess.DEVNULL, check=False)


def test_check_config_prints_the_settings_in_force_and_exits(tmp_path: Path) -> None:
    conf = tmp_path / "server.toml"
    conf.write_text('heartbeat_interval = 2.0\nsession_timeout = 9\nport = 7711\n'
                    'emergency_roles = ["dispatcher"]\n', encoding="utf-8")
    t0 = time.monotonic()
    ok = _ptt("server", "--config", str(conf), "--check-config", "--host", "0.0.0.0",
              home=tmp_path, PTT_SERVER_PORT="7712")
    assert ok.returncode == 0, ok.stderr
    assert time.monotonic() - t0 < 10  # it checks; it does not serve
    shown = tomllib.loads(ok.stdout)  # the output is itself a valid server.toml
    assert shown["host"] == "0.0.0.0"  # option over env over file over default
    assert shown["port"] == 7712
    assert shown["heartbeat_interval"] == 2.0 and shown["session_timeout"] == 9.0
    assert shown["emergency_roles"] == ["dispatcher"]
    assert shown["db"] == str(tmp_path / ".local/share/ptt/ptt.db")
    assert "# metrics: off" in ok.stdout
    assert not (tmp_path / ".local/share/ptt/ptt.db").exists()  # nothing created

    sample = _ptt("server", "--config", str(ROOT / "examples/server.toml"), "--check-config",
                  home=tmp_path)
    assert sample.returncode == 0, sample.stderr

    # one refusal through the console script; the others in tests/cli/test_check_config.py
    bad = _ptt("server", "--config", str(conf), "--check-config", home=tmp_path,
               PTT_SERVER_SESSION_TIMEOUT="1.5")
    assert bad.returncode == 2 and bad.stdout == "", bad
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), bad.stderr
    assert "session_timeout (1.5 s) must exceed heartbeat_interval (2 s)" in lines[0]


# --- the systemd unit -------------------------------------------------------------------------

UNIT = ROOT / "examples" / "ptt-server.service"
UNIT_PYTHON = "/opt/ptt/.venv/bin/python"


def _unit() -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return {name: dict(parser[name]) for name in parser.sections()}


def test_the_systemd_unit_restarts_on_failure_stops_by_sigterm_and_keeps_state() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert service["StateDirectory"] == "ptt"
    assert service["RestartPreventExitStatus"] == "2"  # a bad config is not retried
    assert "143" in service["SuccessExitStatus"].split()
    assert service["ExecStart"] == f"{UNIT_PYTHON} -m ptt server --db %S/ptt/ptt.db"
    assert service["ExecStartPre"].endswith("-m ptt server --check-config --db %S/ptt/ptt.db")
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax is not checked here")
    local = tmp_path / "ptt-server.service"
    local.write_text(UNIT.read_text(encoding="utf-8").replace(UNIT_PYTHON, sys.executable),
                     encoding="utf-8")
    verify = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr


def _as_systemd_would(line: str, state: Path) -> list[str]:
    return shlex.split(line.replace("%S", str(state)).replace(UNIT_PYTHON, sys.executable))


def test_the_units_commands_run_a_server_with_its_state_under_the_state_directory(
        tmp_path: Path) -> None:
    service = _unit()["Service"]
    state, etc = tmp_path / "var-lib", tmp_path / "etc"
    (state / "ptt").mkdir(parents=True)
    (etc / "ptt").mkdir(parents=True)
    env = clean_env(tmp_path / "nohome", PTT_SERVER_PORT=str(free_udp_port()))
    for assignment in shlex.split(service["Environment"]):
        key, _, value = assignment.partition("=")
        env[key] = value.replace("%S", str(state)).replace("/etc", str(etc))
    pre = subprocess.run(_as_systemd_would(service["ExecStartPre"], state), capture_output=True,
                         text=True, timeout=30, env=env, check=False)
    assert pre.returncode == 0, pre.stderr
    assert tomllib.loads(pre.stdout)["db"] == str(state / "ptt" / "ptt.db")
    assert tomllib.loads(pre.stdout)["record_dir"] == str(state / "ptt" / "recordings")

    proc = subprocess.Popen(_as_systemd_would(service["ExecStart"], state), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        read_until(proc, "listening", timeout=20, stream="stderr")
        assert (state / "ptt" / "ptt.db").exists()
        assert (state / "ptt" / "coordinator.toml").exists()  # the credentials, beside the db
    finally:
        code, seconds, _, err = signal_and_time(proc, signal.SIGTERM, bound=15)
    assert code in (0, 143), err  # SuccessExitStatus: both are a clean stop
    assert seconds < float(service["TimeoutStopSec"])
    no_traceback(err)


# --- shell completion -------------------------------------------------------------------------


def _complete(site: Site, user: str, words: str) -> tuple[list[str], float]:
    """What bash completion offers for the last word of ``words``, and how long it took."""
    parts = words.split(" ")
    t0 = time.monotonic()
    proc = subprocess.run([PTT], capture_output=True, text=True, timeout=30, check=False,
                          env=site.env(user, _PTT_COMPLETE="bash_complete", COMP_WORDS=words,
                                       COMP_CWORD=str(len(parts) - 1)))
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc.stderr)
    offered = [line.partition(",")[2] for line in proc.stdout.splitlines()]
    return [name for name in offered if name], time.monotonic() - t0


@pytest.mark.slow
def test_completion_offers_group_and_user_names_from_the_last_view_offline(site: Site) -> None:
    source = site.ptt("ann", "--version", env=site.env("ann", _PTT_COMPLETE="bash_source"))
    assert "_ptt_completion" in source.stdout and "complete " in source.stdout

    site.add_user("ann")
    site.ptt(COORDINATOR, "user", "add", "张伟", check=True)
    site.group("volunteers", "ann", "张伟")
    site.group("志愿者", "张伟")
    assert _complete(site, "ann", "ptt talk v")[0] == []  # nothing seen yet: nothing offered
    site.ptt("ann", "group", "show", "volunteers", check=True)
    site.ptt(COORDINATOR, "user", "list", check=True)
    site.ptt(COORDINATOR, "group", "list", check=True)
    cache = site.home("ann") / ".cache" / "ptt" / "names.json"
    assert cache.stat().st_mode & 0o777 == 0o600
    site.stop()  # completion never asks the server: it works with none running
    # ... and never tries: whatever it sent to the server's address would land here
    watch = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    watch.bind(("127.0.0.1", site.server.port))
    watch.setblocking(False)

    offered, took = _complete(site, "ann", "ptt talk v")
    assert offered == ["volunteers"]
    with pytest.raises(BlockingIOError):
        watch.recv(2048)
    watch.close()
    # no network wait (a server query would wait out --timeout 6 s); what remains is the
    # start of one ptt process, ~0.3 s idle and up to 6 s on this VM at load 30
    assert took < 6.0
    assert _complete(site, "ann", "ptt call 张")[0] == ["张伟"]
    assert _complete(site, COORDINATOR, "ptt listen 志")[0] == ["志愿者"]
    assert _complete(site, COORDINATOR, "ptt group add volunteers A")[0] == ["ann"]
