"""The interactive terminal walkie-talkie behind ``ptt talk GROUP`` and ``ptt call USER``.

A terminal reports key presses but no releases, so the talk key is a toggle: Space or Enter keys
the microphone (request the floor; talk once granted) and unkeys it (release). ``e`` asks with
emergency priority, ``q`` quits. One status line is redrawn in place::

    volunteers | online ann bob cat | bob talking | you: talking 27s left [######    ] -18 dBFS

Calls: a call to this user is played over the group, and for
:data:`~ptt.client.calls.REPLY_WINDOW` seconds after its last word the talk key answers the
caller instead of paging the group, as a walkie-talkie user expects ("call from ann: Space
answers (18s)" on the status line). Answering rings the caller again if it has left the call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import termios
import tty
from dataclasses import dataclass

import click

from ptt.audio.levels import Level, vu_bar
from ptt.audio.tones import ToneSet
from ptt.cli.call import PEER_GRACE, peer_online
from ptt.cli.live import StopSignals, describe, open_and_join, stamp
from ptt.cli.options import CliState
from ptt.client import calls
from ptt.client.connection import Connection
from ptt.client.pages import PageInbox, ShownPage, page_device
from ptt.client.voice import LinkChange, Listener, Talker, protection_text
from ptt.errors import PttError, RequestError, ValidationError
from ptt.protocol import client as cl
from ptt.protocol import messages as m

REDRAW = 0.1  # seconds between status line redraws
KEY_TOGGLE = (" ", "\r", "\n")


@dataclass
class View:
    """What the status line shows; updated from events, rendered by :func:`status_line`."""

    group: str
    me: str
    state: cl.Participation = cl.Participation.NO_PERMISSION
    position: int = 0
    talker: str | None = None
    online: tuple[str, ...] = ()
    granted_at: float | None = None
    max_talk: float = 30.0
    level: Level | None = None
    connected: bool = True
    call: str | None = None  # the caller the talk key answers now
    call_left: float = 0.0  # seconds it still does
    keyed: str | None = None  # where the key talks now, when not the group
    protection: str = ""  # copies per packet chosen for the listeners' link


def status_line(v: View, now: float, width: int = 100) -> str:
    parts = [v.group, "online " + " ".join(v.online) if v.online else "nobody online"]
    if not v.connected:
        parts.append("reconnecting...")
    if v.talker and v.talker != v.me:
        parts.append(f"{v.talker} talking")
    if v.keyed is not None:
        parts.append(f"call with {v.call}")
    elif v.call is not None:
        parts.append(f"call from {v.call}: Space answers ({v.call_left:.0f}s)")
    if v.state is cl.Participation.HAS_PERMISSION:
        left = v.max_talk - (now - v.granted_at) if v.granted_at is not None else v.max_talk
        frac = max(0.0, min(1.0, left / v.max_talk)) if v.max_talk else 0.0
        bar = "#" * round(frac * 10)
        you = f"you: TALKING {max(0, left):.0f}s left [{bar:<10}]"
        if v.level is not None:
            you += f" {vu_bar(v.level.rms_dbfs, 10)} {v.level.rms_dbfs:.0f} dBFS"
        if v.protection:
            you += f" | {v.protection}"
    elif v.state is cl.Participation.QUEUED:
        you = f"you: queued #{v.position}"
    elif v.state is cl.Participation.PENDING_REQUEST:
        you = "you: requesting..."
    elif v.state is cl.Participation.PENDING_RELEASE:
        you = "you: releasing..."
    else:
        you = "you: idle (Space to talk, e emergency, q quit)"
    parts.append(you)
    return " | ".join(parts)[:width]


class Terminal:
    """Runs the keyboard, the status line, the talker and the listener for one group (and the
    calls to this user)."""

    def __init__(self, conn: Connection, group: str, capture: object, playback: object,
                 tones: ToneSet, bitrate: int) -> None:
        self.conn = conn
        self.group = group
        self.capture = capture
        self.playback = playback
        self.tones = tones
        self.bitrate = bitrate
        g = conn.core.groups.get(group)
        self.view = View(group, conn.user,
                         online=tuple(sorted(g.online)) if g else (),
                         talker=g.talker if g else None)
        self.talkers: dict[str, Talker] = {}
        self.listener = Listener(conn, group, playback, tones)  # type: ignore[arg-type]
        self.reply = calls.ReplyTarget()
        self.keyed = group  # the group the last key press talks to
        self.notices: list[str] = []  # lines to print above the status line
        self.quit = asyncio.Event()
        self.ended: str | None = None  # why the server ended the session for good
        self._talk_stop: asyncio.Event | None = None
        self._talk_task: asyncio.Task[object] | None = None
        self._answering: asyncio.Task[None] | None = None
        for name in list(conn.core.groups):  # calls that rang before this terminal looked
            peer = calls.call_peer(name, conn.user)
            if peer is not None and name != group:
                self.reply.note(name, peer, self._now())

    @property
    def talker(self) -> Talker:
        """The talker of the group the key talks to."""
        if self.keyed not in self.talkers:
            self.talkers[self.keyed] = Talker(self.conn, self.keyed, bitrate=self.bitrate,
                                              on_level=self._level, on_link=self._link)
        return self.talkers[self.keyed]

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _level(self, level: Level) -> None:
        self.view.level = level

    def _link(self, link: LinkChange) -> None:
        self.view.protection = protection_text(link.settings)
        self.notices.append(link.line())

    def _tone(self, name: str) -> None:
        for frame in self.tones.frames(name):
            self.playback.write(frame)  # type: ignore[attr-defined]

    def show_pages(self, device: str) -> None:
        """Print text pages above the status line as they come (read receipts: they are
        shown), with the page tone, or the emergency tone for an urgent one."""
        inbox = PageInbox(self.conn, device)

        def show(page: ShownPage) -> None:
            self.notices.append(page.line())
            self._tone("emergency" if page.urgent else "page")
            inbox.read(page)

        inbox.on_page.append(show)

    def on_key(self, key: str) -> None:
        state = self.conn.core.participation(self.keyed)
        if key in ("q", "Q", "\x03", "\x04"):
            self.quit.set()
        elif key in ("e", "E"):
            self.keyed = self.group  # an emergency goes to the whole group
            self.conn.ask_floor(self.group, m.Priority.EMERGENCY)
        elif key in KEY_TOGGLE:
            if state is cl.Participation.NO_PERMISSION:
                self._key_down()
            else:
                self._stop_talking()
                self.conn.drop_floor(self.keyed)

    def _key_down(self) -> None:
        if self.reply.active(self._now()) and self.reply.group != self.group:
            assert self.reply.group is not None and self.reply.peer is not None
            self.keyed = self.reply.group
            self.reply.note(self.reply.group, self.reply.peer, self._now())
            self._answering = asyncio.create_task(self._answer(self.reply.group,
                                                               self.reply.peer))
        else:
            self.keyed = self.group
            self.conn.ask_floor(self.group)

    async def _answer(self, group: str, peer: str) -> None:
        """Key the call with ``peer``: ring it again first if it is no longer in the call."""
        g = self.conn.core.groups.get(group)
        rang = g is None or peer not in g.online
        if rang:
            try:
                await self.conn.call(peer)
            except PttError as exc:
                self.notices.append(f"call with {peer}: {exc}")
                self.keyed = self.group
                return
        if self.keyed == group:
            self.conn.ask_floor(group)  # at once: the wait below is only for the notice
        if rang and not await peer_online(self.conn, group, peer, PEER_GRACE):
            self.notices.append(f"{peer} is not online: the call rings when {peer} logs in")

    def _stop_talking(self) -> None:
        if self._talk_stop is not None:
            self._talk_stop.set()
        self._talk_stop = None

    def on_event(self, ev: cl.ClientEvent) -> None:
        v = self.view
        g = self.conn.core.groups.get(self.group)
        if g is not None:
            v.online = tuple(sorted(g.online))
            v.talker = g.talker
        if isinstance(ev, cl.Connected):
            v.connected = True
        elif isinstance(ev, cl.Disconnected):
            v.connected = False
            if ev.final:  # e.g. signed in on too many devices: this one is over
                self.ended = ev.reason
                self.quit.set()
        elif isinstance(ev, cl.IncomingCall) and ev.group != self.group:
            self.reply.note(ev.group, ev.peer, self._now())
        elif isinstance(ev, cl.TalkerChanged) and ev.group == self.reply.group:
            assert self.reply.peer is not None
            self.reply.note(ev.group, self.reply.peer, self._now())  # each word keeps it open
        if not isinstance(ev, cl.FloorStateChanged) or ev.group != self.keyed:
            return
        v.state, v.position = ev.state, ev.position
        now = self._now()
        if ev.state is cl.Participation.HAS_PERMISSION:
            v.granted_at, v.max_talk = now, (ev.max_talk_ms or 30_000) / 1000
            self._tone("talk_permit")
            self._start_talking()
        elif ev.state is cl.Participation.QUEUED or ev.deny_cause != m.DenyCause.NONE:
            self._tone("busy")
        if ev.state is cl.Participation.NO_PERMISSION:
            self._stop_talking()
            v.level = None
            if self.keyed == self.reply.group and self.reply.peer is not None:
                self.reply.note(self.keyed, self.reply.peer, now)
            self.keyed = self.group

    def refresh(self, now: float) -> None:
        """Bring the call part of the status line up to ``now``."""
        v = self.view
        active = self.reply.active(now) and self.reply.group != self.group
        v.call = self.reply.peer if active or self.keyed != self.group else None
        v.call_left = self.reply.seconds_left(now)
        v.keyed = self.keyed if self.keyed != self.group else None

    def _start_talking(self) -> None:
        drain = getattr(self.capture, "drain_pending", None)
        if drain is not None:
            drain()  # nothing captured before the grant goes out late
        self._talk_stop = asyncio.Event()
        self._talk_task = asyncio.create_task(self.talker.send(self.capture, self._talk_stop))  # type: ignore[arg-type]


async def run_terminal(state: CliState, group: str | None, input_device: str | None,
                       output_device: str | None, call_peer: str | None = None) -> None:
    if not sys.stdin.isatty():
        raise ValidationError("the interactive client needs a terminal: use --wav FILE to page "
                              "from a file")
    from ptt.audio.devices import CaptureSource, PlaybackSink

    with StopSignals() as signals:  # from the start: a stop key is never lost
        conn, config, _ = await open_and_join(state, [group] if group else [])
        try:
            if call_peer is not None:
                group = await conn.call(call_peer, state.timeout)
                click.echo(f"call open with {call_peer}" + (
                    "" if await peer_online(conn, group, call_peer, PEER_GRACE) else
                    f": {call_peer} is not online, the call rings when {call_peer} logs in"))
            assert group is not None
            capture = CaptureSource(input_device if input_device is not None
                                    else config.input_device)
            try:
                playback = PlaybackSink(output_device if output_device is not None
                                        else config.output_device)
            except BaseException:
                capture.close()
                raise
            try:
                term = Terminal(conn, group, capture, playback,
                                ToneSet(**dataclasses.asdict(config.tones)), config.bitrate)
                term.quit = signals.stop
                term.show_pages(page_device(state.config_path))
                await _interact(term)
                if term.ended is not None:
                    raise RequestError(f"session ended by the server: {term.ended}")
            finally:
                capture.close()
                playback.close()
        finally:
            await conn.close()
    signals.raise_if_caught()


async def _interact(term: Terminal) -> None:
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    events = term.conn.subscribe()
    listen_stop = asyncio.Event()
    listening = asyncio.create_task(term.listener.run(listen_stop))
    tty.setcbreak(fd)
    loop.add_reader(fd, lambda: term.on_key(os.read(fd, 1).decode(errors="ignore")))
    out = sys.stdout
    try:
        while not term.quit.is_set():
            while not events.empty():
                ev = events.get_nowait()
                term.on_event(ev)
                line = describe(ev, term.conn.user)
                if line is not None and not isinstance(ev, cl.FloorStateChanged):
                    out.write(f"\r\x1b[K{stamp()}  {line}\n")
            while term.notices:
                out.write(f"\r\x1b[K{stamp()}  {term.notices.pop(0)}\n")
            term.refresh(loop.time())
            out.write("\r\x1b[K" + status_line(term.view, loop.time()))
            out.flush()
            try:
                await asyncio.wait_for(term.quit.wait(), REDRAW)
            except TimeoutError:
                pass
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        term._stop_talking()
        for name in {term.group, term.keyed}:
            if term.conn.core.participation(name) is not cl.Participation.NO_PERMISSION:
                term.conn.drop_floor(name)
        listen_stop.set()
        await listening
        term.conn.unsubscribe(events)
        out.write("\r\x1b[K")
        out.flush()
