"""Shell completion of group and user names from the client's last view of them.

Completion runs on every Tab, so it must be instant and must work offline: it never contacts the
server. Commands that see names write them to a small cache instead, and completion reads it::

    $XDG_CACHE_HOME/ptt/names.json     {"groups": [...], "users": [...]}   (mode 0600)

``ptt group list`` and ``ptt user list`` see the whole list the server lets this user see, so
they replace that list; ``group show`` and joining a group (talk, listen, desktop...) add the group
and its members. Writing the cache is best effort: a read-only home never fails a command.

Turning completion on (bash; zsh and fish have the same with ``zsh_source`` / ``fish_source``)::

    eval "$(_PTT_COMPLETE=bash_source ptt)"        # e.g. in ~/.bashrc
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ptt.config import APP, cache_home, write_private
from ptt.errors import PttError

__all__ = ["cache_path", "known_names", "matching", "remember", "remember_answer"]

log = logging.getLogger(__name__)

CACHE_FILE = "names.json"
MAX_NAMES = 20_000  # per kind: a directory of an event's volunteers, not unbounded growth
KINDS = ("groups", "users")


def cache_path(env: Mapping[str, str] | None = None) -> Path:
    return cache_home(env) / APP / CACHE_FILE


def _load() -> dict[str, list[str]]:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {k: [] for k in KINDS}
    if not isinstance(data, dict):
        return {k: [] for k in KINDS}
    return {k: [n for n in data.get(k, []) if isinstance(n, str)] for k in KINDS}


def known_names(kind: str) -> list[str]:
    """The ``groups`` or ``users`` of the last view, sorted; empty when none was written."""
    return _load()[kind]


def remember(*, groups: Iterable[str] = (), users: Iterable[str] = (),
             all_groups: bool = False, all_users: bool = False) -> None:
    """Add names to the cache; ``all_*``: these are the whole list, replacing the old one."""
    data = _load()
    for kind, names, whole in (("groups", groups, all_groups), ("users", users, all_users)):
        names = {n for n in names if isinstance(n, str) and n}
        merged = names if whole else set(data[kind]) | names
        data[kind] = sorted(merged)[:MAX_NAMES]
    try:
        write_private(cache_path(), json.dumps(data, ensure_ascii=False).encode("utf-8"))
    except PttError as exc:
        log.debug("names for completion not cached: %s", exc)


def remember_answer(op: str, result: Mapping[str, Any]) -> None:
    """What an admin answer shows of the names (``group.list``, ``group.show``, ``user.list``)."""
    try:
        if op == "group.list":
            remember(groups=[g["name"] for g in result["groups"]], all_groups=True)
        elif op == "group.show":
            remember(groups=[result["name"]], users=[m["user"] for m in result["members"]])
        elif op == "user.list":
            remember(users=[u["name"] for u in result["users"]], all_users=True)
    except (KeyError, TypeError):
        pass  # an answer of another shape: nothing to learn from it


def matching(kind: str, incomplete: str) -> list[str]:
    """Cached names that start with what was typed, compared case-insensitively."""
    typed = incomplete.casefold()
    return [n for n in known_names(kind) if n.casefold().startswith(typed)]
