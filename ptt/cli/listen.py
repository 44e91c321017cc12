"""``ptt listen GROUP [GROUP ...]``: hear one group, or monitor several at once, on the default
device or into a WAV file.

One group plays through :class:`~ptt.client.voice.Listener`. Several groups, or
``--priority``, go through :class:`~ptt.client.monitor.Monitor`: one connection joins them all,
every group's burst is mixed into the one output, and each burst prints one scan line naming
its group and talker, like a dispatch console.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ptt.audio.codec import FRAME_SECONDS
from ptt.cli.live import (
    KeyWatch,
    StopSignals,
    echo_event,
    joined_line,
    label,
    open_and_join,
    print_pages,
    ringing_lines,
    stamp,
    until_stopped,
)
from ptt.cli.options import GROUP, SECONDS, CliState, client_options, pass_state
from ptt.client.calls import call_peer
from ptt.config import ClientConfig
from ptt.errors import RequestError
from ptt.protocol import client as cl
from ptt.protocol import messages as m

if TYPE_CHECKING:
    from ptt.audio.streams import ClockedSink
    from ptt.audio.tones import ToneSet
    from ptt.client.timing import TimingLog

# after the last of ``--bursts`` N: the tail of its burst and the end tone play out first
TAIL_MIN = 0.3
TAIL_MAX = 2.0


@click.command()
@click.argument("group_names", metavar="GROUP [GROUP ...]", type=GROUP, nargs=-1, required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.wav",
              help="Write the audio (voice and the silence between, several groups mixed) to a "
                   "WAV file.")
@click.option("--output", "output_device", metavar="DEVICE",
              help="Output device name or index (see 'ptt devices').")
@click.option("--priority", "priority", type=GROUP, multiple=True, metavar="GROUP",
              help="While GROUP has a talker, hear it at full level and duck the other groups "
                   "by 12 dB (repeatable; GROUP must be one of those listened to).")
@click.option("--duration", type=SECONDS, metavar="SECONDS", help="Stop after this long.")
@click.option("--bursts", type=click.IntRange(min=1), metavar="N",
              help="Stop after hearing N bursts (in all groups together).")
@click.option("--timing", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="One group: write when each voice frame was played (monotonic seconds, "
                   "burst, sequence number, how it was made; compare with 'ptt talk --timing').")
@client_options
@pass_state
def listen(state: CliState, group_names: tuple[str, ...], out: Path | None,
           output_device: str | None, priority: tuple[str, ...], duration: float | None,
           bursts: int | None, timing: Path | None) -> None:
    """Listen to GROUP: print who talks when, and play or record the voice.

    With several groups (a dispatcher's monitor) every group is heard at once: bursts that
    overlap are mixed (summed and clipped, never cut off), and each burst prints one line such
    as "[volunteers] ann talking" or "[medics] bob: EMERGENCY". An emergency burst sounds the
    alert tone and is heard at full level while every other group is ducked by 12 dB; so is a
    --priority group whenever it has a talker. You can listen only to your own groups: a group
    you are not a member of stops the command with an error before anything plays.

    \b
    Examples:
        ptt listen volunteers
        ptt listen volunteers --out volunteers.wav --duration 60
        ptt listen volunteers medics drivers --priority medics
        ptt listen volunteers --out heard.wav --timing played.txt
    """
    groups = list(dict.fromkeys(group_names))
    stray = [p for p in priority if p not in groups]
    if stray:
        raise click.BadParameter(f"'{stray[0]}' is not one of the groups to listen to "
                                 f"({', '.join(groups)})", param_hint="--priority")
    if timing is not None and (len(groups) > 1 or priority):
        raise click.UsageError("--timing works with one group and no --priority")
    if len(groups) == 1 and not priority:
        asyncio.run(_listen(state, groups[0], out, output_device, duration, bursts, timing))
    else:
        asyncio.run(_monitor(state, groups, list(priority), out, output_device, duration,
                             bursts))


def _sink_and_tones(out: Path | None, output_device: str | None, config: ClientConfig
                    ) -> tuple[ClockedSink, ToneSet]:
    from ptt.audio.streams import PacedSink
    from ptt.audio.tones import ToneSet
    from ptt.audio.wav import WavSink

    if out is not None:
        # a WAV is a record of the voice, not of the UI
        return PacedSink(WavSink(out)), ToneSet.none()
    from ptt.audio.devices import PlaybackSink
    return (PlaybackSink(output_device if output_device is not None else config.output_device),
            ToneSet(**dataclasses.asdict(config.tones)))


class _Bursts:
    """Counts the bursts heard per group: one ends when the floor goes idle or straight to the
    next talker."""

    def __init__(self, joined: list[m.GroupState], me: str) -> None:
        self.talkers = {st.group: st.talker for st in joined}
        self.me = me
        self.heard = 0

    def follow(self, ev: cl.ClientEvent) -> None:
        if isinstance(ev, cl.TalkerChanged) and ev.group not in self.talkers and call_peer(
                ev.group, self.me) is not None:
            self.talkers[ev.group] = None  # a call to this user: its bursts count too
        if isinstance(ev, cl.TalkerChanged) and ev.group in self.talkers:
            if self.talkers[ev.group] is not None and ev.talker != self.talkers[ev.group]:
                self.heard += 1
            self.talkers[ev.group] = ev.talker


class _SessionEnd:
    """Whether the server ended this session for good (SessionClosed: a fifth device of the
    same user logged in); single-group listen and the monitor both stop on it and exit 1 with
    the server's reason, in the same words."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def follow(self, ev: cl.ClientEvent) -> bool:
        """True when ``ev`` ends the session: stop listening."""
        if isinstance(ev, cl.Disconnected) and ev.final:
            self.reason = ev.reason
            return True
        return False

    def raise_if_ended(self) -> None:
        if self.reason is not None:
            raise RequestError(f"session ended by the server: {self.reason}")


async def _until(events: asyncio.Queue[cl.ClientEvent], stop: asyncio.Event,
                 duration: float | None) -> AsyncIterator[cl.ClientEvent]:
    """The connection's events until ``stop`` is set or ``duration`` is over."""
    loop = asyncio.get_running_loop()
    deadline = None if duration is None else loop.time() + duration
    while not stop.is_set():
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            async with asyncio.timeout(timeout):
                ev = await until_stopped(stop, events.get())
        except TimeoutError:
            return
        if ev is None:
            return
        yield ev


async def _listen(state: CliState, group: str, out: Path | None, output_device: str | None,
                  duration: float | None, bursts: int | None,
                  timing: Path | None = None) -> None:
    from ptt.client.timing import TimingLog

    log = TimingLog(timing) if timing is not None else None  # unwritable: fails before joining
    try:
        await _listen_logged(state, group, out, output_device, duration, bursts, log)
    finally:
        if log is not None:
            log.close()


async def _played_out(sounding: Callable[[], bool]) -> None:
    """The last burst's tail plays (and its end tone, and its reception line is printed): at
    least TAIL_MIN, then while it still sounds, at most TAIL_MAX in all. A jitter buffer that
    grew while this process was starved holds more than a fixed wait would cover."""
    loop = asyncio.get_running_loop()
    end = loop.time() + TAIL_MAX
    await asyncio.sleep(TAIL_MIN)
    while sounding() and loop.time() < end:
        await asyncio.sleep(FRAME_SECONDS)


async def _listen_logged(state: CliState, group: str, out: Path | None,
                         output_device: str | None, duration: float | None, bursts: int | None,
                         log: TimingLog | None) -> None:
    # the audio stack (numpy, libopus) loads here, so admin commands start quickly
    from ptt.client.voice import Listener, reception_text

    signals = StopSignals().install()  # before connecting: a stop key is never lost
    try:
        conn, config, joined = await open_and_join(state, [group])
    except BaseException:
        signals.remove()
        raise
    try:
        sink, tones = _sink_and_tones(out, output_device, config)
    except BaseException:
        signals.remove()
        await conn.close()
        raise
    try:
        click.echo(joined_line(joined[0]))
        print_pages(conn, state)
        watch = KeyWatch(conn, joined)
        for line in watch.warnings():
            click.echo(line, err=True)
        for line in ringing_lines(conn):
            click.echo(line)
        stop = signals.stop
        listener = Listener(conn, group, sink, tones)
        # what this listener received of each burst, as it ends
        listener.on_burst_end = lambda g, r: click.echo(
            f"{stamp()}  {label(g, conn.user)}  {reception_text(r)}")
        if log is not None:
            listener.on_played = log.played
        events = conn.subscribe()
        task = asyncio.create_task(listener.run(stop))
        count = _Bursts(joined, conn.user)
        left = {group}
        ended = _SessionEnd()
        try:
            async for ev in _until(events, stop, duration):
                echo_event(ev, conn.user)
                count.follow(ev)
                got_key = watch.follow(ev)
                if got_key is not None:
                    click.echo(got_key)
                if isinstance(ev, cl.GroupGone) and ev.group in left:
                    left.discard(ev.group)
                    break
                if ended.follow(ev):
                    break
                if bursts is not None and count.heard >= bursts:
                    await _played_out(lambda: listener.sounding)
                    break
        finally:
            stop.set()
            await task
            signals.remove()
        heard = listener.frames_played * FRAME_SECONDS
        click.echo(f"heard {count.heard} burst(s), {heard:.1f} s of voice"
                   + (f"; wrote {out}" if out is not None else ""))
        signals.raise_if_caught()
        ended.raise_if_ended()
        if not left:
            raise RequestError(f"no group left to listen to ('{group}' is no longer yours)")
    finally:
        sink.close()
        await conn.close()


async def _monitor(state: CliState, groups: list[str], priority: list[str], out: Path | None,
                   output_device: str | None, duration: float | None,
                   bursts: int | None) -> None:
    from ptt.client.monitor import Monitor, burst_notice
    from ptt.client.voice import reception_text

    signals = StopSignals().install()  # before connecting: a stop key is never lost
    try:
        conn, config, joined = await open_and_join(state, groups)
    except RequestError as exc:
        signals.remove()
        # which group failed is in the server's words ("'eve' is not a member of 'medics'")
        raise RequestError(f"{exc} (you can listen only to your own groups)", exc.code) from None
    except BaseException:
        signals.remove()
        raise
    try:
        sink, tones = _sink_and_tones(out, output_device, config)
    except BaseException:
        signals.remove()
        await conn.close()
        raise
    try:
        for st in joined:
            click.echo(joined_line(st))
        print_pages(conn, state)
        watch = KeyWatch(conn, joined)
        for line in watch.warnings():
            click.echo(line, err=True)
        for line in ringing_lines(conn):
            click.echo(line)
        stop = signals.stop
        monitor = Monitor(conn, groups, sink, priority=priority, tones=tones)
        monitor.on_burst_end = lambda g, r: click.echo(f"{stamp()}  [{g}] {reception_text(r)}")
        events = conn.subscribe()
        task = asyncio.create_task(monitor.run(stop))
        count = _Bursts(joined, conn.user)
        left = set(groups)
        ended = _SessionEnd()
        try:
            async for ev in _until(events, stop, duration):
                if isinstance(ev, cl.GroupGone) and ev.group in left:
                    left.discard(ev.group)
                    echo_event(ev, conn.user)
                    if not left:
                        break
                    click.echo(f"{stamp()}  still listening to {', '.join(sorted(left))}")
                    continue
                got_key = watch.follow(ev)
                if got_key is not None:
                    click.echo(got_key)
                notice = burst_notice(ev, monitor.groups, conn.user)
                if notice is not None:
                    click.echo(f"{stamp()}  {notice.line()}")
                elif not isinstance(ev, cl.TalkerChanged):
                    echo_event(ev, conn.user)  # connection news; floor idle is not a scan line
                if ended.follow(ev):
                    break
                count.follow(ev)
                if bursts is not None and count.heard >= bursts:
                    await _played_out(lambda: monitor.mixer.sounding)
                    break
        finally:
            stop.set()
            await task
            signals.remove()
        voice = sum(monitor.stats(g).frames_heard for g in monitor.groups) * FRAME_SECONDS
        per_group = ", ".join(
            f"{label(g, conn.user)} {monitor.stats(g).frames_heard * FRAME_SECONDS:.1f} s"
            for g in monitor.groups)
        click.echo(f"heard {count.heard} burst(s), {voice:.1f} s of voice ({per_group})"
                   + (f"; wrote {out}" if out is not None else ""))
        signals.raise_if_caught()
        ended.raise_if_ended()
        if not left:
            raise RequestError("no group left to listen to (none of them is yours any more)")
    finally:
        sink.close()
        await conn.close()
