"""The client's voice path, joining a :class:`Connection` to audio sources and sinks.

- :class:`Talker`: frames from a source -> Opus -> :class:`~ptt.media.sender.Packetizer` ->
  voice datagrams, sent only while this client holds the floor (the burst id comes from the grant).
- :class:`Listener`: voice datagrams -> :class:`~ptt.media.playout.PlayoutChannel` (jitter buffer,
  redundancy, FEC, concealment) -> a sink, one frame per tick of the sink's own clock. It follows
  the floor announcements, so it plays only the burst the server said is current, and it plays
  the end-of-burst tone when a talker stops.

Typical use (what ``ptt talk --wav`` and ``ptt listen`` do)::

    talker = Talker(conn, "volunteers")
    await conn.request_floor("volunteers"); await conn.wait_floor("volunteers")
    await talker.send(WavSource(path, realtime=True))
    await conn.release_floor("volunteers")

    listener = Listener(conn, "volunteers", PacedSink(WavSink(out)))
    await listener.run(stop_event)
    listener.stats                      # frames played, and what was dropped and why

Late entry: a listener that joins (or starts) mid-burst expects the burst the join answer names
and plays its first frame one jitter-buffer delay (40 ms at first) after that frame arrives.

Loss feedback: every listener reports what it receives about once a second while a burst plays
(``ReceptionReports``, sent as a ``ReceiverReport``), the server sums the group up for the talker
(``ptt.protocol.feedback``), and the Talker's :class:`~ptt.media.sender.RedundancyPolicy` sets the
copies per packet and their offsets from it, frame by frame; ``on_link`` hears each change
(:class:`LinkChange`, what ``ptt talk`` prints). A listener's reception of each burst is
``Listener.last_burst``.

End-to-end encryption: in a group with a key (``GroupState.key_epoch`` > 0) the talker seals every
frame with the group's current key and the listener opens it, both through the connection's
:class:`~ptt.client.keys.VoiceKeys`. Without its key a member cannot talk there (PttError) and
hears nothing; frames in the clear or that fail to open are dropped and counted
(``ListenerStats.undecryptable``). Plain groups (key epoch 0) send and play frames in the clear.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ptt.audio.codec import DEFAULT_BITRATE, OpusEncoder
from ptt.audio.levels import Level, frame_level
from ptt.audio.streams import SILENCE, ClockedSink, FrameSource
from ptt.audio.tones import ToneSet, overlay
from ptt.client.calls import call_peer
from ptt.client.connection import Connection
from ptt.client.keys import VoiceKeys
from ptt.errors import PttError
from ptt.media.playout import FrameOpener, PlayoutChannel
from ptt.media.receiver import LossReport
from ptt.media.sender import START_REDUNDANCY, MediaSettings, Packetizer, RedundancyPolicy
from ptt.protocol import client as cl
from ptt.protocol import messages as m
from ptt.wire.voice import encode_voice

log = logging.getLogger("ptt.voice")


@dataclass(frozen=True, slots=True)
class ListenerStats:
    """What a :class:`Listener` played and what it refused (``Listener.stats``)."""

    frames_played: int
    foreign: int  # dropped by the receiver: another group's datagram, or not the current burst
    malformed: int
    not_holder: int  # multicast frames from a member without the floor (whole connection)
    wrong_burst: int  # multicast frames from the holder, of another burst (whole connection)
    first_audio_at: float | None  # loop time of the first voice frame played
    undecryptable: int = 0  # keyed group: in the clear, or did not open (forged, no key, replay)

    @property
    def dropped(self) -> int:
        return (self.foreign + self.malformed + self.not_holder + self.wrong_burst
                + self.undecryptable)


@dataclass(frozen=True, slots=True)
class LinkChange:
    """What the talker learnt of its listeners' link and the protection it chose for it."""

    loss: float  # the 90th-percentile listener's loss fraction (the worst of up to nine)
    mean_run: float  # mean run of lost frames
    listeners: int  # reports summed up
    settings: MediaSettings

    def line(self) -> str:
        """``link: 12% loss (runs of 2.1) -> 3 copies at offsets 2,4,6``."""
        pct = f"{self.loss * 100:.1f}".rstrip("0").rstrip(".")
        runs = f" (runs of {self.mean_run:.1f})" if self.loss > 0 and self.mean_run >= 1.05 else ""
        return f"link: {pct}% loss{runs} -> {protection_text(self.settings)}"


