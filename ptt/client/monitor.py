"""A dispatcher's monitor: one connection hears several groups at once, mixed into one sink.

Unlike the desktop's :class:`~ptt.desktop.mixer.GroupMixer` (the highest group wins, the others
are dropped), a dispatch console's scan must not lose anyone: every group's current burst is
heard, summed and clipped to the 16-bit range. What stands out:

- **priority groups** (``ptt listen --priority GROUP``) and **emergency bursts** are "in front":
  while one of them has a talker (from the floor announcement until its jitter buffer has played
  out), every group not in front is ducked by :data:`DUCK_DB` (-12 dB: still intelligible, clearly
  behind). Front groups are always at full level, so two of them talking at once are both heard.
- an emergency burst gets the alert tone (as :class:`~ptt.client.voice.Listener` plays it), and
  every burst end the roger beep, both mixed on top.
- gains move in a straight line across one 20 ms frame, so ducking never clicks.

Two layers, as elsewhere in ptt: :class:`MonitorMixer` is sans-I/O (frames in with ``now``, one
mixed frame out per tick), :class:`Monitor` drives it from a :class:`Connection` and a
:class:`~ptt.audio.streams.ClockedSink`::

    monitor = Monitor(conn, ["volunteers", "medics"], PacedSink(WavSink(out)),
                      priority=["medics"])
    await monitor.run(stop_event)      # plays until stop is set
    monitor.stats("medics")            # frames heard, frames ducked, bursts, alerts

Voice of keyed groups is opened with the connection's :class:`~ptt.client.keys.VoiceKeys`;
frames in the clear or that do not open are dropped and counted, as the Listener does.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ptt.audio.codec import OpusDecoder
from ptt.audio.streams import SILENCE, ClockedSink
from ptt.audio.tones import ToneSet
from ptt.client.calls import call_peer
from ptt.client.connection import Connection
from ptt.client.keys import VoiceKeys
from ptt.errors import ValidationError
from ptt.media.playout import FrameOpener, PlayoutChannel
from ptt.media.receiver import Decoder, LossReport
from ptt.names import is_call_group_name
from ptt.protocol import client as cl
from ptt.protocol import messages as m
from ptt.wire.voice import VoiceHeader

__all__ = ["DUCK_DB", "BurstNotice", "GroupStats", "Monitor", "MonitorMixer", "burst_notice"]

DUCK_DB = -12.0  # level of groups behind a talking priority group or emergency burst
_FULL = 1.0
_LIMIT = 32767.0


@dataclass(frozen=True, slots=True)
class BurstNotice:
    """A burst starting in a monitored group: what the dispatcher's scan line says."""

    group: str
    talker: str
    priority: m.Priority = m.Priority.NORMAL

    @property
    def emergency(self) -> bool:
        return self.priority == m.Priority.EMERGENCY

    def line(self) -> str:
        """``[volunteers] ann talking``, ``[medics] bob: EMERGENCY`` or ``[call] ann talking``."""
        where = "call" if is_call_group_name(self.group) else self.group
        if self.emergency:
            return f"[{where}] {self.talker}: EMERGENCY"
        return f"[{where}] {self.talker} talking"


def burst_notice(ev: cl.ClientEvent, groups: Iterable[str], me: str) -> BurstNotice | None:
    """The notice for a floor event that starts someone else's burst in ``groups`` or in a call
    with ``me``, else None.

    A call counts whether or not the mixer has added its group yet: the mixer learns of the call
    in its own task, which may run after the caller's first floor news reached the scan line.
    """
    if (isinstance(ev, cl.TalkerChanged) and ev.talker is not None and ev.talker != me
            and (ev.group in groups or call_peer(ev.group, me) is not None)):
        return BurstNotice(ev.group, ev.talker, ev.priority)
    return None


@dataclass(frozen=True, slots=True)
class GroupStats:
    """What one monitored group contributed (``MonitorMixer.stats(name)``)."""

    frames_heard: int  # voice frames mixed in (at any level)
    frames_ducked: int  # of those, frames mixed below full level
    bursts: int  # bursts announced by the floor (not our own)
    alerts: int  # of those, emergency bursts


@dataclass
class _Group:
    """One monitored group: its playout channel and how the mix treats it."""

    channel: PlayoutChannel
    front: bool  # a --priority group: never ducked, ducks the others while it talks
    talker: str | None = None
    emergency: bool = False  # the current burst was announced as an emergency
    gain: float = _FULL
    frames_heard: int = 0
    frames_ducked: int = 0
    bursts: int = 0
    alerts: int = 0

    @property
    def name(self) -> str:
        return self.channel.name

    @property
    def in_front(self) -> bool:
        return self.front or self.emergency

    @property
    def active(self) -> bool:
        # from the announcement (before the first frame arrives) until the buffer played out
        return self.talker is not None or self.channel.sounding


