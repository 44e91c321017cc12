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


_MUTABLE_CALLS = ("dict", "list", "set", "defaultdict", "OrderedDict", "deque",
                  "WeakKeyDictionary", "WeakValueDictionary", "WeakSet")


def _mutable(value: ast.expr | None) -> bool:
    if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)):
        return True
    if isinstance(value, ast.Call):
        func = value.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        return name in _MUTABLE_CALLS
    return False


def test_the_keys_module_keeps_no_state_of_its_own() -> None:
    """No module-level container that connections could share (a registry by connection)."""
    tree = ast.parse(Path(keys_module.__file__).read_text(encoding="utf-8"))
    module_state = [ast.unparse(node)[:60] for node in tree.body
                    if isinstance(node, (ast.Assign, ast.AnnAssign)) and _mutable(node.value)
                    and "__all__" not in ast.unparse(node)]
    assert module_state == []


def test_the_check_sees_a_registry() -> None:
    src = "import weakref\n_reg = weakref.WeakKeyDictionary()\n_pins: dict[int, str] = {}\nX = 3\n"
    found = [n for n in ast.parse(src).body
             if isinstance(n, (ast.Assign, ast.AnnAssign)) and _mutable(n.value)]
    assert len(found) == 2
