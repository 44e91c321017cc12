"""The listener's side of the media path: voice datagrams in, one PCM frame per playout tick out.

:class:`BurstReceiver` parses datagrams, keeps only the current burst, reorders them in a
:class:`~ptt.media.jitter.JitterBuffer` and runs the decoder on whatever the buffer decides::

    rx = BurstReceiver(OpusDecoder(), group_id=3)
    rx.expect(burst_id)              # optional: the burst the floor announced
    rx.receive(datagram, now)        # for every voice datagram
    pcm = rx.pop(now)                # every 20 ms, on the sink's clock; None: play nothing
    report = rx.loss_report()        # about once a second, for the talker's RedundancyPolicy

:class:`ReceptionReports` decides when a listener reports (``ReceiverReport`` to the server,
``ptt.protocol.feedback``) and keeps what it received of the current burst for display.

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
from ptt.wire.voice import VoiceFlags, VoiceHeader, decode_voice

__all__ = ["FIRST_REPORT", "REPORT_INTERVAL", "BurstReceiver", "Decoder", "LossReport",
           "ReceptionReports"]

RETIRED_BURSTS = 16  # bursts remembered as over, so their stragglers cannot take over again
# A listener's first report of a burst comes after this much of it (25 frames: enough to tell
# 20 % loss from 2 %), so the talker is protected within a second; then one a second.
FIRST_REPORT = 0.5
REPORT_INTERVAL = 1.0


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
    lost: int = 0  # frames whose packet never came (in this period)
    runs: int = 0  # runs of consecutive missing frames
    late: int = 0  # packets that came after their frame was due: not lost, but not played

    def __add__(self, other: LossReport) -> LossReport:
        frames, lost, runs = (self.frames + other.frames, self.lost + other.lost,
                              self.runs + other.runs)
        return LossReport(frames, lost / frames if frames else 0.0, lost / runs if runs else 0.0,
                          lost, runs, self.late + other.late)


NO_LOSS = LossReport(0, 0.0, 0.0)


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
        self._period_runs = 0  # runs of lost frames that ended since the last report
        self._open = 0  # frames of the run going on (the last frame played was missing)

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

    def loss_report(self, carry: bool = True) -> LossReport:
        """Loss since the previous call, for the talker's :class:`~ptt.media.sender.
        RedundancyPolicy` (send it about once a second).

        A run of lost frames counts once, with its whole length, in the report where it ends:
        a run still going on is carried, frames and all, into the next report (this one covers
        the frames up to the run's start), unless ``carry`` is False (the burst's end). The
        talker reads the runs' mean length from the reports, lost / runs: a run counted in
        both reports it straddles read as two short ones (Gilbert-Elliott, mean run 3:
        reports of 1.3-1.7 several times running, the copies spread seconds late), and one
        counted only where it began left the next report with lost frames and no run. So a
        report's lost frames lie in its own runs, whole. What is carried is short: the buffer
        conceals at most ``JitterConfig.max_conceal`` frames with nothing in hand, then plays
        nothing (no frame falls due) until a packet comes and ends the run.

        A frame whose packet came after all, too late to play, is counted late, not lost: the
        network delivered it. Copies of it in later packets would have come as late (a stall
        of this listener's process, the usual cause here, delays every packet it has not read
        yet), so lateness is no reason for the talker to send more, and a starved listener
        must not make its whole group's talker switch to heavy protection."""
        if self._open and not carry:
            self._period_runs += 1
            self._open = 0
        st = self.buffer.stats
        # the open run's frames (all missing) wait for the report where the run ends
        now = (st.lost - self._open, st.lost + st.played_received - self._open, st.late)
        missed, due, late = (a - b for a, b in zip(now, self._reported, strict=True))
        self._reported = now
        runs, self._period_runs = self._period_runs, 0
        lost = max(0, missed - late)
        runs = min(runs, lost)
        return LossReport(
            frames=due,
            loss_fraction=lost / due if due else 0.0,
            mean_loss_run=lost / runs if runs else 0.0,
            lost=lost,
            runs=runs,
            late=late,
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
        if item is not None and item.source is not Source.INSERTED:
            if item.source is not Source.RECEIVED:
                self._open += 1
            elif self._open:
                self._period_runs += 1
                self._open = 0
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


class ReceptionReports:
    """When one listener reports its reception of one group, and what it heard of each burst.

    Call :meth:`poll` on every playout tick, after ``receiver.pop``: it returns ``(burst_id,
    report)`` when a report is due (:data:`FIRST_REPORT` into a burst, then every
    :data:`REPORT_INTERVAL`), to be sent as a ``ReceiverReport``. At a burst's end call
    :meth:`finish` for the whole burst's reception (what ``ptt listen`` prints); its tail is not
    sent, since the floor is over by then and the server would drop it."""

    def __init__(self, first: float = FIRST_REPORT, interval: float = REPORT_INTERVAL) -> None:
        self.first = first
        self.interval = interval
        self.burst_id: int | None = None
        self.burst = NO_LOSS  # the current burst's reception so far
        self._due = 0.0

    def poll(self, receiver: BurstReceiver, now: float) -> tuple[int, LossReport] | None:
        current = receiver.current_burst
        if current is None:
            return None
        if current[1] != self.burst_id:
            receiver.loss_report()  # counted before this burst: none of its business
            self.burst_id, self.burst, self._due = current[1], NO_LOSS, now + self.first
            return None
        if now < self._due or not receiver.playing:
            return None
        self._due = now + self.interval
        report = receiver.loss_report()
        self.burst += report
        return (current[1], report) if report.frames else None

    def finish(self, receiver: BurstReceiver) -> LossReport:
        """The current burst's whole reception, tail included; the next burst starts afresh."""
        self.burst += receiver.loss_report(carry=False)
        done, self.burst = self.burst, NO_LOSS
        self.burst_id = None  # should the burst go on after all, its reports start again
        return done