class MonitorMixer:
    """Every group's burst, summed each 20 ms tick; sans-I/O (the caller passes ``now``)."""

    def __init__(self, groups: Iterable[str], priority: Iterable[str] = (),
                 tones: ToneSet | None = None, decoder: Callable[[], Decoder] = OpusDecoder,
                 duck_db: float = DUCK_DB) -> None:
        names = list(dict.fromkeys(groups))
        front = set(priority)
        unknown = sorted(front - set(names))
        if unknown:
            raise ValidationError(f"priority group {', '.join(unknown)} is not one of the "
                                  f"monitored groups ({', '.join(names)})")
        if not names:
            raise ValidationError("no group to monitor")
        self.tones = tones or ToneSet.none()
        self.duck = 10 ** (duck_db / 20)
        self._decoder = decoder
        self._channels = {n: _Group(PlayoutChannel(n, decoder()), n in front) for n in names}
        self._by_id: dict[int, _Group] = {}
        self._tone: deque[bytes] = deque()
        self._alert: deque[bytes] = deque()
        self.heard: tuple[str, ...] = ()  # groups with voice in the last tick's frame
        self.ducking = False  # the last tick ducked the groups not in front
        self.foreign = 0  # voice of a group not monitored
        # loss feedback: (group, burst, report) due after the last tick, for the server, and
        # (group, reception) of the bursts that ended in it
        self.due_reports: list[tuple[str, int, LossReport]] = []
        self.ended: list[tuple[str, LossReport]] = []

    @property
    def groups(self) -> list[str]:
        return list(self._channels)

    def add_group(self, name: str, front: bool = False) -> None:
        """Monitor ``name`` too (a call that rang: in front, like an emergency)."""
        if name not in self._channels:
            self._channels[name] = _Group(PlayoutChannel(name, self._decoder()), front)

    def remove_group(self, name: str) -> None:
        ch = self._channels.pop(name, None)
        if ch is not None and ch.channel.group_id is not None:
            self._by_id.pop(ch.channel.group_id, None)

    def set_group(self, name: str, group_id: int) -> None:
        """The server's id of ``name`` (from its join answer): voice is sorted by it."""
        ch = self._channels[name]
        if ch.channel.group_id is not None:
            self._by_id.pop(ch.channel.group_id, None)
        ch.channel.group_id = group_id
        self._by_id[group_id] = ch

    def talker_changed(self, name: str, talker: str | None, burst_id: int | None,
                       priority: m.Priority = m.Priority.NORMAL) -> None:
        """The floor of ``name`` moved: to ``talker``'s burst ``burst_id``, or idle (None).
        The caller leaves out bursts of its own user (a monitor does not hear itself)."""
        ch = self._channels[name]
        ch.talker = talker
        ch.emergency = talker is not None and priority == m.Priority.EMERGENCY
        if talker is None:
            return
        ch.channel.expect(burst_id)
        ch.bursts += 1
        if ch.emergency:
            ch.alerts += 1
            self._alert.extend(self.tones.frames("emergency"))

    def receive(self, header: VoiceHeader, payload: bytes, now: float) -> bool:
        """One voice frame (opened, if its group is keyed) as it arrived at ``now``; False
        when it is not played (another group, or dropped by the group's receiver)."""
        ch = self._by_id.get(header.group_id)
        if ch is None:
            self.foreign += 1
            return False
        return ch.channel.receive(header, payload, now)

    def stats(self, name: str) -> GroupStats:
        ch = self._channels[name]
        return GroupStats(ch.frames_heard, ch.frames_ducked, ch.bursts, ch.alerts)

    def channel(self, name: str) -> PlayoutChannel:
        return self._channels[name].channel

    @property
    def sounding(self) -> bool:
        """Some group's burst is still playing (its end has not been reported)."""
        return any(ch.channel.sounding for ch in self._channels.values())

    def tick(self, now: float) -> bytes:
        """The mixed frame for the sink's tick at ``now`` (silence when nobody talks).

        Every receiver is popped on every tick, so each jitter buffer keeps time."""
        self.ducking = any(ch.in_front and ch.active for ch in self._channels.values())
        mix: np.ndarray | None = None
        heard = []
        self.due_reports.clear()
        self.ended.clear()
        for ch in self._channels.values():
            target = _FULL if ch.in_front or not self.ducking else self.duck
            t = ch.channel.tick(now)
            if t.report is not None:
                self.due_reports.append((ch.name, *t.report))
            if t.pcm is None:
                if t.ended is not None:
                    self._burst_over(ch, t.ended)
                ch.gain = target  # nothing to ramp over: the next frame starts at its level
                continue
            ch.frames_heard += 1
            if target < _FULL:
                ch.frames_ducked += 1
            x = np.frombuffer(t.pcm, "<i2").astype(np.float32)
            if ch.gain != target:
                x *= np.linspace(ch.gain, target, len(x), dtype=np.float32)
                ch.gain = target
            elif target != _FULL:
                x *= target
            mix = x if mix is None else mix + x
            heard.append(ch.name)
            if t.ended is not None:
                self._burst_over(ch, t.ended)
        self.heard = tuple(heard)
        for queue in (self._alert, self._tone):
            if queue:
                tone = np.frombuffer(queue.popleft(), "<i2").astype(np.float32)
                mix = tone if mix is None else mix + tone
        if mix is None:
            return SILENCE
        # summed voices may exceed the sample range: clip (never wrap around)
        return bytes(np.clip(np.rint(mix), -_LIMIT - 1, _LIMIT).astype("<i2").tobytes())

    def _burst_over(self, ch: _Group, reception: LossReport) -> None:
        self._tone.extend(self.tones.frames("end_of_burst"))
        self.ended.append((ch.name, reception))


