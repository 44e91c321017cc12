"""Playout of several monitored groups into one sink: the highest-priority group wins.

One :class:`~ptt.media.playout.PlayoutChannel` per group; voice datagrams are sorted to them by
the group id in the voice header. On every tick of the sink's clock every receiver is popped (so
each jitter buffer keeps time whether heard or not) and the first group in priority order that
is not muted and has a frame is played; lower groups are dropped, not queued, since stale speech
is worse than missed speech on a pager. Local tones (permit, busy, end of burst, emergency) are
mixed on top. Sans-I/O: the engine calls :meth:`receive` and :meth:`tick` with ``now``::

    mix = GroupMixer(tones)
    mix.set_group("volunteers", group_id=3); mix.set_order(["drivers", "volunteers"])
    mix.receive(datagram, now)                     # every voice datagram
    sink.write(mix.tick(now))                      # every 20 ms, on the sink's clock

Encrypted groups: the engine sets :attr:`GroupMixer.opener` to the connection's
:meth:`~ptt.client.keys.VoiceKeys.open_voice`; a frame it refuses (no key, in the clear in a
keyed group, forged, replayed) is dropped and counted in :attr:`GroupMixer.undecryptable`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ptt.audio.codec import OpusDecoder
from ptt.audio.streams import SILENCE
from ptt.audio.tones import ToneSet, overlay
from ptt.media.playout import FrameOpener, Opener, PlayoutChannel
from ptt.media.receiver import Decoder, LossReport
from ptt.wire.voice import VoiceHeader

__all__ = ["GroupMixer"]


@dataclass
class _Group:
    """One group of the desktop: its playout channel and how the mix treats it."""

    channel: PlayoutChannel
    muted: bool = False
    frames_heard: int = 0  # frames of this group that reached the sink
    frames_dropped: int = 0  # frames decoded but beaten by a higher group or muted
    audible: bool = False  # some of the current burst was heard: it earns an end tone

    @property
    def name(self) -> str:
        return self.channel.name


class GroupMixer:
    """Decides, every 20 ms, which group's voice is heard."""

    def __init__(self, tones: ToneSet | None = None,
                 decoder: Callable[[], Decoder] = OpusDecoder,
                 opener: Opener | None = None) -> None:
        self.tones = tones or ToneSet.none()
        self.frames = FrameOpener(opener)  # None: every group's voice is in the clear
        self._decoder = decoder
        self._channels: dict[str, _Group] = {}
        self._by_id: dict[int, _Group] = {}
        self._tone: deque[bytes] = deque()
        self.heard: str | None = None  # the group heard on the last tick
        # loss feedback due after the last tick, (group, burst, report): the engine sends it
        self.due_reports: list[tuple[str, int, LossReport]] = []

    @property
    def opener(self) -> Opener | None:
        return self.frames.opener

    @opener.setter
    def opener(self, opener: Opener | None) -> None:
        self.frames.opener = opener

    @property
    def malformed(self) -> int:
        return self.frames.malformed

    @property
    def undecryptable(self) -> int:
        return self.frames.undecryptable

    # --- configuration ------------------------------------------------------------------------

    def set_group(self, name: str, group_id: int) -> None:
        ch = self._channel(name)
        if ch.channel.group_id is not None:
            self._by_id.pop(ch.channel.group_id, None)
        ch.channel.group_id = group_id
        self._by_id[group_id] = ch

    def set_order(self, names: Iterable[str]) -> None:
        """Priority order, highest first; groups not named keep their place after those named."""
        names = list(names)
        rest = [n for n in self._channels if n not in names]
        for n in names:
            self._channel(n)
        self._channels = {n: self._channels[n] for n in names + rest}

    def set_muted(self, name: str, muted: bool) -> None:
        self._channel(name).muted = muted

    def expect(self, name: str, burst_id: int | None) -> None:
        """The floor announced ``burst_id`` in ``name``: play only that burst there."""
        self._channel(name).channel.expect(burst_id)

    def stats(self, name: str) -> tuple[int, int]:
        """(frames heard, frames dropped) of one group."""
        ch = self._channel(name)
        return ch.frames_heard, ch.frames_dropped

    def play_tone(self, kind: str) -> None:
        """Queue a local tone (``talk_permit``, ``busy``, ``end_of_burst``, ``emergency``,
        ``page``)."""
        self._tone.extend(self.tones.frames(kind))

    # --- media --------------------------------------------------------------------------------

    def receive(self, datagram: bytes, now: float) -> tuple[VoiceHeader, bytes] | None:
        """One voice datagram as it arrived; the opened frame when it is to be played (for the
        connection's receipts), None when dropped."""
        opened = self.frames.open(datagram, lambda group_id: group_id in self._by_id)
        if opened is None:
            return None
        ch = self._by_id.get(opened[0].group_id)
        if ch is not None and ch.channel.receive(*opened, now):
            return opened
        return None

    def tick(self, now: float) -> bytes:
        """The frame for the sink's tick at ``now`` (silence when nothing is due)."""
        chosen: bytes | None = None
        self.heard = None
        self.due_reports.clear()
        for ch in self._channels.values():
            t = ch.channel.tick(now)
            if t.report is not None:
                self.due_reports.append((ch.name, *t.report))
            if t.pcm is not None:
                if chosen is None and not ch.muted:
                    chosen, self.heard = t.pcm, ch.name
                    ch.frames_heard += 1
                    ch.audible = True
                else:
                    ch.frames_dropped += 1
            if t.ended is not None:
                self._burst_over(ch)
        tone = self._tone.popleft() if self._tone else None
        if tone is None:
            return chosen if chosen is not None else SILENCE
        if chosen is None:
            return tone
        return overlay(chosen, tone)

    def _burst_over(self, ch: _Group) -> None:
        if ch.audible and not ch.muted:
            self.play_tone("end_of_burst")
        ch.audible = False

    def _channel(self, name: str) -> _Group:
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = _Group(PlayoutChannel(name, self._decoder()))
        return ch
