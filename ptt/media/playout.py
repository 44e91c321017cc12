"""One group's playout, as every listener of ptt plays it; the listeners keep only their mixing.

Every listener (``ptt listen``'s :class:`~ptt.client.voice.Listener`, the dispatcher's
:class:`~ptt.client.monitor.MonitorMixer`, the desktop's :class:`~ptt.desktop.mixer.GroupMixer`)
hears one or more groups and plays each through the same pieces, built here once:

- :class:`FrameOpener`: a voice datagram -> (header, plaintext payload), or the reason it cannot be
  played, counted (malformed, not a group of ours, did not open). Keyed groups' frames are opened
  by the connection's ``VoiceKeys.open_voice``, passed in as ``opener``; the recorder uses it too.
- :class:`PlayoutChannel`: one group's :class:`~ptt.media.receiver.BurstReceiver` (jitter buffer +
  its own decoder), its :class:`~ptt.media.receiver.ReceptionReports` (loss feedback for the
  talker) and where its burst stands (playing, ended).

::

    frames = FrameOpener(keys.open_voice)
    ch = PlayoutChannel("volunteers"); ch.group_id = 3; ch.expect(burst_id)
    opened = frames.open(datagram)               # every voice datagram
    if opened is not None: ch.receive(*opened, now)
    tick = ch.tick(now)                          # every 20 ms, on the sink's clock
    tick.pcm, tick.report, tick.ended            # voice to mix, feedback due, burst over

Sans-I/O like the rest of ``ptt.media``: ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ptt.audio.codec import OpusDecoder
from ptt.errors import ProtocolError
from ptt.media.jitter import PlayoutItem
from ptt.media.receiver import BurstReceiver, Decoder, LossReport, ReceptionReports
from ptt.wire.voice import VoiceHeader, decode_voice

__all__ = ["FrameOpener", "Opener", "PlayoutChannel", "Tick"]

# a received datagram -> (header, plaintext payload), or None to drop it (VoiceKeys.open_voice)
Opener = Callable[[bytes], tuple[VoiceHeader, bytes] | None]


class FrameOpener:
    """Opens voice datagrams for playout and counts, by reason, those that cannot be played."""

    def __init__(self, opener: Opener | None = None) -> None:
        self.opener = opener  # None: every group's voice is in the clear
        self.malformed = 0  # not a voice datagram
        self.foreign = 0  # a group the caller does not play
        self.undecryptable = 0  # keyed group: in the clear, or did not open (forged, no key, replay)

    def open(self, datagram: bytes, wanted: Callable[[int], bool] | None = None
             ) -> tuple[VoiceHeader, bytes] | None:
        """Header and plaintext payload of ``datagram``, or None when it is dropped.

        ``wanted(group_id)`` False drops the frame before it is opened: another group's key
        need not be tried, nor its refusal counted as this listener's."""
        if wanted is None and self.opener is not None:
            # the opener splits the datagram itself: a frame that opens is decoded once
            opened = self.opener(datagram)
            if opened is None:
                self._refused(datagram)
            return opened
        try:
            header, payload = decode_voice(datagram)
        except ProtocolError:
            self.malformed += 1
            return None
        if wanted is not None and not wanted(header.group_id):
            self.foreign += 1
            return None
        if self.opener is None:
            return header, payload
        opened = self.opener(datagram)
        if opened is None:
            self.undecryptable += 1
        return opened

    def _refused(self, datagram: bytes) -> None:
        """Count a datagram the opener refused: not a voice datagram, or it did not open."""
        try:
            decode_voice(datagram)
        except ProtocolError:
            self.malformed += 1
            return
        self.undecryptable += 1


@dataclass(frozen=True, slots=True)
class Tick:
    """What one group gives on one playout tick."""

    pcm: bytes | None  # the frame to play, or None: nothing of this group is due
    item: PlayoutItem | None  # what ``pcm`` was made from (sequence number, how it was restored)
    report: tuple[int, LossReport] | None  # (burst id, report) due to the server, if any
    ended: LossReport | None = None  # the burst ended on this tick: its whole reception

    @property
    def last(self) -> bool:
        """``pcm`` is the burst's END_OF_BURST frame."""
        return self.pcm is not None and self.item is not None and self.item.last


class PlayoutChannel:
    """One group's playout: receive its frames, pop one PCM frame per tick, report its loss."""

    def __init__(self, name: str, decoder: Decoder | None = None) -> None:
        self.name = name
        self.receiver = BurstReceiver(decoder if decoder is not None else OpusDecoder())
        self.reports = ReceptionReports()
        self.playing = False  # a burst was heard on this channel and has not ended

    @property
    def group_id(self) -> int | None:
        """The server's id of the group (from its join answer); frames of other ids are foreign."""
        return self.receiver.group_id

    @group_id.setter
    def group_id(self, group_id: int | None) -> None:
        self.receiver.group_id = group_id

    @property
    def sounding(self) -> bool:
        """True while the current burst's frames fall due (the jitter buffer has not run out)."""
        return self.receiver.buffer.playing

    @property
    def current_burst(self) -> tuple[int, int] | None:
        """(sender, burst_id) being played, or None before the first."""
        return self.receiver.current_burst

    def talker_stopped(self) -> None:
        """Nothing more of the current burst is coming (END_OF_BURST lost or not): it ends after
        the frames held."""
        self.receiver.finish()

    def expect(self, burst_id: int | None) -> None:
        """The floor announced ``burst_id``: play only that burst (None: whatever comes)."""
        self.receiver.expect(burst_id)

    def receive(self, header: VoiceHeader, payload: bytes, now: float) -> bool:
        """One opened frame as it arrived at ``now``; False when the receiver dropped it (another
        group or burst, or a malformed payload)."""
        return self.receiver.receive_parsed(header, payload, now)

    def pop(self, now: float) -> Tick:
        """This tick's frame and any loss report due, leaving burst ends to the caller."""
        pcm = self.receiver.pop(now)
        item = self.receiver.last_item
        return Tick(pcm, item, self.reports.poll(self.receiver, now))

    def tick(self, now: float) -> Tick:
        """As :meth:`pop`, and the burst ends after its END_OF_BURST frame or once its jitter
        buffer runs out (END_OF_BURST lost)."""
        t = self.pop(now)
        if t.pcm is None:
            if self.playing and not self.sounding:
                return Tick(None, t.item, t.report, self.finish_burst())
            return t
        self.playing = True
        if t.last:
            return Tick(t.pcm, t.item, t.report, self.finish_burst())
        return t

    def finish_burst(self) -> LossReport:
        """End the current burst here: what was received of it (its reports start afresh)."""
        self.playing = False
        return self.reports.finish(self.receiver)
