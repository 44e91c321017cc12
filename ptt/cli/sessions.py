"""``ptt sessions``: list the recordings in a directory (see :mod:`ptt.record`).

A damaged recording (a file cut short, a corrupted page, a broken log line) never stops it: it lists
everything readable, then exits 1 with ``error: damaged recording: <file>: <problem>`` (further
problems as ``warning:`` lines above it).
"""

from __future__ import annotations

from pathlib import Path

import click

from ptt.cli.options import EXISTING_PATH
from ptt.cli.output import fail_if_damaged
from ptt.errors import RecordingError

__all__ = ["sessions"]


@click.command()
@click.argument("path", type=EXISTING_PATH, metavar="DIR|FILE")
@click.option("-l", "--bursts", is_flag=True, help="List every burst of each session too.")
def sessions(path: Path, bursts: bool) -> None:
    """List the recordings under DIR: group, start, duration, talk time, bursts, talkers.

    \b
    Examples:
        ptt sessions ./recordings
        ptt sessions ./recordings/volunteers --bursts
    """
    from ptt.record.catalog import format_sessions, scan

    found = scan(path)
    if not found:
        raise RecordingError(f"{path}: no recordings here")
    click.echo(format_sessions(found, verbose=bursts))
    problems = [p for s in found for p in s.all_problems()]
    fail_if_damaged(problems, "the readable part is listed above")
