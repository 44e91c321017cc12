"""Printing: aligned tables for people, JSON for scripts.

Results go to stdout and nothing else does: messages, hints and logs go to stderr, so that
``ptt group list --json | jq`` and ``ptt user add ann | tail -1`` see only the result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import click

from ptt.errors import RecordingError
from ptt.textwidth import display_width, ljust

NONE = "-"  # an empty cell: visible, so columns stay readable and `awk` keeps its field count


def emit_json(data: Any) -> None:
    """One JSON document on stdout, keys in the server's order, UTF-8 kept readable."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def yes_no(value: object) -> str:
    return "yes" if value else "no"


def cell(value: object) -> str:
    if value is None or value == "" or value == []:
        return NONE
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns padded to their widest cell, two spaces apart, no trailing blanks.

    Widths are terminal cells, not characters: a name in Chinese takes two cells a character.
    """
    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [display_width(h) for h in headers]
    for row in text_rows:
        widths = [max(w, display_width(c)) for w, c in zip(widths, row)]
    lines = []
    for row in [list(headers), *text_rows]:
        lines.append("  ".join(ljust(c, w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, object]]) -> str:
    """``Label  value`` lines, labels padded to the longest one."""
    width = max(display_width(label) for label, _ in pairs)
    return "\n".join(f"{ljust(label, width)}  {cell(value)}".rstrip() for label, value in pairs)


def seconds(ms: int | float) -> str:
    return f"{ms / 1000:g} s"


def note(message: str) -> None:
    """A message for the person, not for the pipe."""
    click.echo(message, err=True)


def fail_if_damaged(problems: list[str], done: str) -> None:
    """Exit 1 naming a recording's first problem, after the readable part was ``done`` (the
    further problems as ``warning:`` lines above it); nothing when there is none."""
    if not problems:
        return
    for p in problems[1:]:
        click.echo(f"warning: {p}", err=True)
    more = f" (and {len(problems) - 1} more, above)" if len(problems) > 1 else ""
    raise RecordingError(f"damaged recording: {problems[0]}{more}; {done}")
