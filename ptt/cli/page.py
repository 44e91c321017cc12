"""A page: one WAV file sent to a group (``ptt talk GROUP --wav``) or a call (``ptt call --wav``).

A page is one message, so its outcome is all or nothing, and the exit code says which:

- 0: the whole file went out under one grant and the server acknowledged the end of the burst;
  the delivery report follows (who heard it, who did not confirm, who was offline);
- 1: refused or cut: floor denied, gave up in the queue, or the floor lost to a named cause
  (pre-empted, maximum talk time, removed from the group, group deleted);
- 4: network: the server stopped answering and did not come back;
- 130 / 143: interrupted by SIGINT / SIGTERM, after the floor was released.

Every failure says how much of the file went out. When the session is lost mid-page (the server
restarted, or stopped answering and came back within ``RESTART_WAIT``), the client logs in again
by itself; the page is then asked for and sent again from the start, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ptt.audio.codec import FRAME_SECONDS
from ptt.cli.live import StopSignals, revoke_text, stamp, until_stopped
from ptt.client.connection import RELEASE_WAIT, STOP_RELEASE_WAIT, Connection, deny_text
from ptt.client.receipts import await_delivery, delivery_line
from ptt.errors import NetError, RequestError
from ptt.protocol import client as cl
from ptt.protocol import messages as m

if TYPE_CHECKING:
    from ptt.audio.wav import WavSource

RESTART_WAIT = 10.0  # after a lost session: how long the server may take to be back
CAUSE_SETTLE = 0.3  # after a lost floor: the revoke naming its cause may trail the group's news


class FloorDenied(RequestError):
    """The floor was refused or lost; exit 1 with the reason."""


@dataclass
class _Lost(Exception):
    """The session was lost during an attempt (the server restarted or stopped answering)."""

    sent: float
    reason: str


async def send_page(conn: Connection, group: str, make_source: Callable[[], WavSource],
                    priority: m.Priority, max_wait: float, bitrate: int,
                    peer: str | None = None,
                    on_sent: Callable[[int, int], None] | None = None) -> None:
    """Send the page; returns on success (exit 0), raises the error of the outcome otherwise.
    ``peer``: the callee of a call, for the delivery line; ``on_sent``: (burst id, seq) of
    each voice datagram as it leaves (``ptt talk --timing``)."""
    with StopSignals() as signals:
        try:
            await _attempt(conn, group, make_source(), priority, max_wait, bitrate, signals,
                           peer, on_sent)
            return
        except _Lost as lost:
            if not await _back(conn, signals, lost):
                raise _gone(lost, conn) from None
            first = lost
        why = ("server restarted" if first.reason == cl.LOST_FORGOTTEN
               else f"session lost ({first.reason})")
        click.echo(f"{why}: sending the page again from the start")
        try:
            await _attempt(conn, group, make_source(), priority, max_wait, bitrate, signals,
                           peer, on_sent)
        except _Lost as lost:
            raise NetError(f"session lost again ({lost.reason}) after {lost.sent:.1f} s of the "
                           "second try: the page may not have been heard") from None
        except FloorDenied:
            if peer is not None and group not in conn.core.groups:
                # the call lived on the server (node) the session was lost with
                raise FloorDenied(f"the call with {peer} ended with the server it ran on "
                                  f"(stopped or restarted): call {peer} again") from None
            raise


async def _back(conn: Connection, signals: StopSignals, lost: _Lost) -> bool:
    """Wait until the connection has logged in again (True), the wait is over or a stop key."""
    q = conn.subscribe()
    try:
        if conn.connected:
            return True
        try:
            got = await until_stopped(signals.stop, conn.wait_for(
                q, lambda e: isinstance(e, cl.Connected), RESTART_WAIT, "server not back"))
        except NetError:
            return False
    finally:
        conn.unsubscribe(q)
    signals.raise_if_caught(f"sent {lost.sent:.1f} s before the session was lost")
    return got is not None


def _gone(lost: _Lost, conn: Connection) -> NetError:
    where = f"{conn.server[0]}:{conn.server[1]}"
    return NetError(f"the server at {where} stopped answering ({lost.reason}) and is not back "
                    f"after {RESTART_WAIT:g} s: sent {lost.sent:.1f} s, the end of the page "
                    "was never acknowledged")


async def _attempt(conn: Connection, group: str, source: WavSource, priority: m.Priority,
                   max_wait: float, bitrate: int, signals: StopSignals,
                   peer: str | None, on_sent: Callable[[int, int], None] | None) -> None:
    from ptt.client.voice import Talker

    total = len(source) * FRAME_SECONDS
    name = Path(source.path).name
    events = conn.subscribe()
    try:
        outcome = await _get_floor(conn, group, priority, max_wait, signals, events)
        burst = outcome.burst_id
        click.echo(f"floor granted: sending {total:.1f} s of {name}")
        # a line per change of the listeners' link and of the protection chosen for it
        talker = Talker(conn, group, bitrate=bitrate,
                        on_link=lambda link: click.echo(f"{stamp()}  {link.line()}"),
                        on_sent=on_sent)
        report = await talker.send(source, signals.stop)
        sent = report.frames * FRAME_SECONDS
        if signals.caught:
            released = await conn.release_floor(group, timeout=STOP_RELEASE_WAIT)
            signals.raise_if_caught(f"sent {sent:.1f} s of {total:.1f} s of {name}; " + (
                "floor released" if released else "the release was not acknowledged"))
        if report.reason == "floor lost":
            await asyncio.sleep(CAUSE_SETTLE)
            lost = _loss(_drain(events), group)
            if (lost is None or lost.revoke_cause is None
                    or lost.revoke_cause is m.RevokeCause.SESSION_LOST):
                raise _Lost(sent, lost.reason if lost else "lost")
            raise FloorDenied(f"floor lost after {sent:.1f} s of {total:.1f} s: "
                              f"{revoke_text(lost.revoke_cause, lost.reason)}")
        released = await conn.release_floor(group, timeout=RELEASE_WAIT)
        if not released:
            lost = _loss(_drain(events), group)
            raise _Lost(sent, lost.reason if lost and lost.reason else
                        "no answer to the end of the page")
        rate = report.bytes_sent * 8 / max(sent, FRAME_SECONDS) / 1000
        click.echo(f"done: sent {sent:.1f} s ({rate:.1f} kbit/s on the wire), floor released")
        click.echo(delivery_line(await await_delivery(conn, events, group, burst),
                                 report.frames + 1, peer))
    finally:
        conn.unsubscribe(events)
        source.close()


async def _get_floor(conn: Connection, group: str, priority: m.Priority, max_wait: float,
                     signals: StopSignals, events: asyncio.Queue[cl.ClientEvent]
                     ) -> cl.FloorStateChanged:
    try:
        outcome = await until_stopped(signals.stop, conn.request_floor(group, priority))
    except (RequestError, NetError) as exc:
        if not conn.connected:
            raise NetError(f"no answer to the floor request: {exc}") from None
        raise FloorDenied(f"floor request failed: {exc}") from None
    if outcome is not None and outcome.state is cl.Participation.QUEUED:
        click.echo(f"queued #{outcome.position}: waiting for the floor")
        printer = asyncio.create_task(_show_positions(conn, group))
        try:
            outcome = await until_stopped(signals.stop, conn.wait_floor(group, max_wait))
        except NetError:
            await conn.release_floor(group, timeout=2.0)  # withdraw from the queue
            raise FloorDenied(f"still queued after {max_wait:g} s: gave up") from None
        finally:
            printer.cancel()
    if outcome is None:  # a stop key while asking or queued
        await conn.release_floor(group, timeout=STOP_RELEASE_WAIT)
        signals.raise_if_caught("nothing sent: stopped before the floor was granted")
    assert outcome is not None
    if outcome.state is not cl.Participation.HAS_PERMISSION:
        if outcome.deny_cause != m.DenyCause.NONE:
            raise FloorDenied(f"floor denied: {deny_text(outcome.deny_cause)}")
        if outcome.revoke_cause is m.RevokeCause.SESSION_LOST:
            raise _Lost(0.0, outcome.reason)
        raise FloorDenied("floor not granted")
    return outcome


async def _show_positions(conn: Connection, group: str) -> None:
    """A line per move in the queue, until cancelled."""
    events = conn.subscribe()
    try:
        while True:
            ev = await events.get()
            if (isinstance(ev, cl.FloorStateChanged) and ev.group == group
                    and ev.state is cl.Participation.QUEUED):
                click.echo(f"queued #{ev.position}")
    finally:
        conn.unsubscribe(events)


def _loss(events: list[cl.ClientEvent], group: str) -> cl.FloorStateChanged | None:
    """The event that ended our burst: the last one naming a cause (a revoke that trailed the
    group's news corrects the guess made from it)."""
    lost = [e for e in events if isinstance(e, cl.FloorStateChanged) and e.group == group
            and e.revoke_cause is not None]
    return lost[-1] if lost else None


def _drain(q: asyncio.Queue[cl.ClientEvent]) -> list[cl.ClientEvent]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


__all__ = ["FloorDenied", "RESTART_WAIT", "send_page"]
