"""The talker's side of the media path: encoded frames in, voice datagrams out.

:class:`Packetizer` numbers one burst's frames (``seq`` from 0, wrapping at 2**16; ``timestamp``
in samples from the burst's start), repeats the previous ``redundancy`` frames in each packet
(``ptt.media.packet``) and flags the last one END_OF_BURST::

    pk = Packetizer(group_id=3, sender=session_id, burst_id=burst)
    for pcm in frames:
        send(pk.packetize(encoder.encode(pcm)))
    send(pk.packetize(encoder.encode(last_pcm), last=True))

:class:`RedundancyPolicy` turns the loss listeners report into the redundancy depth, the copies'
offsets, the encoder's expected-loss setting and, under heavy loss, a lower bitrate; apply its
:class:`MediaSettings` between bursts or at any frame. The talker feeds it the server's LinkReports (``ptt.protocol.feedback``) and starts
at :data:`START_REDUNDANCY` until the first one comes, and for as long as none does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ptt.audio.codec import FRAME_SAMPLES
from ptt.media.packet import MAX_OFFSET, VoicePayload, encode_payload
from ptt.wire.voice import HEADER_SIZE, VoiceFlags, VoiceHeader, encode_voice

__all__ = [
    "DEFAULT_REDUNDANCY",
    "LOSSY_BITRATE",
    "OFFSETS",
    "RUNS_BITRATE",
    "RUN_OFFSETS",
    "START_REDUNDANCY",
    "MediaSettings",
    "Packetizer",
    "RedundancyPolicy",
    "offsets_for",
]

# Measured with bench/bench_voice_quality.py: see docs/benchmarks.md and RedundancyPolicy.
DEFAULT_REDUNDANCY = 2  # a sender that hears no loss feedback (ptt replay)
# The adaptive talker's depth before its listeners' first report, and while none comes (nobody
# listens, or an old server). It is a guess, not something learnt: the first report with a loss,
# or the second report, replaces it, down to one copy at once (then to none after ``hold`` calm
# reports, as ever), so a clean path sends bare frames as early as from a start of one copy
# (RedundancyPolicy.GUESS_REPORTS). Two copies (1, 2) cover the time before that report: a short run of loss there is repaired where one copy at offset 1 leaves it
# concealed (bursty 10 %, the real-command bench's loss patterns replayed offline, talker and
# listener cold: 3.44 / 3.46 against 3.31 / 3.32 on the listener's path, English / Mandarin).
START_REDUNDANCY = 2
# Random loss: (1, 2, 3) repairs a frame unless it and the next three packets are all lost, as
# (1, 2, 4) does, but the receiver waits a frame less for it (20 % loss: 3.89 against 3.52 at 24
# kbit/s, offline, cold start: every frame the buffer inserts while it learns to wait costs).
# For the same reason two copies ride at (1, 2), not (1, 3): with a cold listener the frames it
# inserts to wait a third frame cost more than the rarer double losses (1, 3) repairs (the real-
# command bench's loss patterns replayed offline, talker and listener cold, mean of the four
# cells: 5 % 4.32 against 4.22, 10 % 4.29 against 4.16), and the listener's delay is a frame less.
OFFSETS = {0: (), 1: (1,), 2: (1, 2), 3: (1, 2, 3)}
# Against runs of lost packets the copies reach past a run: a copy at offset o survives when
# fewer than o packets after its frame's are lost, so whatever the offsets below it, the largest
# one decides how long a run is repaired whole. With runs of mean length 3 (geometric), a reach
# of 4 leaves 20 % of the lost frames unrepaired, a reach of 6 leaves 9 %: (2, 4, 6) scores 0.4
# PESQ above (1, 2, 4) under bursty loss (bench/bench_voice_quality.py, docs/benchmarks.md),
# and (2, 5) 0.3 above (2, 4). The receiver waits for them: ``JitterConfig.max_lookahead`` is 6
# frames, and the delay it adds is paid only on a path that loses packets in runs.
RUN_OFFSETS = {0: (), 1: (2,), 2: (2, 5), 3: (2, 4, 6)}
# At heavy loss (the top step) three copies ride in every packet; Opus at this rate keeps that
# within 110 kbit/s of UDP payload where 30 kbit/s takes 120-128 (20 % random loss, real
# commands). Three copies at 24 kbit/s score 3.89 / 3.90 (English / Mandarin, offline, cold
# start, 6 seeds) where two at the default rate, as cheap on the wire, score 3.41 / 3.47. At 24
# kbit/s Mandarin's voiced frames came to 111 kbit/s on the talker's uplink; 23.5 kbit/s sends
# 2.5 % less for 0.00-0.06 PESQ (the real-command bench's 20 % patterns replayed offline,
# English / Mandarin, listener's path / uplink: 3.75 / 3.86 / 3.88 / 3.89 against 3.80 / 3.92 /
# 3.87 / 3.94; 23 kbit/s scores no better than 23.5 and 22 loses 0.1 more).
LOSSY_BITRATE = 23_500
# Against runs of loss the copies' reach decides what is repaired, and it stays at six frames: the
# listener waits for a copy by playing later, and a burst may come out at most 100 ms longer than
# it went in (copies reaching 8 frames back stretched bursts 140 ms live). A run longer than the
# reach (runs of mean 3 reach 14 in the bench's patterns) is concealed in part whatever the copies,
# so more copies buy little and the bits go into the voice instead: Opus at least this rate once
# two reports have shown runs. On the real-command bench's bursty patterns replayed offline
# (English / Mandarin, listener's path / uplink, bench/policy_search.py --live-patterns) 3.56 /
# 3.60 / 3.52 / 3.72 against 3.44 / 3.51 / 3.46 / 3.66 at 30 kbit/s, the worst seed 3.06 against
# 3.02, for 124-138 kbps on the wire against 110-120; 33 kbit/s scored 3.45 / 3.56 / 3.49 / 3.70,
# 40 kbit/s 0.02 more than 36 for 10 kbps more; a fourth copy, (1, 2, 4, 6), as dear on the wire,
# 3.49 / 3.53 / 3.46 / 3.68. Random 5-20 % (runs of 1.0-1.3) never gets it: the same PESQ and kbps
# on all twelve of their cells. Live, through the real commands on a quiet machine, against the
# same code without it (five rounds, both voices, both paths, 3 seeds): higher in 52 of 60 seeds
# paired by round, +0.10 on average, for 14-19 kbit/s more (docs/benchmarks.md).
RUNS_BITRATE = 36_000


def offsets_for(k: int, runs: bool = False) -> tuple[int, ...]:
    """The offsets ptt uses for ``k`` copies per packet (``runs``: losses come in runs)."""
    try:
        return (RUN_OFFSETS if runs else OFFSETS)[k]
    except KeyError:
        raise ValueError(f"redundancy must be one of {sorted(OFFSETS)}, not {k}") from None


class Packetizer:
    """Builds the voice datagrams of one burst. Not reusable: make one per burst.

    ``redundancy`` is the number of earlier frames repeated in each packet (their offsets from
    :func:`offsets_for`); ``offsets`` chooses them exactly instead. Both may change at any frame.
    """

    def __init__(
        self,
        group_id: int,
        sender: int,
        burst_id: int,
        redundancy: int = DEFAULT_REDUNDANCY,
        offsets: Sequence[int] | None = None,
        frame_samples: int = FRAME_SAMPLES,
        seal: Callable[[VoiceHeader, bytes], bytes] = encode_voice,
    ) -> None:
        self.group_id = group_id
        self.seal = seal  # header and payload to the datagram: a keyed group's sealer seals
        self.sender = sender
        self.burst_id = burst_id
        self.frame_samples = frame_samples
        self._history: deque[bytes] = deque(maxlen=MAX_OFFSET)
        self._offsets: tuple[int, ...] = ()
        self.offsets = offsets_for(redundancy) if offsets is None else tuple(offsets)
        self.seq = 0  # of the next frame
        self.timestamp = 0
        self.ended = False
        self.bytes_sent = 0  # datagram bytes, header included, for bitrate figures

    @property
    def offsets(self) -> tuple[int, ...]:
        """Which earlier frames ride along: 1 is the previous frame."""
        return self._offsets

    @offsets.setter
    def offsets(self, offsets: Sequence[int]) -> None:
        offsets = tuple(offsets)
        if list(offsets) != sorted(set(offsets)) or any(not 1 <= o <= MAX_OFFSET for o in offsets):
            raise ValueError(f"offsets must ascend within 1..{MAX_OFFSET}, got {offsets}")
        self._offsets = offsets

    @property
    def redundancy(self) -> int:
        """How many earlier frames each packet repeats."""
        return len(self._offsets)

    @redundancy.setter
    def redundancy(self, k: int) -> None:
        self.offsets = offsets_for(k)

    def packetize(self, frame: bytes, last: bool = False) -> bytes:
        """The voice datagram carrying ``frame`` (one encoded 20 ms Opus packet)."""
        if self.ended:
            raise ValueError("this burst has ended; make a new Packetizer")
        history = self._history
        copies = tuple((o, history[o - 1]) for o in self._offsets if o <= len(history))
        payload = encode_payload(VoicePayload(frame, copies))
        flags = VoiceFlags.END_OF_BURST if last else VoiceFlags.NONE
        header = VoiceHeader(self.group_id, self.sender, self.burst_id, self.seq, self.timestamp,
                             flags)
        datagram = self.seal(header, payload)
        history.appendleft(frame)
        self.seq = (self.seq + 1) & 0xFFFF
        self.timestamp = (self.timestamp + self.frame_samples) & 0xFFFFFFFF
        self.ended = last
        self.bytes_sent += HEADER_SIZE + len(payload)  # the frame's own bytes, before sealing
        return datagram


@dataclass(frozen=True, slots=True)
class MediaSettings:
    """What the talker should use: redundancy depth, the encoder's expected loss (percent,
    which sizes Opus in-band FEC; 0 switches FEC data off), whether losses come in runs
    (which spreads the copies' offsets), and the most and the least bit/s the encoder may use
    (None: no bound on the talker's configured bitrate)."""

    redundancy: int
    expected_loss: int
    runs: bool = False
    max_bitrate: int | None = None
    min_bitrate: int | None = None

    def bitrate(self, configured: int) -> int:
        """The encoder's bitrate for a talker configured with ``configured`` bit/s."""
        if self.min_bitrate is not None:
            configured = max(configured, self.min_bitrate)
        return configured if self.max_bitrate is None else min(configured, self.max_bitrate)

    @property
    def offsets(self) -> tuple[int, ...]:
        return offsets_for(self.redundancy, self.runs)


class RedundancyPolicy:
    """What listeners report -> :class:`MediaSettings`, with hysteresis.

    Feed :meth:`update` the worst listener's loss fraction over the last report period (about a
    second), and the mean length of its runs of lost frames (``JitterStats.mean_loss_run``).
    Measured with bench/bench_voice_quality.py (32 kbps, PESQ wideband, docs/benchmarks.md):

    - no copies while the path is clean: copies cost a frame's worth of bitrate each;
    - one copy from 0.5 % loss (5 % random loss: 4.11, where concealment alone scores 2.2);
    - two copies, offsets (1, 2), from 3 % (see :data:`OFFSETS`);
    - three copies, offsets (1, 2, 3), from 15 %, with Opus at :data:`LOSSY_BITRATE` while the
      loss stays at or above 15 % (12 % with hysteresis) and does not come in runs, so that the
      four frames of a packet fit in 110 kbit/s (20 %: 3.89 / 3.90 offline, cold start);
    - one step earlier when losses come in runs (mean run >= 1.6 frames), the copies spread to
      reach past a run (:data:`RUN_OFFSETS`): bursty 10 %, three copies at (2, 4, 6), 3.38 /
      3.70 offline, cold start (3.0 / 3.2 with (1, 2, 4)); and once a second report shows
      runs, Opus at :data:`RUNS_BITRATE` at least, since the part of a run past the copies'
      reach is concealed whatever they are.

    Reports are smoothed (one covers only ~50 frames), so random 10 % loss settles on two copies
    rather than jumping to three on every unlucky second.

    Opus in-band FEC stays off (expected loss 0) at every step: in libopus 1.3.1 it takes its
    bits from the primary frame (clean speech drops from 4.33 to 3.92 with FEC sized for 2 %
    loss, see ``ptt.audio.codec``), while a copy in the next packet repairs the same loss exactly.
    Depth rises at once and falls one step at a time after ``hold`` calm reports, so a path that
    flaps keeps its protection. The start (:meth:`start`) is a guess that the first report with
    a loss, or the second report, replaces, down to one copy at once (:attr:`GUESS_REPORTS`).
    With reports about once a second, a talker starting at
    :data:`START_REDUNDANCY` is protected within a report of a lossy link and sends bare frames
    three reports into a clean one.
    """

    # (loss fraction at or above which this step applies, copies per packet, expected_loss %)
    STEPS = ((0.0, 0, 0), (0.005, 1, 0), (0.03, 2, 0), (0.15, 3, 0))
    HYSTERESIS = 0.8  # step down only below this share of the current step's threshold
    BURSTY_RUN = 1.6  # mean run of lost frames from which losses count as bursty ...
    RANDOM_RUN = 1.3  # ... and below which they count as random again (one report is noisy)
    # One report of runs is taken at its word (a run of three is ~10 times likelier from a bursty
    # path than from random loss, and the copies must reach past runs from the start: waiting
    # for a second report costs bursty 10 % 0.10-0.14 PESQ, replayed live patterns), but it may
    # be chance: at 5 % random loss the half-second first report read '12.5 % loss (runs of
    # 3.0)', and while the copies stay spread the listener waits longer for every lost frame
    # (that seed live: 3.71 against 4.2-4.3). So until BURSTY_REPORTS reports have shown runs,
    # a report of isolated losses (DOUBT_LOSS or more: not one lone loss) takes the call back at
    # once, and after that only BURSTY_REPORTS reports of runs make it again.
    BURSTY_REPORTS = 2
    DOUBT_LOSS = 0.03
    # The start survives a first report without any loss, and falls at the next one (to one
    # copy, or on a clean path to bare frames at the third report). That first report covers ~20
    # frames, and on a bursty path (10 %, runs of 3) the gaps between runs average 27: it
    # often sees none, and a run that comes just after it met one copy where the start's two
    # would have repaired part of it (the real-command bench's bursty patterns replayed
    # offline, English / Mandarin, listener's path: 3.56 / 3.52 -> 3.62 / 3.56, Mandarin's
    # worst seed 3.06 -> 3.18; random 5-20 % the same on all 24 seeds; a clean path sends the
    # second copy one report longer, ~12 kbit/s for a second, bare frames at the third report
    # in both). A report with a loss replaces the start at once.
    GUESS_REPORTS = 2
    SMOOTHING = 0.5  # weight of the newest report: one report is ~50 frames, noisy at low loss
    _ONE_COPY = 1  # index of the step sending one copy

    def __init__(self, hold: int = 3, max_redundancy: int = 3) -> None:
        self.hold = hold
        self.max_redundancy = max_redundancy
        self._step = 0
        self._calm = 0
        self._loss: float | None = None
        self._run = 1.0
        self._bursty = False
        self._ran = False  # a report with losses came: _run holds their mean run
        self._run_reports = 0  # reports showing runs since the losses last counted as random
        self._doubted = False  # a call of runs was taken back: the next needs BURSTY_REPORTS
        self._heavy = False  # loss reached the top step's threshold: Opus at LOSSY_BITRATE
        self._guess = False  # the step is start()'s, not yet confirmed by a report
        self.reports = 0  # updates taken since start()

    def start(self, redundancy: int) -> None:
        """Begin at the step giving ``redundancy`` (a new talker starts protected, say); the
        first report with a loss, or the second, may lower it to one copy at once."""
        self._step = max(i for i, (_, k, _) in enumerate(self.STEPS) if k <= redundancy)
        self._calm = 0
        self._guess = True
        self.reports = 0

    @property
    def settings(self) -> MediaSettings:
        _, k, loss = self.STEPS[self._step]
        # runs of loss keep the configured rate: there the copies' reach, not their cost, decides
        # the PESQ, and each report's loss swings across the threshold with the runs
        lower = self._heavy and not self.bursty
        # the voice's extra bits wait for a second report of runs: a chance run in one report of
        # random 20 % loss would otherwise take the top step past its 110 kbit/s for a second,
        # and a bursty path loses ~0.01 PESQ by waiting (the copies spread at once, as ever)
        raise_rate = self.bursty and k and self._run_reports >= self.BURSTY_REPORTS
        return MediaSettings(min(k, self.max_redundancy), loss, self.bursty,
                             LOSSY_BITRATE if lower else None,
                             RUNS_BITRATE if raise_rate else None)

    @property
    def bursty(self) -> bool:
        """Whether the losses reported come in runs: the smoothed mean run reached BURSTY_RUN
        and has not fallen below RANDOM_RUN since."""
        return self._bursty

    @property
    def mean_run(self) -> float:
        """The smoothed mean length of a run of lost frames."""
        return self._run

    @property
    def loss(self) -> float:
        """The smoothed loss fraction the decisions are made on."""
        return self._loss or 0.0

    def _judge_runs(self, loss_fraction: float, run: float) -> None:
        """Whether losses come in runs, after one report with losses of mean run ``run``."""
        if run >= self.BURSTY_RUN:
            self._run_reports += 1
        confirmed = self._run_reports >= self.BURSTY_REPORTS
        if self._run < self.RANDOM_RUN:
            self._bursty = False
            self._run_reports = 0
        elif (self._bursty and not confirmed and run < self.RANDOM_RUN
              and loss_fraction >= self.DOUBT_LOSS):  # the one report of runs was chance
            self._bursty = False
            self._run_reports = 0
            self._doubted = True
            self._run = run
        elif self._run >= self.BURSTY_RUN and (confirmed or not self._doubted):
            self._bursty = True
            self._doubted = self._doubted and not confirmed

    def update(self, loss_fraction: float, mean_loss_run: float = 1.0) -> MediaSettings:
        """Feed one listener report; get the settings to use from now on."""
        self.reports += 1
        a = self.SMOOTHING
        previous = loss_fraction if self._loss is None else self._loss
        self._loss = a * loss_fraction + (1 - a) * previous
        if loss_fraction > 0 and mean_loss_run > 0:
            self._run = a * mean_loss_run + (1 - a) * (self._run if self._ran else mean_loss_run)
            self._ran = True
            self._judge_runs(loss_fraction, mean_loss_run)
        loss = self._loss
        heavy = self.STEPS[-1][0]
        if loss >= heavy:
            self._heavy = True
        elif loss < heavy * self.HYSTERESIS:
            self._heavy = False
        want = 0
        for i, (threshold, _, _) in enumerate(self.STEPS):
            if loss >= threshold:
                want = i
        if want and self._bursty:
            want = min(want + 1, len(self.STEPS) - 1)
        if self._guess:
            if want < self._step and loss_fraction == 0 and self.reports < self.GUESS_REPORTS:
                return self.settings  # no loss in ~20 frames is no news on a bursty path
            self._guess = False
            if want < self._step:  # the start was a guess: one copy until calm reports confirm
                self._step = max(want, self._ONE_COPY)
                # the reports so far were calm (the start stayed only through loss-free ones),
                # so a clean path sends bare frames as soon as from a start of one copy
                calm = loss < self.STEPS[self._step][0] * self.HYSTERESIS
                self._calm = self.reports if calm else 0
                return self.settings
        if want >= self._step:
            self._step = want
            self._calm = 0
        elif loss < self.STEPS[self._step][0] * self.HYSTERESIS:
            self._calm += 1
            if self._calm >= self.hold:
                self._step -= 1
                self._calm = 0
        else:
            self._calm = 0
        return self.settings
