"""The recording commands, ``ptt talk``, ``ptt call`` and ``ptt desktop`` each live in a module
of their own name in ptt.cli, and the desktop package, which the desktop command opens, does not
import the command line."""

from __future__ import annotations

import ast
from pathlib import Path

import click

import ptt
from ptt.cli.main import cli

PACKAGE = Path(ptt.__file__).parent
OWN_MODULE = ["record", "sessions", "export", "replay", "desktop", "talk", "call"]


def test_each_command_is_defined_in_its_own_module() -> None:
    ctx = click.Context(cli)
    for name in OWN_MODULE:
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.callback is not None
        assert command.callback.__module__ == f"ptt.cli.{name}", name
        tree = ast.parse((PACKAGE / "cli" / f"{name}.py").read_text())
        commands = [f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                    and any("command" in ast.unparse(d) for d in f.decorator_list)]
        assert commands == [name], (name, commands)


def test_the_desktop_package_does_not_import_the_command_line() -> None:
    found = []
    for path in sorted((PACKAGE / "desktop").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}: {n}" for n in names if n == "ptt.cli"
                      or n.startswith("ptt.cli.")]
    assert found == [], found