class Monitor:
    """Plays every group in ``groups`` (all joined on ``conn``) mixed into ``sink``;
    ``run()`` until ``stop`` is set. ``priority``: groups that duck the others while they talk."""

    def __init__(self, conn: Connection, groups: Iterable[str], sink: ClockedSink, *,
                 priority: Iterable[str] = (), tones: ToneSet | None = None,
                 duck_db: float = DUCK_DB) -> None:
        self.conn = conn
        self.sink = sink
        self.mixer = MonitorMixer(groups, priority, tones, duck_db=duck_db)
        self.keys = VoiceKeys.of(conn)
        self.frames = FrameOpener(self.keys.open_voice)
        self.frames_out = 0
        self._events = conn.subscribe()
        # (group, what was received of a burst) as each burst ends
        self.on_burst_end: Callable[[str, LossReport], None] | None = None

    @property
    def groups(self) -> list[str]:
        return self.mixer.groups

    @property
    def malformed(self) -> int:
        return self.frames.malformed

    @property
    def undecryptable(self) -> int:
        return self.frames.undecryptable

    def stats(self, name: str) -> GroupStats:
        return self.mixer.stats(name)

    def _follow(self) -> None:
        """Take ids and current talkers from the connection's view (joins made before run)."""
        for name in list(self.conn.core.groups):
            if call_peer(name, self.conn.user) is not None:
                self.mixer.add_group(name, front=True)
        for name in self.groups:
            g = self.conn.core.groups.get(name)
            if g is None or g.state is None:
                continue
            self.mixer.set_group(name, g.state.group_id)
            if g.talker is not None and g.talker != self.conn.user:
                self.mixer.talker_changed(name, g.talker, g.talker_burst)

    def _handle(self, ev: cl.ClientEvent) -> None:
        if isinstance(ev, cl.GroupJoined) and call_peer(ev.state.group, self.conn.user):
            # a call to this dispatcher: heard in front of the groups, like an emergency
            self.mixer.add_group(ev.state.group, front=True)
        elif isinstance(ev, cl.GroupLeft) and call_peer(ev.group, self.conn.user):
            self.mixer.remove_group(ev.group)
        if isinstance(ev, cl.GroupJoined) and ev.state.group in self.mixer.groups:
            self.mixer.set_group(ev.state.group, ev.state.group_id)
        elif isinstance(ev, cl.TalkerChanged) and ev.group in self.mixer.groups:
            mine = ev.talker is not None and ev.talker == self.conn.user
            self.mixer.talker_changed(ev.group, None if mine else ev.talker,
                                      ev.burst_id, ev.priority)

    def _drain(self) -> None:
        while not self._events.empty():
            self._handle(self._events.get_nowait())

    def _on_voice(self, datagram: bytes) -> None:
        self._drain()  # floor news first: a burst's first frames may beat the next tick
        opened = self.frames.open(datagram)
        if opened is None:
            return
        if self.mixer.receive(*opened, asyncio.get_running_loop().time()):
            self.conn.receipts.heard(*opened)

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        previous = self.conn.on_voice
        self.conn.on_voice = self._on_voice
        self._follow()
        try:
            while not stop.is_set():
                self._drain()
                await self.sink.wait_ready()
                self.sink.write(self.mixer.tick(loop.time()))
                self.frames_out += 1
                for group, burst, report in self.mixer.due_reports:
                    self.conn.report_reception(group, burst, report)
                if self.on_burst_end is not None:
                    for group, reception in self.mixer.ended:
                        self.on_burst_end(group, reception)
        finally:
            self.conn.on_voice = previous
            self.conn.unsubscribe(self._events)