def protection_text(settings: MediaSettings) -> str:
    """``no copies``, ``1 copy at offset 1``, ``2 copies at offsets 2,4``."""
    offsets = settings.offsets
    if not offsets:
        return "no copies"
    if len(offsets) == 1:
        text = f"1 copy at offset {offsets[0]}"
    else:
        text = f"{len(offsets)} copies at offsets {','.join(map(str, offsets))}"
    if settings.max_bitrate is not None:
        text += f", Opus at most {settings.max_bitrate / 1000:g} kbit/s"
    if settings.min_bitrate is not None:
        text += f", Opus at least {settings.min_bitrate / 1000:g} kbit/s"
    return text


def reception_text(r: LossReport) -> str:
    """What a listener received of a burst: ``received 98.5% (3 of 200 frames lost)``, and
    ``; 12 came too late to play`` when this side was slow (the network delivered those)."""
    if not r.frames:
        return "nothing received"
    got = f"{(1 - r.loss_fraction) * 100:.1f}".rstrip("0").rstrip(".")
    runs = f", runs of {r.mean_loss_run:.1f}" if r.lost and r.mean_loss_run >= 1.05 else ""
    late = f"; {r.late} came too late to play" if r.late else ""
    return f"received {got}% ({r.lost} of {r.frames} frames lost{runs}{late})"


@dataclass
class BurstReport:
    frames: int
    bytes_sent: int
    reason: str  # "source ended", "released", "floor lost", "max frames"


class Talker:
    """Sends bursts for one group; keeps one encoder across bursts."""

    def __init__(
        self,
        conn: Connection,
        group: str,
        *,
        bitrate: int = DEFAULT_BITRATE,
        redundancy: int = START_REDUNDANCY,
        on_level: Callable[[Level], None] | None = None,
        on_link: Callable[[LinkChange], None] | None = None,
        on_sent: Callable[[int, int], None] | None = None,
    ) -> None:
        self.conn = conn
        self.group = group
        # Redundancy repairs loss exactly; Opus in-band FEC would take its bits from the voice
        # itself (libopus 1.3.1), so the talker starts as the policy says: FEC data off. The
        # policy lives as long as the talker: a next burst starts from what the last one learnt.
        self.policy = RedundancyPolicy()
        self.policy.start(redundancy)
        self.bitrate = bitrate  # configured; the policy may lower it under heavy loss
        self.encoder = OpusEncoder(bitrate=self.policy.settings.bitrate(bitrate),
                                   expected_loss=self.policy.settings.expected_loss)
        self.on_level = on_level
        self.on_link = on_link
        self.on_sent = on_sent  # (burst id, seq) as each voice datagram leaves: timing logs
        self.link: LinkChange | None = None  # the last report heard, and what it led to
        self.keys = VoiceKeys.of(conn)

    def _adapt(self, ev: cl.LinkReported, pk: Packetizer, first: bool) -> None:
        before = self.policy.settings
        settings = self.policy.update(ev.loss, ev.mean_run)
        pk.offsets = settings.offsets
        if settings.expected_loss != before.expected_loss:
            self.encoder.set_expected_loss(settings.expected_loss)
        if settings.bitrate(self.bitrate) != before.bitrate(self.bitrate):
            self.encoder.set_bitrate(settings.bitrate(self.bitrate))
        self.link = LinkChange(ev.loss, ev.mean_run, ev.listeners, settings)
        if (first or settings != before) and self.on_link is not None:
            self.on_link(self.link)

    async def send(
        self,
        source: FrameSource,
        stop: asyncio.Event | None = None,
        max_frames: int | None = None,
    ) -> BurstReport:
        """Send frames from ``source`` for the burst this client holds, until the source ends,
        ``stop`` is set, ``max_frames`` are sent or the floor is lost. Frames read while the
        floor is not held are not sent."""
        route = self.conn.core.talk_route(self.group)
        if route is None:
            raise PttError(f"you do not hold the floor in '{self.group}'")
        group_id, sender, burst = route
        # a keyed group's burst is sealed with the key current now, to its end; no key, no talk
        sealer = self.keys.sealer(self.group)

        def send(datagram: bytes) -> None:
            self.conn.send_voice(datagram)
            if self.on_sent is not None:
                self.on_sent(burst, (pk.seq - 1) & 0xFFFF)

        pk = Packetizer(group_id, sender, burst, offsets=self.policy.settings.offsets,
                        seal=encode_voice if sealer is None else sealer.seal)
        self.encoder.reset()
        frames = 0
        reason = "source ended"
        reports = self.conn.subscribe()
        heard = False  # a report of this burst: the first one is shown even if nothing changes
        try:
            while True:
                while not reports.empty():  # the listeners' link, summed up by the server
                    ev = reports.get_nowait()
                    if isinstance(ev, cl.LinkReported) and ev.group == self.group and (
                            ev.burst_id == burst):
                        self._adapt(ev, pk, first=not heard)
                        heard = True
                frame = await self._next_frame(source, stop, max_frames, frames)
                if isinstance(frame, str):
                    reason = frame
                    break
                if self.conn.core.talk_route(self.group) != route:
                    reason = "floor lost"
                    break
                if self.on_level is not None:
                    self.on_level(frame_level(frame))
                send(pk.packetize(self.encoder.encode(frame)))
                frames += 1
        finally:
            self.conn.unsubscribe(reports)
        if reason != "floor lost":
            # a closing frame of silence carries END_OF_BURST so listeners end at once
            send(pk.packetize(self.encoder.encode(SILENCE), last=True))
        return BurstReport(frames, pk.bytes_sent, reason)

    @staticmethod
    async def _next_frame(source: FrameSource, stop: asyncio.Event | None,
                          max_frames: int | None, frames: int) -> bytes | str:
        """The next frame to send, or why the burst ends."""
        if stop is not None and stop.is_set():
            return "released"
        if max_frames is not None and frames >= max_frames:
            return "max frames"
        frame = await source.read()
        return "source ended" if frame is None else frame


