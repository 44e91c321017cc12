"""Shared pieces of the live commands (talk, listen, call): connecting, joining, event lines.

Every floor event a volunteer should know about becomes one timestamped line, e.g.::

    14:02:11.204  volunteers  ann is talking
    14:02:15.880  volunteers  floor idle
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from ptt.cli.completion import remember
from ptt.cli.options import CliState
from ptt.cli.remote import client_config, connect
from ptt.client import keys
from ptt.client.calls import call_peer
from ptt.client.connection import Connection, deny_text
from ptt.client.receipts import delivery_text
from ptt.config import ClientConfig
from ptt.errors import Interrupted
from ptt.protocol import client as cl
from ptt.protocol import messages as m

T = TypeVar("T")


def stamp() -> str:
    t = time.time()
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def label(group: str, me: str) -> str:
    """How a group is named on screen: its name, or "call with PEER" for a call."""
    peer = call_peer(group, me)
    return group if peer is None else f"call with {peer}"


def describe(ev: cl.ClientEvent, me: str) -> str | None:
    """One line for an event worth showing, or None."""
    if isinstance(ev, cl.IncomingCall):
        return f"{ev.peer} is calling you"
    if isinstance(ev, cl.Disconnected) and ev.final:
        return f"session ended by the server: {ev.reason}"
    if isinstance(ev, cl.Disconnected):
        return f"connection lost ({ev.reason}); reconnecting"
    if isinstance(ev, cl.Connected):
        return "connected"
    group = getattr(ev, "group", None)
    where = label(group, me) if isinstance(group, str) else ""
    if isinstance(ev, cl.GroupGone):
        return f"{where}  {gone_text(ev.reason)}"
    if isinstance(ev, cl.TalkerChanged):
        if ev.talker is None:
            return f"{where}  floor idle"
        who = "you are" if ev.talker == me else f"{ev.talker} is"
        urgent = " (EMERGENCY)" if ev.priority == m.Priority.EMERGENCY else ""
        return f"{where}  {who} talking{urgent}"
    if isinstance(ev, cl.PresenceChanged):
        return f"{where}  {ev.user} {'came online' if ev.online else 'went offline'}"
    if isinstance(ev, cl.FloorStateChanged):
        if ev.state is cl.Participation.QUEUED:
            return f"{where}  queued #{ev.position}"
        if ev.state is cl.Participation.HAS_PERMISSION:
            return f"{where}  floor granted: talk now ({ev.max_talk_ms / 1000:g} s max)"
        if ev.state is cl.Participation.NO_PERMISSION and ev.deny_cause != m.DenyCause.NONE:
            return f"{where}  floor denied: {deny_text(ev.deny_cause)}"
        if ev.state is cl.Participation.NO_PERMISSION and ev.revoke_cause is not None:
            return f"{where}  floor revoked: {revoke_text(ev.revoke_cause, ev.reason)}"
    if isinstance(ev, cl.DeliveryReported):
        return f"{where}  {delivery_text(ev, peer=call_peer(ev.group, me))}"
    return None


def gone_text(reason: m.GoneReason) -> str:
    return {m.GoneReason.REMOVED: "a coordinator removed you from this group",
            m.GoneReason.DELETED: "a coordinator deleted this group",
            m.GoneReason.CALL_LOST: "the call ended on the server node that ran it"}.get(
        reason, "you are no longer a member")


def revoke_text(cause: m.RevokeCause, reason: str = "") -> str:
    if cause is m.RevokeCause.SESSION_LOST and reason:
        return f"your session was lost because {reason}"
    return {
        m.RevokeCause.PREEMPTED: "pre-empted by a higher-priority talker",
        m.RevokeCause.MAX_TALK_TIME: "maximum talk time reached",
        m.RevokeCause.SILENCE: "no voice arrived (silence timeout)",
        m.RevokeCause.NO_START: "you did not start talking in time",
        m.RevokeCause.REMOVED: "you were removed from the group",
        m.RevokeCause.GROUP_DELETED: "the group was deleted",
        m.RevokeCause.FAILOVER: "the group's home server failed; another took over: ask again",
        m.RevokeCause.SESSION_LOST: "your session was lost",
    }.get(cause, cause.name.lower())


def echo_event(ev: cl.ClientEvent, me: str) -> None:
    line = describe(ev, me)
    if line is not None:
        click.echo(f"{stamp()}  {line}")


async def open_and_join(state: CliState, groups: list[str]
                        ) -> tuple[Connection, ClientConfig, list[m.GroupState]]:
    """A logged-in connection that has joined ``groups``; the caller closes it."""
    config = client_config(state)
    conn, _ = await connect(config, state.timeout)
    # the member's pins of coordinator keys live next to the config this command was given
    keys.VoiceKeys.of(conn, keys.pins_path(keys.SIGNER_PINS, state.config_path))
    try:
        joined = [await conn.join(g, state.timeout) for g in groups]
    except BaseException:
        await conn.close()
        raise
    # names for shell completion, which never asks the server
    remember(groups=[st.group for st in joined],
             users=[mi.user for st in joined for mi in st.members])
    return conn, config, joined


class KeyWatch:
    """Tells a member at once when it joined an encrypted group whose current key it does not
    hold (it would hear only silence there), and again when that key arrives: the server pushes
    it to online members as soon as a coordinator issues it."""

    def __init__(self, conn: Connection, joined: list[m.GroupState]) -> None:
        self._keys = keys.VoiceKeys.of(conn)
        self.waiting = {st.group: st.key_epoch for st in joined
                        if st.key_epoch > self._keys.epoch(st.group)}

    def warnings(self) -> list[str]:
        return [f"warning: no key for '{g}' (epoch {e}) yet: you hear nothing there until a "
                f"coordinator issues one ('ptt group rekey {g}'); it is taken as soon as it is"
                for g, e in sorted(self.waiting.items())]

    def follow(self, ev: cl.ClientEvent) -> str | None:
        """The line to print when ``ev`` brought a key this member was waiting for."""
        if not isinstance(ev, cl.KeyGrantReceived) or ev.group not in self.waiting:
            return None
        epoch = self._keys.epoch(ev.group)
        if epoch < self.waiting[ev.group]:
            return None  # refused, or an old one: VoiceKeys logged why
        del self.waiting[ev.group]
        return f"{stamp()}  {ev.group}  key received (epoch {epoch}): its voice opens now"


def print_pages(conn: Connection, state: CliState) -> None:
    """Print every text page this client is given as it arrives (the groups it joined and
    pages to its user, missed ones first), and send its read receipt: a line printed on the
    terminal of a listening person is a page shown."""
    from ptt.client.pages import PageInbox, ShownPage, page_device

    inbox = PageInbox(conn, page_device(state.config_path))

    def show(page: ShownPage) -> None:
        click.echo(f"{stamp()}  {page.line()}")
        inbox.read(page)

    inbox.on_page.append(show)


def joined_line(st: m.GroupState) -> str:
    online = [mi.user for mi in st.members if mi.online]
    talker = f", {st.talker} is talking" if st.talker else ""
    members = st.members_total or len(st.members)  # a large group's Join lists only some
    return (f"joined {st.group}: {members} members, {len(online)} online "
            f"({', '.join(online)}){talker}")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """SIGINT/SIGTERM set ``stop`` and are remembered, so a command finishes cleanly (floor
    released or queue left, files closed) and then exits 130 or 143 through
    :class:`~ptt.errors.Interrupted`::

        with StopSignals() as signals:
            await work(signals.stop)        # returns soon after signals.stop is set
        signals.raise_if_caught("sent 2.3 s of 5.9 s")

    A second signal while the clean finish is still running ends the process at once with the
    same exit code: a user who presses Ctrl-C twice means it.
    """

    def __init__(self, stop: asyncio.Event | None = None) -> None:
        self.stop = stop if stop is not None else asyncio.Event()
        self.signum: int | None = None
        self._installed: list[signal.Signals] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def caught(self) -> bool:
        return self.signum is not None

    def on_signal(self, signum: int) -> None:
        if self.signum is not None:
            os._exit(128 + self.signum)
        self.signum = int(signum)
        self.stop.set()

    def install(self) -> StopSignals:
        self._loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            try:
                self._loop.add_signal_handler(sig, self.on_signal, sig)
                self._installed.append(sig)
            except (NotImplementedError, RuntimeError):
                pass
        return self

    def remove(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            for sig in self._installed:
                self._loop.remove_signal_handler(sig)
        self._installed.clear()

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def interrupted(self, done: str = "") -> Interrupted | None:
        """The error to raise when a signal was caught (None otherwise)."""
        return None if self.signum is None else Interrupted(done, self.signum)

    def raise_if_caught(self, done: str = "") -> None:
        """Raise :class:`~ptt.errors.Interrupted` (saying ``done``) if a signal was caught."""
        exc = self.interrupted(done)
        if exc is not None:
            raise exc


def ringing_lines(conn: Connection) -> list[str]:
    """Lines for the calls this connection was put in before its command looked (a call that
    waited for this user rings as it logs in)."""
    return [f"{stamp()}  {peer} is calling you" for name in list(conn.core.groups)
            if (peer := call_peer(name, conn.user)) is not None]


def stop_on_signals(stop: asyncio.Event, caught: StopSignals | None = None
                    ) -> Callable[[], None]:
    """Set ``stop`` on SIGINT/SIGTERM; returns the function that removes the handlers. Pass
    ``caught`` (a :class:`StopSignals` on the same event) to learn which signal it was."""
    signals = caught if caught is not None else StopSignals(stop)
    signals.stop = stop
    return signals.install().remove


async def until_stopped(stop: asyncio.Event, aw: Awaitable[T]) -> T | None:
    """``await aw``, or None as soon as ``stop`` is set (``aw`` is then cancelled): a loop
    that waits for the next event still notices a stop key at once."""
    task = asyncio.ensure_future(aw)
    if stop.is_set():
        task.cancel()
        return None
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    return None
