"""``ptt talk GROUP``: page a group, from the microphone or from a WAV file.

With ``--wav FILE`` it asks for the floor, waits while queued, sends the file at real-time pace,
releases and prints the delivery report; the outcome and its exit code are
:mod:`ptt.cli.page`'s. Without it, it is an
interactive walkie-talkie in the terminal (see :mod:`ptt.cli.terminal`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from ptt.cli.live import joined_line, open_and_join
from ptt.cli.options import GROUP, SECONDS, CliState, client_options, pass_state
from ptt.cli.page import FloorDenied, send_page
from ptt.protocol import messages as m


@click.command()
@click.argument("group_name", metavar="GROUP", type=GROUP)
@click.option("--wav", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="FILE", help="Page the group with this WAV file instead of the microphone.")
@click.option("--emergency", is_flag=True, help="Ask with emergency priority (pre-empts).")
@click.option("--wait", "max_wait", type=SECONDS, default=60.0, show_default=True,
              metavar="SECONDS", help="With --wav: how long to wait in the queue.")
@click.option("--input", "input_device", metavar="DEVICE",
              help="Input device name or index (see 'ptt devices').")
@click.option("--output", "output_device", metavar="DEVICE", help="Output device for listening.")
@click.option("--timing", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="With --wav: write when each voice frame was sent (monotonic seconds, burst, "
                   "sequence number; compare with 'ptt listen --timing').")
@client_options
@pass_state
def talk(state: CliState, group_name: str, wav: Path | None, emergency: bool, max_wait: float,
         input_device: str | None, output_device: str | None, timing: Path | None) -> None:
    """Talk to GROUP: push to talk in the terminal, or page it with a WAV file.

    \b
    Keys in the terminal: Space or Enter keys and unkeys the microphone,
    e asks with emergency priority, q quits.
    \b
    Examples:
        ptt talk volunteers
        ptt talk volunteers --wav announcement.wav
        ptt talk volunteers --wav evacuate.wav --emergency
        ptt talk volunteers --wav check.wav --timing sent.txt
    """
    if timing is not None and wav is None:
        raise click.UsageError("--timing needs --wav")
    priority = m.Priority.EMERGENCY if emergency else m.Priority.NORMAL
    if wav is not None:
        from ptt.audio.wav import WavSource

        # a bad, empty or silent file fails here, before any network or floor
        WavSource(wav).require_audio().close()
        asyncio.run(page_file(state, group_name, wav, priority, max_wait, timing))
        return
    from ptt.cli.terminal import run_terminal

    asyncio.run(run_terminal(state, group_name, input_device, output_device))


async def page_file(state: CliState, group: str, wav: Path, priority: m.Priority,
                    max_wait: float, timing: Path | None = None) -> None:
    from ptt.audio.wav import WavSource
    from ptt.client.timing import TimingLog

    log = TimingLog(timing) if timing is not None else None  # unwritable: fails before the floor
    try:
        conn, config, (st,) = await open_and_join(state, [group])
        try:
            click.echo(joined_line(st))
            await send_page(conn, group, lambda: WavSource(wav, realtime=True), priority,
                            max_wait, config.bitrate, on_sent=log.sent if log else None)
        finally:
            await conn.close()
    finally:
        if log is not None:
            log.close()


__all__ = ["FloorDenied", "send_page", "talk"]
