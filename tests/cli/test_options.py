"""Parameter types, table layout, help and version: no server needed."""

from __future__ import annotations

import click
import pytest

from ptt.cli import output
from ptt.cli.main import cli
from ptt.cli.options import GROUP, HOSTPORT, ROLE, SECONDS, USER, SecondsType
from tests.cli.conftest import run


@pytest.mark.parametrize("text, seconds", [
    ("20", 20.0), ("20s", 20.0), ("1.5", 1.5), (" 2 m ", 120.0), ("500ms", 0.5), ("1MIN", 60.0),
    (".25s", 0.25),
])
def test_seconds(text: str, seconds: float) -> None:
    assert SECONDS.convert(text, None, None) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1", "1e3", "2h", "1.2.3", "nan", "inf"])
def test_seconds_refused(text: str) -> None:
    with pytest.raises(click.BadParameter):
        SECONDS.convert(text, None, None)


def test_seconds_upper_bound() -> None:
    limited = SecondsType(maximum=60)
    assert limited.convert("1m", None, None) == 60.0
    with pytest.raises(click.BadParameter, match="at most 60 s"):
        limited.convert("61", None, None)


def test_names_roles_addresses() -> None:
    assert USER.convert("Ann.B-1", None, None) == "ann.b-1"
    assert GROUP.convert("Volunteers", None, None) == "volunteers"
    assert ROLE.convert("DISPATCHER", None, None) == "dispatcher"
    assert HOSTPORT.convert("[::1]:7701", None, None) == ("::1", 7701)
    assert HOSTPORT.convert("Example.org", None, None) == ("example.org", 7700)
    for kind, bad in ((USER, "call:a+b"), (GROUP, "x" * 33), (ROLE, "admin"),
                      (HOSTPORT, "host:99999")):
        with pytest.raises(click.BadParameter):
            kind.convert(bad, None, None)


def test_table_aligns_columns() -> None:
    text = output.table(("NAME", "N", "WHO"), [("a", 10, None), ("longer", 2, ["x", "y"])])
    assert text.splitlines() == [
        "NAME    N   WHO",
        "a       10  -",
        "longer  2   x, y",
    ]


def test_table_aligns_wide_characters_by_terminal_cells() -> None:
    from ptt.textwidth import display_width

    rows = [("\u5f20\u4f1f", "volunteer"), ("zoe\u0308", "volunteer"), ("ann", "coordinator")]
    text = output.table(("NAME", "ROLE"), rows)  # 张伟: 2 characters, 4 cells; zoë decomposed
    lines = text.splitlines()
    assert lines[1] == "\u5f20\u4f1f  volunteer"
    assert lines[2] == "zoe\u0308   volunteer"
    # every ROLE column starts at the same terminal cell
    starts = {display_width(line[: line.index(role)]) for line, role in
              zip(lines, ("ROLE", "volunteer", "volunteer", "coordinator"))}
    assert starts == {6}
    assert output.fields([("\u7ec4", 1), ("GROUP", 2)]).splitlines() == [
        "\u7ec4     1", "GROUP  2"]


def test_every_command_has_help() -> None:
    ctx = click.Context(cli)

    def walk(cmd: click.Command, path: list[str]) -> list[list[str]]:
        paths = [path]
        if isinstance(cmd, click.Group):  # as click finds them: the top level loads them lazily
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None, name
                paths += walk(sub, [*path, name])
        return paths

    paths = walk(cli, [])
    assert ["group", "show"] in paths and ["user", "add"] in paths and ["login"] in paths
    for path in paths:
        result = run(*path, "--help")
        assert result.exit_code == 0 and result.stdout.startswith("Usage: ptt"), path


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.startswith("ptt ")
