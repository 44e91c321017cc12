"""``ptt listen GROUP``: hear a group on the default device, or write what it says to a WAV."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import click

from ptt.cli.live import echo_event, joined_line, open_and_join, stop_on_signals
from ptt.cli.options import GROUP, SECONDS, CliState, client_options, pass_state
from ptt.protocol import client as cl


@click.command()
@click.argument("group_name", metavar="GROUP", type=GROUP)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.wav",
              help="Write the group's audio (voice and the silence between) to a WAV file.")
@click.option("--output", "output_device", metavar="DEVICE",
              help="Output device name or index (see 'ptt devices').")
@click.option("--duration", type=SECONDS, metavar="SECONDS", help="Stop after this long.")
@click.option("--bursts", type=click.IntRange(min=1), metavar="N",
              help="Stop after hearing N bursts.")
@client_options
@pass_state
def listen(state: CliState, group_name: str, out: Path | None, output_device: str | None,
           duration: float | None, bursts: int | None) -> None:
    """Listen to GROUP: print who talks when, and play or record the voice.

    \b
    Examples:
        ptt listen volunteers
        ptt listen volunteers --out volunteers.wav --duration 60
    """
    asyncio.run(_listen(state, group_name, out, output_device, duration, bursts))


async def _listen(state: CliState, group: str, out: Path | None, output_device: str | None,
                  duration: float | None, bursts: int | None) -> None:
    # the audio stack (numpy, libopus) loads here, so admin commands start quickly
    from ptt.audio.streams import ClockedSink, PacedSink
    from ptt.audio.tones import ToneSet
    from ptt.audio.wav import WavSink
    from ptt.client.voice import Listener

    conn, config, (st,) = await open_and_join(state, [group])
    sink: ClockedSink
    try:
        if out is not None:
            sink = PacedSink(WavSink(out))
            tones = ToneSet.none()  # a WAV is a record of the voice, not of the UI
        else:
            from ptt.audio.devices import PlaybackSink
            sink = PlaybackSink(output_device if output_device is not None
                                else config.output_device)
            tones = ToneSet(**dataclasses.asdict(config.tones))
    except BaseException:
        await conn.close()
        raise
    try:
        click.echo(joined_line(st))
        stop = asyncio.Event()
        remove = stop_on_signals(stop)
        listener = Listener(conn, group, sink, tones)
        events = conn.subscribe()
        task = asyncio.create_task(listener.run(stop))
        loop = asyncio.get_running_loop()
        deadline = None if duration is None else loop.time() + duration
        heard = 0
        talker = st.talker
        try:
            while not stop.is_set():
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    async with asyncio.timeout(timeout):
                        ev = await events.get()
                except TimeoutError:
                    break
                echo_event(ev, conn.user)
                if isinstance(ev, cl.TalkerChanged) and ev.group == group:
                    # a burst ends when the floor goes idle or straight to the next talker
                    if talker is not None and ev.talker != talker:
                        heard += 1
                    talker = ev.talker
                    if bursts is not None and heard >= bursts:
                        await asyncio.sleep(0.3)  # let the jitter buffer play out the tail
                        break
        finally:
            stop.set()
            await task
            remove()
        click.echo(f"heard {heard} burst(s), {listener.frames_played * 0.02:.1f} s of voice"
                   + (f"; wrote {out}" if out is not None else ""))
    finally:
        sink.close()
        await conn.close()

