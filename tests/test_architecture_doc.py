"""docs/architecture.md names real modules and, after a module, real names in it: the walks stay
true when code moves."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
# `pkg/module`, optionally followed by `Name` or `Name.attribute`
MENTION = re.compile(r"`([a-z]+)/([a-z_]+)`(?:\s+`([A-Za-z_][\w.]*)`)?")


def _resolve(module: object, dotted: str) -> bool:
    head, _, rest = dotted.partition(".")
    obj = getattr(module, head, None)
    if obj is None:  # a method named without its class: look in the module's classes
        owners = [c for _, c in inspect.getmembers(module, inspect.isclass)
                  if c.__module__ == getattr(module, "__name__", "") and hasattr(c, head)]
        return bool(owners) and not rest
    for part in rest.split(".") if rest else ():
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return True


def test_every_module_and_name_the_walks_mention_exists() -> None:
    mentions = MENTION.findall(DOC.read_text())
    assert len(mentions) > 40, "the walks name the modules they pass through"
    missing = []
    for package, name, attr in mentions:
        path = ROOT / "ptt" / package / f"{name}.py"
        if not path.exists():
            missing.append(f"{package}/{name}")
            continue
        if attr and not _resolve(importlib.import_module(f"ptt.{package}.{name}"), attr):
            missing.append(f"{package}/{name} {attr}")
    assert missing == []
