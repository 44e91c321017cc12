"""A connection's group keys and in-memory pins live on the connection, not in a registry."""

from __future__ import annotations

import ast
from pathlib import Path

import ptt.client.keys as keys_module
from ptt.client.connection import Connection
from ptt.client.keys import VoiceKeys


def _conn(user: str) -> Connection:
    return Connection(("127.0.0.1", 9), user, "token-of-" + user + "-0123456789abcdef")


def test_each_connection_has_its_own_keys_made_once(tmp_path: Path) -> None:
    ann, bob = _conn("ann"), _conn("bob")
    first = VoiceKeys.of(ann, tmp_path / "pins.toml")
    assert VoiceKeys.of(ann) is first and ann.attached[VoiceKeys] is first
    assert VoiceKeys.of(bob, tmp_path / "pins.toml") is not first


def test_the_keys_module_keeps_no_state_of_its_own() -> None:
    tree = ast.parse(Path(keys_module.__file__).read_text(encoding="utf-8"))
    module_state = [ast.unparse(node)[:60] for node in tree.body
                    if isinstance(node, (ast.Assign, ast.AnnAssign))
                    and "Dictionary" in ast.unparse(node)]
    assert module_state == []
