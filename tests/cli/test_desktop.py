"""``ptt desktop`` as a click command."""

from __future__ import annotations

import click
from click.testing import CliRunner

from ptt.cli.desktop import desktop


def test_desktop_command_help_and_options() -> None:
    assert isinstance(desktop, click.Command) and desktop.name == "desktop"
    out = CliRunner().invoke(desktop, ["--help"])
    assert out.exit_code == 0
    assert "--group" in out.output and "--server" in out.output and "--config" in out.output
    bad = CliRunner().invoke(desktop, ["--group", "g" * 33])  # longer than a name may be
    assert bad.exit_code == 2
