"""``ptt call USER``: a one-to-one push-to-talk call, from the microphone or from a WAV file.

The call is a private two-member group that the server makes for the pair. With ``--wav FILE``
it waits for USER to come online (the call rings when USER logs in), then sends the file as
:mod:`ptt.cli.page` sends a page, with the same outcome and exit code. Without it, it is the
interactive walkie-talkie of :mod:`ptt.cli.terminal`, keyed to USER.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from ptt.cli.live import StopSignals, open_and_join, until_stopped
from ptt.cli.options import SECONDS, USER, CliState, client_options, pass_state
from ptt.cli.page import FloorDenied, send_page
from ptt.client.connection import Connection
from ptt.protocol import messages as m


@click.command()
@click.argument("peer", metavar="USER", shell_complete=USER.shell_complete)
@click.option("--wav", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="FILE", help="Say this WAV file instead of using the microphone.")
@click.option("--wait", "max_wait", type=SECONDS, default=60.0, show_default=True,
              metavar="SECONDS", help="With --wav: how long to wait for USER to come online, "
                                      "and then for the floor.")
@click.option("--input", "input_device", metavar="DEVICE", help="Input device name or index.")
@click.option("--output", "output_device", metavar="DEVICE", help="Output device name or index.")
@client_options
@pass_state
def call(state: CliState, peer: str, wav: Path | None, max_wait: float,
         input_device: str | None, output_device: str | None) -> None:
    """One-to-one push-to-talk call with USER (a private two-member floor).

    USER hears the call in whatever ptt client it runs (listen, the monitor, talk, the desktop
    window) and answers by keying. When USER is not online the call rings as soon as USER
    logs in: the interactive call waits for it; with --wav it waits at most --wait seconds and
    then gives up with exit 1, nothing sent. A volunteer can call the members of its own
    groups; dispatchers and coordinators can call anyone.

    \b
    Examples:
        ptt call bob
        ptt call bob --wav hello.wav
    """
    from ptt.names import user_name

    peer = user_name(peer)
    from ptt.audio.wav import WavSource

    # a bad, empty or silent file fails here, before the call rings or the floor is asked
    if wav is not None:
        WavSource(wav).require_audio().close()
    asyncio.run(_call(state, peer, wav, max_wait, input_device, output_device))


async def _call(state: CliState, peer: str, wav: Path | None, max_wait: float,
                input_device: str | None, output_device: str | None) -> None:
    if wav is None:
        from ptt.cli.terminal import run_terminal

        await run_terminal(state, None, input_device, output_device, call_peer=peer)
        return
    from ptt.audio.wav import WavSource

    conn, config, _ = await open_and_join(state, [])
    try:
        group = await conn.call(peer, state.timeout)
        click.echo(f"call open with {peer} ({group})")
        with StopSignals() as signals:
            if not await wait_for_peer(conn, group, peer, max_wait, signals.stop):
                await conn.leave(group)
                signals.raise_if_caught(f"{peer} did not come online: nothing sent")
                raise FloorDenied(f"{peer} did not come online within {max_wait:g} s: "
                                  f"nothing sent")
        await send_page(conn, group, lambda: WavSource(wav, realtime=True), m.Priority.NORMAL,
                        max_wait, config.bitrate, peer=peer)
        await conn.leave(group)
    finally:
        await conn.close()


# s: in a cluster the callee may be online on another node, which rings it; that it is in the
# call reaches the caller's node a few ms after the call's answer, and the caller's client
# after the server's next presence batch (``server_groups.PRESENCE_INTERVAL``, 0.5 s, from
# the caller's own arrival in the call). "Not online" is said only when it has not come by
# then, with room for a busy machine
PEER_GRACE = 1.5


async def peer_online(conn: Connection, group: str, peer: str, within: float,
                      stop: asyncio.Event | None = None) -> bool:
    """True once ``peer`` is in the call ``group``, waited for at most ``within`` seconds;
    False then, or when ``stop`` is set."""
    events = conn.subscribe()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    stop = stop or asyncio.Event()
    try:
        while True:
            g = conn.core.groups.get(group)
            if g is not None and peer in g.online:
                return not stop.is_set()
            left = deadline - loop.time()
            if left <= 0 or stop.is_set():
                return False
            try:
                async with asyncio.timeout(left):
                    await until_stopped(stop, events.get())
            except TimeoutError:
                pass
    finally:
        conn.unsubscribe(events)


async def wait_for_peer(conn: Connection, group: str, peer: str, max_wait: float,
                        stop: asyncio.Event) -> bool:
    """True once ``peer`` is in the call ``group`` (at once when it is online), False after
    ``max_wait`` seconds or when ``stop`` is set."""
    grace = min(PEER_GRACE, max_wait)
    if await peer_online(conn, group, peer, grace, stop):
        return True
    if stop.is_set():
        return False
    click.echo(f"{peer} is not online: the call rings when {peer} logs in "
               f"(waiting up to {max_wait:g} s)")
    return await peer_online(conn, group, peer, max_wait - grace, stop)


__all__ = ["PEER_GRACE", "call", "peer_online", "wait_for_peer"]
