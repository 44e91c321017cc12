"""The asyncio side of the desktop client, in its own thread: network, floor, audio.

Tk wants the main thread and must never wait; asyncio wants a loop it runs itself. So the
:class:`Engine` runs an asyncio loop in a daemon thread and the two sides talk through two
one-way channels only:

- Tk -> engine: the public methods (:meth:`Engine.ptt_down`, :meth:`Engine.ptt_up`, ...) hop
  onto the loop with ``call_soon_threadsafe``; they never block.
- engine -> Tk: every protocol event and every :mod:`ptt.desktop.model` event goes into
  :attr:`Engine.events`, a ``queue.SimpleQueue`` the window drains from an ``after()`` tick.

Audio I/O is PortAudio callbacks feeding this loop, so a busy Tk never starves playout, and a
busy playout never freezes the window (measured: see tests/desktop/test_window.py).

Encrypted groups: the connection's :class:`~ptt.client.keys.VoiceKeys` opens what the mixer
plays and seals what the Talker sends. Signing keys of coordinators are pinned next to the
client config (``config_path``, else the default one) when it exists, as the CLI does, so a
changed coordinator key is refused on the next start too.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ptt.audio.streams import ClockedSink, FrameSource, NullSink, PacedSink
from ptt.audio.tones import ToneSet
from ptt.client.calls import call_peer
from ptt.client.connection import Connection, multicast_options
from ptt.client.keys import SIGNER_PINS, VoiceKeys, pins_path
from ptt.client.pages import PageInbox, ShownPage, page_device
from ptt.client.voice import Talker
from ptt.config import TONE_KINDS, ClientConfig
from ptt.desktop.mixer import GroupMixer
from ptt.desktop.model import (
    BurstEnded,
    ConnStatus,
    DesktopEvent,
    Failure,
    LevelUpdate,
    LinkUpdate,
    PageArrived,
)
from ptt.errors import PttError
from ptt.protocol import client as cl
from ptt.protocol import messages as m

__all__ = ["AudioFactory", "Engine", "default_audio"]

log = logging.getLogger("ptt.desktop")

RETRY_FIRST_S = 0.5
RETRY_CAP_S = 5.0
STOP_TIMEOUT_S = 5.0

EngineEvent = cl.ClientEvent | DesktopEvent


@dataclass(frozen=True)
class AudioFactory:
    """How the engine gets its microphone (one per burst) and its speaker (one per run)."""

    source: Callable[[], FrameSource]
    sink: Callable[[], ClockedSink]


def default_audio(config: ClientConfig) -> AudioFactory:
    """The sound card: the configured input and output devices (PortAudio)."""
    from ptt.audio.devices import CaptureSource, PlaybackSink

    return AudioFactory(source=lambda: CaptureSource(config.input_device),
                        sink=lambda: PlaybackSink(config.output_device))


class Engine:
    """One logged-in connection, the talk cycle and the group mixer; started by :meth:`start`."""

    def __init__(self, config: ClientConfig, audio: AudioFactory | None = None, *,
                 config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path  # where the config lives: the pins go next to it
        self.audio = audio or default_audio(config)
        self.events: queue.SimpleQueue[EngineEvent] = queue.SimpleQueue()
        self.mixer = GroupMixer(ToneSet(**{k: getattr(config.tones, k) for k in TONE_KINDS}))
        self.inbox: PageInbox | None = None
        self.conn: Connection | None = None
        self.keys: VoiceKeys | None = None
        self.bursts = 0  # bursts this client sent (each press-and-hold that got the floor: one)
        self.last_report: BurstEnded | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._talk_task: asyncio.Task[None] | None = None
        self._release: asyncio.Event | None = None
        self._talkers: dict[str, Talker] = {}
        self._ready = threading.Event()
        self._welcome_groups: list[str] = []
        self._latched = False  # an emergency call: the button no longer ends it

    # --- lifecycle (any thread) -----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._thread_main, name="ptt-engine", daemon=True)
        self._thread.start()
        self._ready.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Release the floor, say goodbye to the server and end the thread (bounded wait)."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)

    # --- commands from Tk (any thread, never block) ----------------------------------------------

    def ptt_down(self, group: str, priority: m.Priority = m.Priority.NORMAL) -> None:
        self._call(self._on_down, group, priority)

    def ptt_up(self) -> None:
        self._call(self._on_up)

    def emergency(self, group: str) -> None:
        """Start an emergency call in ``group``: emergency priority, latched until
        :meth:`end_emergency` (the person may need both hands)."""
        self._call(self._on_emergency, group)

    def end_emergency(self) -> None:
        self._call(self._on_end_emergency)

    def read_pages(self, pages: list[ShownPage]) -> None:
        """The person read these pages in the window: their read receipts go out."""
        self._call(self._on_read, list(pages))

    def _on_read(self, pages: list[ShownPage]) -> None:
        if self.inbox is not None:
            for page in pages:
                self.inbox.read(page)

    def set_order(self, groups: list[str]) -> None:
        self._call(self.mixer.set_order, list(groups))

    def set_muted(self, group: str, muted: bool) -> None:
        self._call(self.mixer.set_muted, group, muted)

    def _call(self, fn: Callable[..., object], *args: object) -> None:
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:
                pass  # the loop is shutting down: the command no longer matters

    def _post(self, ev: EngineEvent) -> None:
        self.events.put(ev)

    # --- the loop's thread ----------------------------------------------------------------------

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            self.config.require_login()
        except PttError as exc:
            self._post(ConnStatus(str(exc), False))
            return
        playout = asyncio.create_task(self._playout())
        forward: asyncio.Task[None] | None = None
        try:
            conn = await self._connect()
            if conn is not None:
                forward = asyncio.create_task(self._forward(conn, conn.subscribe()))
                self._post(ConnStatus(f"connected to {self.config.server} as {conn.user}", True))
                await self._join_all(conn, self._welcome_groups)
                self.inbox = PageInbox(conn, page_device(self.config_path))
                self.inbox.on_page.append(self._on_page)
                await self._stop.wait()
        finally:
            if self._talk_task is not None:
                self._talk_task.cancel()
                await asyncio.gather(self._talk_task, return_exceptions=True)
            for t in (playout, forward):
                if t is not None:
                    t.cancel()
                    await asyncio.gather(t, return_exceptions=True)
            if self.conn is not None:
                await self.conn.close()

    async def _connect(self) -> Connection | None:
        """Log in, retrying with backoff until it works or the window closes."""
        assert self._stop is not None
        user, token = self.config.require_login()
        delay = RETRY_FIRST_S
        while not self._stop.is_set():
            self._post(ConnStatus(f"connecting to {self.config.server}…", False))
            conn = Connection(self.config.address, user, token, multicast_options(self.config),
                              servers=self.config.other_servers)
            # before any grant arrives, and before the Talker asks: it sets where pins live
            self.keys = VoiceKeys.of(conn, pins_path(SIGNER_PINS, self.config_path))
            self.mixer.opener = self.keys.open_voice
            conn.on_voice = self._voice_to(conn)
            try:
                welcome = await conn.open()
            except PttError as exc:
                await conn.close()
                self._post(ConnStatus(f"{exc}; retrying", False))
                await _sleep_or(self._stop, delay)
                delay = min(delay * 2, RETRY_CAP_S)
                continue
            self.conn = conn
            self._welcome_groups = list(welcome.groups)
            self._post(welcome)
            return conn
        return None

    def _voice_to(self, conn: Connection) -> Callable[[bytes], None]:
        """The connection's voice handler: into the mixer, and what it plays into receipts."""
        def on_voice(datagram: bytes) -> None:
            played = self.mixer.receive(datagram, asyncio.get_running_loop().time())
            if played is not None:
                conn.receipts.heard(*played)
        return on_voice

    def _on_page(self, page: ShownPage) -> None:
        self.mixer.play_tone("emergency" if page.urgent else "page")
        self._post(PageArrived(page))

    async def _join_all(self, conn: Connection, groups: list[str]) -> None:
        results = await asyncio.gather(*(conn.join(g) for g in groups), return_exceptions=True)
        for g, r in zip(groups, results):
            if isinstance(r, PttError):
                self._post(Failure(f"cannot join {g}: {r}"))

    async def _forward(self, conn: Connection, q: asyncio.Queue[cl.ClientEvent]) -> None:
        """Protocol events to the window and to the mixer."""
        while True:
            ev = await q.get()
            if isinstance(ev, cl.GroupJoined):
                self.mixer.set_group(ev.state.group, ev.state.group_id)
                if call_peer(ev.state.group, conn.user) is not None:
                    self.mixer.set_order([ev.state.group])  # a call is heard over the groups
            elif isinstance(ev, cl.TalkerChanged):
                self.mixer.expect(ev.group, ev.burst_id if ev.talker not in (None, conn.user)
                                  else None)
            elif isinstance(ev, cl.Connected):
                self._post(ConnStatus(f"connected to {self.config.server} as {conn.user}", True))
            elif isinstance(ev, cl.Disconnected) and ev.final:
                self._post(ConnStatus(f"session ended by the server: {ev.reason}", False))
            elif isinstance(ev, cl.Disconnected):
                self._post(ConnStatus(f"reconnecting: {ev.reason}", False))
            self._post(ev)

    async def _playout(self) -> None:
        try:
            sink = self.audio.sink()
        except PttError as exc:
            self._post(Failure(f"no speaker: {exc}"))
            sink = PacedSink(NullSink())
        loop = asyncio.get_running_loop()
        try:
            while True:
                await sink.wait_ready()
                sink.write(self.mixer.tick(loop.time()))
                if self.conn is not None:  # loss feedback for the talkers we hear
                    for group, burst, report in self.mixer.due_reports:
                        self.conn.report_reception(group, burst, report)
        finally:
            sink.close()

    # --- the talk cycle -------------------------------------------------------------------------

    def _on_down(self, group: str, priority: m.Priority) -> None:
        if self.conn is None or not self.conn.connected:
            self._post(Failure("not connected"))
            return
        if self._talk_task is not None and not self._talk_task.done():
            return  # one hold at a time
        self._release = asyncio.Event()
        self._talk_task = asyncio.create_task(self._talk(group, priority, self._release))

    def _on_up(self) -> None:
        if self._release is not None and not self._latched:
            self._release.set()

    def _on_emergency(self, group: str) -> None:
        if self.conn is None or not self.conn.connected:
            self._post(Failure("not connected"))
            return
        old = self._talk_task
        self._latched = True
        release = self._release = asyncio.Event()

        async def call() -> None:
            if old is not None and not old.done():  # a normal request or burst: replace it
                old.cancel()
                await asyncio.gather(old, return_exceptions=True)
            await self._talk(group, m.Priority.EMERGENCY, release)

        self._talk_task = asyncio.create_task(call())

    def _on_end_emergency(self) -> None:
        self._latched = False
        self._on_up()

    async def _talk(self, group: str, priority: m.Priority, release: asyncio.Event) -> None:
        conn = self.conn
        assert conn is not None
        try:
            peer = call_peer(group, conn.user)
            g = conn.core.groups.get(group)
            if peer is not None and (g is None or peer not in g.online):
                await conn.call(peer)  # answering a caller who has left the call rings it again
            got = await _until(release, conn.request_floor(group, priority))
            if got is not None and got.state is cl.Participation.QUEUED:
                self.mixer.play_tone("busy")
                got = await _until(release, conn.wait_floor(group))
            if got is None:
                return  # let go before the floor came: the finally withdraws the request
            if got.state is not cl.Participation.HAS_PERMISSION:
                self.mixer.play_tone("busy")
                return
            self.mixer.play_tone("emergency" if priority is m.Priority.EMERGENCY
                                 else "talk_permit")
            await self._send_burst(conn, group, release)
        except PttError as exc:
            self._post(Failure(str(exc)))
        finally:
            if priority is m.Priority.EMERGENCY:
                self._latched = False
            if conn.core.participation(group) is not cl.Participation.NO_PERMISSION:
                await conn.release_floor(group)

    async def _send_burst(self, conn: Connection, group: str, release: asyncio.Event) -> None:
        talker = self._talkers.get(group)
        if talker is None:
            talker = self._talkers[group] = Talker(
                conn, group, bitrate=self.config.bitrate,
                on_level=lambda lv: self._post(LevelUpdate(lv)),
                on_link=lambda link: self._post(LinkUpdate(group, link.line())))
        try:
            source = self.audio.source()
        except PttError as exc:
            self._post(Failure(f"no microphone: {exc}"))
            return
        try:
            report = await talker.send(source, stop=release)
        finally:
            source.close()
        self.bursts += 1
        self.last_report = BurstEnded(group, report.frames, report.reason)
        self._post(self.last_report)


async def _until(release: asyncio.Event, aw: Awaitable[cl.FloorStateChanged]
                 ) -> cl.FloorStateChanged | None:
    """Await ``aw`` unless ``release`` is set first (then cancel it and return None)."""
    task = asyncio.ensure_future(aw)
    waiter = asyncio.ensure_future(release.wait())
    try:
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None


async def _sleep_or(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
