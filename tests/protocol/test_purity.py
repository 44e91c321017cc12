"""ptt/protocol is sans-I/O: it must not import anything that does I/O, reads clocks or draws randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import ptt.protocol

FORBIDDEN = {"asyncio", "socket", "threading", "time", "random", "selectors", "subprocess", "sqlite3"}
PROTOCOL_DIR = Path(ptt.protocol.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_protocol_package_imports_no_io_clock_or_randomness() -> None:
    files = sorted(PROTOCOL_DIR.glob("*.py"))
    assert len(files) >= 6, "the protocol package should hold the wire, floor, session and cores"
    offenders = {f.name: sorted(imported_modules(f) & FORBIDDEN) for f in files}
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}, f"sans-I/O rule broken: {offenders}"


def test_the_checker_itself_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom time import monotonic\nimport asyncio.events\n")
    assert imported_modules(bad) & FORBIDDEN == {"time", "asyncio"}
