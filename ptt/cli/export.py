"""``ptt export``: decode a recording to WAV and print who talked when (see :mod:`ptt.record`).

A damaged recording (a file cut short, a corrupted page, a broken log line) never stops it: it
exports everything readable, then exits 1 with ``error: damaged recording: <file>: <problem>``
(further problems as ``warning:`` lines above it).
"""

from __future__ import annotations

from pathlib import Path

import click

from ptt.cli.options import EXISTING_PATH, SECONDS
from ptt.cli.output import fail_if_damaged

__all__ = ["export"]


@click.command()
@click.argument("path", type=EXISTING_PATH, metavar="FILE|DIR")
@click.option("--wav", "out", required=True, metavar="OUT.wav",
              type=click.Path(dir_okay=False, path_type=Path), help="The WAV file to write.")
@click.option("--max-gap", type=SECONDS, metavar="SECONDS",
              help="Shorten silences between bursts to at most this.")
@click.option("--rate", type=click.Choice(["8000", "12000", "16000", "24000", "48000"]),
              default="16000", show_default=True, help="Sample rate of the WAV.")
def export(path: Path, out: Path, max_gap: float | None, rate: str) -> None:
    """Decode a recording (one group directory, or one Ogg Opus file) to WAV and print who
    talked when.

    \b
    Examples:
        ptt export ./recordings/volunteers --wav session.wav
        ptt export ./recordings/volunteers --wav short.wav --max-gap 2s
    """
    from ptt.record.export import export_wav, format_timeline

    result = export_wav(path, out, sample_rate=int(rate), max_gap=max_gap)
    if result.timeline:
        click.echo(format_timeline(result))
    click.echo(f"wrote {out} ({result.duration:.2f} s, {len(result.timeline)} bursts)")
    fail_if_damaged(result.problems, f"the readable part was exported to {out}")
