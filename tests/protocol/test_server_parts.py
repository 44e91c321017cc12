"""The server core is composed of parts, not mixed in: each part is an object given the shared
state, the one outbox and the parts it calls, so every call between parts shows in the code."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import ptt.protocol
from ptt.protocol.server import ServerCore

PROTOCOL = Path(ptt.protocol.__file__).parent


def _parts(core: ServerCore) -> dict[str, Any]:
    return {"gate": core.gate, "directory": core.directory, "floor_control": core.floor_control,
            "relay": core.relay, "keys": core.keys, "feedback": core.feedback,
            "delivery": core.delivery, "paging": core.paging}


def test_the_server_core_and_its_parts_have_no_mixin_bases() -> None:
    assert ServerCore.__bases__ == (object,)
    core = ServerCore(os.urandom)
    for name, part in _parts(core).items():
        assert type(part).__bases__ == (object,), name
        # one state and one outbox, shared by every part
        assert part.state is core.state and part.out is core.outbox, name
    assert core.groups is core.state.groups and core.sessions is core.state.sessions
    assert core.floors is core.state.floors and core.pages is core.paging.pages


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def test_no_module_under_protocol_declares_methods_for_type_checking_only() -> None:
    """Stubs under ``if TYPE_CHECKING`` would hide calls between parts from the imports."""
    stubs = []
    for path in sorted(PROTOCOL.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                stubs += [f"{path.name}:{n.lineno} {n.name}" for n in ast.walk(node)
                          if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    assert stubs == []


def test_the_server_modules_import_each_other_without_a_cycle() -> None:
    """The parts' modules form a chain (server imports them all): no call goes back up."""
    modules = {p.stem: p for p in PROTOCOL.glob("server*.py")}
    assert {"server", "server_state", "server_outbox", "server_gate", "server_groups",
            "server_floor", "server_relay"} <= set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                dep = node.module.removeprefix("ptt.protocol.")
                if dep in modules:
                    deps.add(dep)
        graph[name] = deps
    done: set[str] = set()
    while len(done) < len(graph):
        ready = {n for n, deps in graph.items() if n not in done and deps <= done}
        assert ready, f"an import cycle among {sorted(set(graph) - done)}"
        done |= ready
