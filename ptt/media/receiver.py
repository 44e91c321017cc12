"""The listener's side of the media path: voice datagrams in, one PCM frame per playout tick out.

:class:`BurstReceiver` parses datagrams, keeps only the current burst, reorders them in a
:class:`~ptt.media.jitter.JitterBuffer` and runs the decoder on whatever the buffer decides::

    rx = BurstReceiver(OpusDecoder(), group_id=3)
    rx.expect(burst_id)              # optional: the burst the floor announced
    rx.receive(datagram, now)        # for every voice datagram
    pcm = rx.pop(now)                # every 20 ms, on the sink's clock; None: play nothing
    report = rx.loss_report()        # about once a second, for the talker's RedundancyPolicy

Sans-I/O like the rest of ``ptt.media``: no sockets, no clock; ``now`` is in seconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

from ptt.audio.codec import packet_has_fec
from ptt.errors import AudioError, ProtocolError
from ptt.media.jitter import JitterBuffer, JitterConfig, JitterStats, PlayoutItem, Source
from ptt.media.packet import parse_payload
from ptt.protocol.voice import VoiceFlags, VoiceHeader, decode_voice

__all__ = ["BurstReceiver", "Decoder", "LossReport"]

RETIRED_BURSTS = 16  # bursts remembered as over, so their stragglers cannot take over again


class Decoder(Protocol):
    """What the receiver needs of ``ptt.audio.codec.OpusDecoder``."""

    def decode(self, packet: bytes) -> bytes: ...
    def decode_fec(self, next_packet: bytes) -> bytes: ...
    def conceal(self) -> bytes: ...
    def reset(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LossReport:
    """What a listener saw over one report period."""

    frames: int  # frames that fell due
    loss_fraction: float  # share of them whose packet was missing (however restored)
    mean_loss_run: float  # mean length of runs of consecutive missing frames (0: no loss)


class BurstReceiver:
    """Plays one talker's burst at a time.

    With :meth:`expect` the receiver takes only that burst (the one the floor announced) and drops
    the rest. Without it, it locks onto the first burst it hears and moves to a newer one when its
    datagrams arrive (resetting the jitter buffer and the decoder). ``group_id``, when given, drops
    datagrams of other groups.
    """

    def __init__(
        self,
        decoder: Decoder,
        group_id: int | None = None,
        jitter: JitterConfig | None = None,
    ) -> None:
        self.decoder = decoder
        self.group_id = group_id
        self.buffer = JitterBuffer(jitter)
        self._expected: int | None = None
        self._current: tuple[int, int] | None = None  # (sender, burst_id)
        self._retired: deque[tuple[int, int]] = deque(maxlen=RETIRED_BURSTS)
        self.malformed = 0
        self.undecodable = 0  # well-framed packets libopus refused (concealed instead)
        self.fec_empty = 0  # FEC decodes of a packet that carried no FEC data (libopus conceals)
        self.foreign = 0  # datagrams of another group or burst, dropped
        self.last_item: PlayoutItem | None = None
        self._reported = (0, 0, 0)

    @property
    def stats(self) -> JitterStats:
        """The jitter buffer's counters (received, late, recovered, concealed, ...)."""
        return self.buffer.stats

    @property
    def current_burst(self) -> tuple[int, int] | None:
        """(sender, burst_id) being played, or None before the first."""
        return self._current

    @property
    def playing(self) -> bool:
        """True while a burst's frames are due."""
        return self.buffer.playing

    @property
    def ended(self) -> bool:
        """True once the current burst's END_OF_BURST frame has been played."""
        return self.buffer.ended

    def expect(self, burst_id: int | None) -> None:
        """Play only ``burst_id`` from now on (None: lock onto whatever comes next)."""
        self._expected = burst_id
        if burst_id is not None and self._current is not None and self._current[1] != burst_id:
            self._retired.append(self._current)
            self._current = None

    def finish(self) -> None:
        """The current burst's talker has stopped: end it after the last frame held (see
        :meth:`~ptt.media.jitter.JitterBuffer.finish`)."""
        self.buffer.finish()

    def loss_report(self) -> LossReport:
        """Loss since the previous call, for the talker's :class:`~ptt.media.sender.
        RedundancyPolicy` (send it about once a second)."""
        st = self.buffer.stats
        now = (st.lost, st.lost + st.played_received, st.loss_runs)
        lost, due, runs = (a - b for a, b in zip(now, self._reported, strict=True))
        self._reported = now
        return LossReport(
            frames=due,
            loss_fraction=lost / due if due else 0.0,
            mean_loss_run=lost / runs if runs else 0.0,
        )

    def receive(self, datagram: bytes, now: float) -> bool:
        """One voice datagram as it arrived; False when dropped (malformed, foreign, late, dup)."""
        try:
            header, payload = decode_voice(datagram)
        except ProtocolError:
            self.malformed += 1
            return False
        return self.receive_parsed(header, payload, now)

    def receive_parsed(self, header: VoiceHeader, payload: bytes, now: float) -> bool:
        """Like :meth:`receive` for a header already split off (e.g. after decryption)."""
        if header.flags & VoiceFlags.PROBE:
            return False
        if self.group_id is not None and header.group_id != self.group_id:
            self.foreign += 1
            return False
        if self._expected is not None and header.burst_id != self._expected:
            self.foreign += 1
            return False
        key = (header.sender, header.burst_id)
        if key != self._current:
            if key in self._retired:  # a straggler of a burst we already left
                self.foreign += 1
                return False
            self._switch(key)
        try:
            voice = parse_payload(payload)
        except ProtocolError:
            self.malformed += 1
            return False
        end = bool(header.flags & VoiceFlags.END_OF_BURST)
        return self.buffer.add(header.seq, voice, now, end)

    def pop(self, now: float) -> bytes | None:
        """PCM of the frame to play on the tick at ``now``; None when nothing is due."""
        item = self.buffer.pop(now)
        self.last_item = item
        if item is None:
            return None
        return self.decode(item)

    def decode(self, item: PlayoutItem) -> bytes:
        """Run the decoder for one playout decision; a packet libopus rejects is concealed."""
        try:
            if item.packet is not None and item.source in (Source.RECEIVED, Source.REDUNDANCY):
                return self.decoder.decode(item.packet)
            if item.packet is not None and item.source is Source.FEC:
                if not packet_has_fec(item.packet):
                    self.fec_empty += 1  # libopus will conceal: count it as such
                return self.decoder.decode_fec(item.packet)
        except AudioError:
            self.undecodable += 1
        return self.decoder.conceal()

    def _switch(self, key: tuple[int, int]) -> None:
        if self._current is not None:
            self._retired.append(self._current)
        self._current = key
        self.buffer.reset()
        self.decoder.reset()