class Listener:
    """Plays one group's current burst into ``sink``; ``run()`` until ``stop`` is set.

    Calls to this user (private groups the server puts it in, :mod:`ptt.client.calls`) are
    played too, mixed over the group: a call reaches whatever client its callee runs."""

    def __init__(
        self,
        conn: Connection,
        group: str,
        sink: ClockedSink,
        tones: ToneSet | None = None,
    ) -> None:
        self.conn = conn
        self.group = group
        self.sink = sink
        self.tones = tones or ToneSet.none()
        self.channel = PlayoutChannel(group)
        self.frames_played = 0  # frames of voice (not silence or tones) written to the sink
        self.first_audio_at: float | None = None
        self._pending_tone: deque[bytes] = deque()
        self._alert: deque[bytes] = deque()  # the emergency alert, mixed over what plays
        self.alerts = 0  # emergency bursts announced to this listener
        self._events = conn.subscribe()
        self.keys = VoiceKeys.of(conn)
        self.frames = FrameOpener(self.keys.open_voice)
        self.calls: dict[str, PlayoutChannel] = {}  # call group -> its channel
        self.call_frames = 0  # frames of call voice played (also counted in frames_played)
        self.last_burst: LossReport | None = None  # what was received of the last burst heard
        # (the group's or the call's name, what was received of its burst) as each burst ends
        self.on_burst_end: Callable[[str, LossReport], None] | None = None
        # (burst id, seq, source) of each frame of the group's burst as it is written to the
        # sink: timing logs (``ptt listen --timing``)
        self.on_played: Callable[[int, int, str], None] | None = None

    @property
    def sounding(self) -> bool:
        """A burst is playing: its end (and ``on_burst_end``) has not come yet."""
        return self.channel.playing or any(ch.playing for ch in self.calls.values())

    @property
    def stats(self) -> ListenerStats:
        rx, conn = self.channel.receiver, self.conn.voice_stats
        return ListenerStats(self.frames_played, rx.foreign, rx.malformed + self.frames.malformed,
                             conn.not_holder, conn.wrong_burst, self.first_audio_at,
                             self.frames.undecryptable)

    def _on_voice(self, datagram: bytes) -> None:
        # floor news first: a new burst's first frames may come before this listener's next tick
        while not self._events.empty():
            self._handle(self._events.get_nowait())
        opened = self.frames.open(datagram)
        if opened is None:
            return
        group_id = opened[0].group_id
        ch = next((c for c in self.calls.values() if c.group_id == group_id), self.channel)
        if ch.receive(*opened, asyncio.get_running_loop().time()):
            self.conn.receipts.heard(*opened)

    def _follow(self, state_group_id: int | None = None) -> None:
        g = self.conn.core.groups.get(self.group)
        if g is not None and g.state is not None:
            self.channel.group_id = g.state.group_id
            if g.talker is not None and g.talker != self.conn.user:
                self.channel.expect(g.talker_burst)
        for name in list(self.conn.core.groups):
            self._follow_call(name)

    def _follow_call(self, name: str) -> None:
        """Hear the call ``name`` (once the connection has joined it)."""
        if name == self.group or call_peer(name, self.conn.user) is None:
            return
        g = self.conn.core.groups.get(name)
        if g is None or g.state is None:
            return
        ch = self.calls.get(name)
        if ch is None:
            ch = self.calls[name] = PlayoutChannel(name)
        ch.group_id = g.state.group_id
        if g.talker is not None and g.talker != self.conn.user:
            ch.expect(g.talker_burst)

    def _handle(self, ev: cl.ClientEvent) -> None:
        if isinstance(ev, cl.GroupJoined) and ev.state.group == self.group:
            self._follow()
        elif isinstance(ev, cl.GroupJoined):
            self._follow_call(ev.state.group)
        elif isinstance(ev, cl.TalkerChanged) and ev.group in self.calls:
            if ev.talker is not None and ev.talker != self.conn.user:
                self.calls[ev.group].expect(ev.burst_id)
        elif isinstance(ev, cl.TalkerChanged) and ev.group == self.group:
            # the talker stopped: nothing more of its burst is coming, lost END_OF_BURST or not
            current = self.channel.current_burst
            if ev.talker is None or (current is not None and current[1] != ev.burst_id):
                self.channel.talker_stopped()
            if ev.talker is not None and ev.talker != self.conn.user:
                self.channel.expect(ev.burst_id)
                if ev.priority == m.Priority.EMERGENCY:
                    self.alerts += 1
                    self._alert.extend(self.tones.frames("emergency"))
        elif isinstance(ev, cl.GroupLeft) and ev.group in self.calls:
            ch = self.calls.pop(ev.group)
            if ch.playing:  # the call ended under its burst: what was heard of it is all
                self._end_of_burst(ev.group, ch.finish_burst())

    def _calls_pcm(self, now: float, ended: list[tuple[str, LossReport]]) -> bytes | None:
        """This tick's call voice (several calls mixed), or None; every receiver is popped on
        every tick so each keeps time. A call's burst that ends on this tick goes to ``ended``."""
        out = None
        for group, ch in self.calls.items():
            t = ch.tick(now)
            if t.report is not None:  # the caller adapts to this callee's link too
                self.conn.report_reception(group, *t.report)
            if t.ended is not None:
                ended.append((group, t.ended))
            if t.pcm is not None:
                out = t.pcm if out is None else overlay(out, t.pcm)
        return out

    def _write(self, frame: bytes) -> None:
        self.sink.write(overlay(frame, self._alert.popleft()) if self._alert else frame)

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        previous = self.conn.on_voice
        self.conn.on_voice = self._on_voice
        self._follow()
        try:
            while not stop.is_set():
                while not self._events.empty():
                    self._handle(self._events.get_nowait())
                await self.sink.wait_ready()
                now = loop.time()
                # each channel ends its own burst: a call's reception is the call's, not the
                # group's that played nothing meanwhile
                t = self.channel.tick(now)
                pcm, item = t.pcm, t.item
                if t.report is not None:
                    self.conn.report_reception(self.group, *t.report)
                ended = [] if t.ended is None else [(self.group, t.ended)]
                call = self._calls_pcm(now, ended) if self.calls else None
                for name, reception in ended:
                    self._end_of_burst(name, reception)
                if call is not None:
                    self.call_frames += 1
                    pcm = call if pcm is None else overlay(pcm, call)
                if pcm is not None:
                    if self.first_audio_at is None:
                        self.first_audio_at = now
                    self.frames_played += 1
                    self._write(pcm)
                    burst = self.channel.current_burst
                    if self.on_played is not None and item is not None and burst is not None:
                        self.on_played(burst[1], item.seq, item.source.value)
                    continue
                self._write(self._pending_tone.popleft() if self._pending_tone else SILENCE)
        finally:
            self.conn.on_voice = previous
            self.conn.unsubscribe(self._events)

    def _end_of_burst(self, name: str, reception: LossReport) -> None:
        if not self.sounding:  # one end tone once the last of overlapping bursts is over
            self._pending_tone.extend(self.tones.frames("end_of_burst"))
        self.last_burst = reception
        if self.on_burst_end is not None:
            self.on_burst_end(name, reception)
