"""``ptt record``: a member that records what it hears of a group.

A recording directory holds one directory per group: ``events.jsonl`` beside one Ogg Opus file per
burst (see :mod:`ptt.record`). The server writes them (``ptt server --record DIR``, or groups
made with ``--record``); so does ``ptt record GROUP --out DIR``, a member that records what it
hears. ``ptt sessions``, ``ptt export`` and ``ptt replay`` read them.

Encrypted groups: ``ptt record`` stores the voice it can open with its member's group key (the
files are plain Ogg Opus: keep them as private as the token).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ptt.cli.live import StopSignals, stamp
from ptt.cli.options import GROUP, SECONDS, CliState, client_options, pass_state
from ptt.cli.remote import client_config, connect
from ptt.client import keys
from ptt.errors import RecordingError

if TYPE_CHECKING:
    from ptt.record.recorder import BurstSummary

__all__ = ["record"]


@click.command()
@click.argument("group_name", metavar="GROUP", type=GROUP)
@click.option("--out", "out_dir", required=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Recording directory (the group's files go to DIR/GROUP/, or DIR/SLUG+ID/ "
              "for a name that is not plain ASCII).")
@click.option("--duration", type=SECONDS, metavar="SECONDS",
              help="Stop after this long  [default: until Ctrl-C or SIGTERM]")
@client_options
@pass_state
def record(state: CliState, group_name: str, out_dir: Path, duration: float | None) -> None:
    """Record GROUP as a member hears it: voice as received, and the floor events seen.

    The configured user must be a member of GROUP (listen-only is enough). Each burst is an
    Ogg Opus file in DIR/GROUP/, beside events.jsonl. Works on relay and multicast groups.

    \b
    Examples:
        ptt record volunteers --out ./recordings
        ptt record volunteers --out ./recordings --duration 1h
    """
    asyncio.run(_record(state, group_name, out_dir, duration))


async def _record(state: CliState, group: str, out_dir: Path, duration: float | None) -> None:
    from ptt.client.pages import page_device
    from ptt.client.recorder import GroupRecorder

    config = client_config(state)
    conn, _ = await connect(config, state.timeout)
    try:
        def show(b: BurstSummary) -> None:
            lost = f", {b.lost} lost" if b.lost else ""
            click.echo(f"{stamp()}  {group}  {b.talker} burst {b.burst_id}: "
                       f"{b.duration:.2f} s{lost} -> {b.path.name}")

        voice_keys = keys.VoiceKeys.of(conn, keys.pins_path(keys.SIGNER_PINS,
                                                            state.config_path))
        recorder = GroupRecorder(conn, group, out_dir, on_burst=show)
        await conn.join(group, state.timeout)
        recorder.record_pages(f"{page_device(state.config_path)}/recorder")
        if voice_keys.keyed(group) and not voice_keys.epoch(group):
            why = f" ({voice_keys.last_refusal})" if voice_keys.last_refusal else ""
            click.echo(f"warning: no key for encrypted group '{group}' yet: its voice is not "
                       f"recorded until a coordinator runs 'ptt group rekey {group}'{why}",
                       err=True)
        click.echo(f"recording {group} into {recorder.group_dir()}; "
                   f"Ctrl-C to stop", err=True)
        signals = StopSignals()
        stop = signals.stop
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, stop.set)
        with signals:
            report = await recorder.run(stop)
        click.echo(f"recorded {report.bursts} bursts, {report.seconds:.1f} s of talk"
                   + (f", {report.lost} frames lost" if report.lost else "")
                   + (f", {report.undecryptable} frames that did not open (no key, forged or "
                      f"replayed) left out" if report.undecryptable else ""))
        if report.errors:
            raise RecordingError(f"{report.errors} recording errors (see the log above)")
        signals.raise_if_caught()
    finally:
        await conn.close()
