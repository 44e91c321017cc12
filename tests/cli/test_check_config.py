"""``ptt server --check-config`` refusals, in-process (the console script runs one of them in
tests/acceptance/test_operator_kit.py): exit 2, one line, nothing on stdout."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import one_error_line, run


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["--config", "{conf}"], {"PTT_SERVER_SESSION_TIMEOUT": "1.5"},
     "session_timeout (1.5 s) must exceed heartbeat_interval (2 s)"),
    (["--config", "{tmp}/missing.toml"], {}, "config file not found"),
    ([], {"PTT_SERVER_MULTICAST_TTL": "300"}, "PTT_SERVER_MULTICAST_TTL: expected 0-255"),
    (["--db", "{tmp}"], {}, "is a directory"),
    (["--metrics", "host:99999"], {}, "invalid"),
])
def test_a_bad_setting_is_one_line_and_exit_2(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        args: list[str], env: dict[str, str], needle: str) -> None:
    conf = tmp_path / "server.toml"
    conf.write_text("heartbeat_interval = 2.0\nsession_timeout = 9\n", encoding="utf-8")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    args = [a.format(conf=conf, tmp=tmp_path) for a in args]
    result = run("server", *args, "--check-config")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    line = one_error_line(result.stderr)
    assert line.startswith("error: ") and needle in line, line


def test_a_record_dir_that_is_a_file_is_named(home: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    taken = tmp_path / "recordings"
    taken.write_text("not a directory", encoding="utf-8")
    result = run("server", "--check-config", "--db", str(tmp_path / "ptt.db"))
    assert result.exit_code == 0, result.stderr
    monkeypatch.setenv("PTT_SERVER_RECORD_DIR", str(taken))
    result = run("server", "--check-config", "--db", str(tmp_path / "ptt.db"))
    assert result.exit_code == 2
    assert f"record_dir: {taken} is not a directory" in one_error_line(result.stderr)


def test_the_record_dir_variable_sets_where_flagged_groups_go_not_record_everything(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTT_SERVER_RECORD_DIR", str(tmp_path / "rec"))
    result = run("server", "--check-config", "--db", str(tmp_path / "ptt.db"))
    assert result.exit_code == 0, result.stderr
    assert f'record_dir = "{tmp_path / "rec"}"' in result.stdout
    assert "every group is recorded" not in result.stdout
    result = run("server", "--check-config", "--db", str(tmp_path / "ptt.db"),
                 "--record", str(tmp_path / "all"))
    assert f'record_dir = "{tmp_path / "all"}"' in result.stdout
    assert "# --record: every group is recorded into record_dir" in result.stdout
