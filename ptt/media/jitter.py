"""A sans-I/O jitter buffer for one talker's burst of 20 ms voice frames.

Packets go in with :meth:`JitterBuffer.add` as they arrive; the player calls
:meth:`JitterBuffer.pop` once per frame tick of the sink's clock and gets a :class:`PlayoutItem`
saying what to play: the frame as received, an exact copy from a later packet's redundancy, the
in-band FEC of the next packet, or concealment. ``pop`` returns None when there is nothing to play
(before the first frame is due, after the burst ended). The buffer never decodes and never reads a
clock: ``now`` (seconds, any origin) is passed in, as in aioquic.

Storage follows aiortc's ``jitterbuffer.py``: a power-of-two ring indexed by ``seq % capacity``,
16-bit sequence numbers unwrapped to an extended counter, and a reset when a packet lands absurdly
far from the others.

Delay. A packet's *transit* is its arrival time minus its place in the burst (``seq * 20 ms``);
the fastest transit of the last couple of seconds is the path's floor, and a packet's *delay* is
how far its transit sits above that floor. The delays feed an exponentially forgetting histogram
(WebRTC NetEq's idea), seeded with the initial 40 ms; the target playout delay is its 95th
percentile plus a margin, plus the reach of the redundant copies (up to ``max_lookahead`` frames)
while packets are being lost, so that a missing frame's copy has arrived when the frame is due.

The delay grows only when a frame is due, missing, not restorable from anything in hand, and a
packet that restores it may still come (none sent well after it is in yet): if the delay is
below target, the buffer plays one concealed frame *before* it (``INSERTED``) and
tries again on the next tick, when the late packet or the copy may be there. That costs the same
concealed frame as giving up would, and then plays the real one. The delay shrinks when it has
stayed more than a frame above target for a second: one frame inside a pause (quiet, i.e.
small, Opus packets on both sides) is dropped, where nobody hears it. (Shedding faster, every
other tick of a pause, or down to within 0.6 of a frame of the target, leaves too little margin
for a loaded host's 60-100 ms stalls: a clean path then loses late packets, and the talker keeps
its copies; tests/acceptance/test_feedback.py's clean path failed 6 of 11 runs so, at load
average 9-11, against 0 of 3.) A
burst starts when its first frame is due by the fastest of the packets held by then, plus the
target: the first packet may come late (a relay or listener waking up), and the whole burst
would play that much later. Every change of delay costs PESQ
(0.1-0.5 inside speech, less but not nothing in pauses), so the buffer never grows it
proactively. The estimates survive :meth:`JitterBuffer.reset`, so the next burst starts at the
depth this one learned.

A burst must not come out longer than it went in: every inserted frame makes the listener's
burst 20 ms longer than the talker's, and in real time (a loaded host's scheduling delays in the
histogram, 10 % loss switching the look-ahead on) nothing else would stop the delay from growing
within one burst, since it shrinks only after a second above target. So growth inside one burst
(frames inserted minus frames dropped) is capped at ``max_growth`` frames, plus one frame per ``drift_frames`` played so that a
sound card's clock running up to 0.4 % fast is still absorbed, or what brings the delay to the
copies' reach when that is more (copies spread against runs of loss reach 6 frames back: four
or five frames, by where the burst's start fell); past it a missing frame is
concealed in place, and the depth learned carries on into the next burst, which starts deep
enough. And the end of a
burst is known even when its END_OF_BURST packet is lost: :meth:`JitterBuffer.finish` (the floor
went idle, so nothing more will come) ends the burst after the last frame held, where the buffer
would otherwise conceal ``max_conceal`` more frames of nothing.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from ptt.audio.codec import FRAME_SECONDS
from ptt.media.packet import MAX_OFFSET, VoicePayload

__all__ = [
    "FRAME_SECONDS",
    "JitterBuffer",
    "JitterConfig",
    "JitterStats",
    "PlayoutItem",
    "Source",
    "seq_add",
    "seq_diff",
    "seq_gt",
]

SEQ_MOD = 1 << 16
# Copies reaching further back than this are spread against runs of loss (the talker's
# ``RUN_OFFSETS``); only for them does the buffer grow ahead of need, in pauses. Against random
# loss the reach is short and on-demand growth inserts fewer frames (10 %: 3.91 against 3.85).
RANDOM_REACH = 3
# How far past the copies' reach (spread against runs) the delay must go for the farthest copy to
# come in time: this many times the interarrival jitter (RFC 3550's estimate, a third of a
# uniform spread: three cover ~95 % of it). The buffer plays on the sink's 20 ms ticks, so its
# delay is the burst's start delay (40-60 ms, where the ticks fall against the talker's frames)
# plus whole frames: four frames on a start just above 40 ms left a copy at offset 6 a hair late
# on every frame that needed it (the real-command bench, bursty 10 %: the listener played 119 ms
# after the send, 22 frames concealed where another run of the same seed concealed 10). Such a
# start grows one frame more, up to a frame short of the reach. None: two frames short of the
# reach whatever the start (bench/reach_two_short, for A/B runs only).
REACH_JITTERS: float | None = 3.0
# A packet that could restore a missing frame is taken as lost once a packet sent more than this
# many interarrival jitters after it has arrived (three cover ~95 % of the jitter, as for
# REACH_JITTERS; on a path of ~1 ms jitter, the very next packet): waiting more for it only
# plays another concealed frame. The smoke test's run of three at 10 % loss, copies at (1, 2),
# inserted two frames beside it where the burst's start fell ~45 ms deep (2.60 PESQ), one where
# it fell ~55 ms deep (3.27), about half the runs each.
LOST_AFTER_JITTERS = 3.0
MAX_MISORDER = 100  # frames (2 s): a packet further than this means the sender restarted


def seq_add(a: int, b: int) -> int:
    """``a + b`` in 16-bit sequence space."""
    return (a + b) & 0xFFFF


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between two 16-bit sequence numbers, in -32768..32767."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_gt(a: int, b: int) -> bool:
    """True when ``a`` comes after ``b`` in 16-bit sequence space."""
    return seq_diff(a, b) > 0


class Source(Enum):
    """Where the frame played on one tick came from; the decoder call differs for each."""

    RECEIVED = "received"  # decode(packet)
    REDUNDANCY = "redundancy"  # decode(packet): an exact copy carried by a later packet
    FEC = "fec"  # decode_fec(packet): packet is the *next* frame, holding FEC for this one
    CONCEALED = "concealed"  # conceal(): the frame is lost
    INSERTED = "inserted"  # conceal(): an extra frame while waiting; grows the delay by one


@dataclass(frozen=True, slots=True)
class PlayoutItem:
    """What to play on one tick. ``seq`` is the frame's 16-bit sequence number (for ``INSERTED``,
    the frame that follows). ``last`` marks the burst's final frame."""

    seq: int
    source: Source
    packet: bytes | None = None
    last: bool = False


@dataclass(slots=True)
class JitterStats:
    """Counters since the buffer was made; ``reset()`` keeps them."""

    received: int = 0  # packets stored in time to be played
    duplicates: int = 0
    late: int = 0  # arrived after their frame was due (dropped)
    recovered_redundancy: int = 0
    recovered_fec: int = 0
    concealed: int = 0
    lost: int = 0  # frames whose own packet was missing when due, however they were recovered
    loss_runs: int = 0  # runs of consecutive lost frames: lost / loss_runs is the mean burst
    inserted: int = 0  # concealed frames played while waiting for a late packet or copy
    skipped: int = 0  # frames dropped to shrink the delay
    resets: int = 0  # large misorders that restarted the stream
    bursts: int = 0
    played_received: int = 0  # frames played (or skipped) from their own packet

    @property
    def loss_fraction(self) -> float:
        """Share of due frames whose packet was missing: the loss a listener reports."""
        due = self.lost + self.played_received
        return self.lost / due if due else 0.0

    @property
    def mean_loss_run(self) -> float:
        """Mean length of a run of lost frames (1.0 for isolated losses, 0.0 without loss)."""
        return self.lost / self.loss_runs if self.loss_runs else 0.0


@dataclass(frozen=True, slots=True)
class JitterConfig:
    """Tuning of :class:`JitterBuffer`; all times in seconds."""

    capacity: int = 128  # frames held (2.56 s); a power of two
    frame: float = FRAME_SECONDS
    initial_delay: float = 0.040
    min_delay: float = 0.020
    max_delay: float = 0.400
    quantile: float = 0.95  # of the delay histogram
    margin: float = 0.005
    forget: float = 0.99  # histogram memory per packet: about 2 s to grow back down by half
    floor_window: int = 128  # packets over which the fastest transit is taken
    max_lookahead: int = 6  # frames added to the target while losing packets (copies' reach)
    loss_on: float = 0.02  # recent loss above which look-ahead is added ...
    loss_off: float = 0.005  # ... and below which it is removed again
    loss_memory: float = 0.99  # per frame: a lone loss does not switch look-ahead on
    shrink_hold: float = 1.0  # seconds above target before a frame in a pause may be dropped
    force_shrink: float = 10.0  # seconds above target before a frame is dropped anywhere
    quiet_ratio: float = 0.5  # a packet smaller than this times the average is "quiet"
    max_conceal: int = 10  # frames concealed with nothing buffered before the stream is starved
    adjust_gap: int = 2  # ticks between two dropped frames
    max_growth: int = 3  # frames one burst's playout may grow by (inserted minus dropped) ...
    drift_frames: int = 250  # ... plus one per this many frames played: sink clock drift (0.4 %)

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.capacity & (self.capacity - 1):
            raise ValueError("capacity must be a power of 2")
        if not 0 < self.min_delay <= self.initial_delay <= self.max_delay:
            raise ValueError("need 0 < min_delay <= initial_delay <= max_delay")


class _State(Enum):
    IDLE = "idle"  # no burst yet, or reset
    BUFFERING = "buffering"  # packets arrived, the first frame is not due yet
    PLAYING = "playing"
    STARVED = "starved"  # nothing arrived for max_conceal frames; the next packet rebuffers
    ENDED = "ended"  # the END_OF_BURST frame was played


@dataclass(slots=True)
class _Slot:
    ext: int
    payload: VoicePayload
    arrival: float


@dataclass(slots=True)
class _DelayEstimator:
    """Exponentially forgetting histogram of packet delays above the path's floor."""

    bucket: float
    buckets: int
    forget: float
    hist: list[float] = field(default_factory=list)
    mass: float = 0.0

    def __post_init__(self) -> None:
        self.hist = [0.0] * self.buckets

    def seed(self, delay: float) -> None:
        """Start as if every past packet had ``delay``: a prior that new packets wash out, so one
        early outlier cannot move the quantile on its own."""
        i = min(max(round(delay / self.bucket) - 1, 0), self.buckets - 1)
        self.hist[i] = 1.0
        self.mass = 1.0

    def add(self, delay: float) -> None:
        i = min(int(delay / self.bucket), self.buckets - 1)
        f = self.forget
        hist = self.hist
        for j in range(self.buckets):
            hist[j] *= f
        hist[i] += 1.0 - f
        self.mass = self.mass * f + (1.0 - f)

    def quantile(self, q: float) -> float:
        goal = q * self.mass
        acc = 0.0
        for j, v in enumerate(self.hist):
            acc += v
            if acc >= goal:
                return (j + 1) * self.bucket
        return self.buckets * self.bucket


class JitterBuffer:
    """Reorders one burst's frames and decides, tick by tick, what to play.

    Call :meth:`add` for every voice packet of the current burst, :meth:`pop` on every playout
    tick, and :meth:`reset` when a new burst starts (the receiver does this). The delay estimate
    and counters survive ``reset``, so the next burst starts with what this one learned.
    """

    # per-burst state, set by _clear()
    _ring: list[_Slot | None]
    _state: _State
    _high: int  # highest extended seq stored
    _next: int  # extended seq of the next frame to play
    _end: int | None  # extended seq of the END_OF_BURST frame
    _start_at: float
    _start_ext: int  # the first frame held when buffering began: _start_at is its due time
    _transits: deque[float]
    _floor: float | None
    _last_transit: float | None
    _play_base: float | None
    _above_since: float | None
    _since_adjust: int
    _starving: int
    _played_upto: int
    _last_lost: int
    _growth: int  # frames inserted minus frames dropped in this burst
    _start_delay: float | None  # the delay of the burst's first frame played
    _ticks: int  # frames played in this burst
    _closing: bool  # finish() was called: no packet of this burst is still coming

    def __init__(self, config: JitterConfig | None = None) -> None:
        self.config = cfg = config or JitterConfig()
        self.stats = JitterStats()
        bucket = cfg.frame / 4
        self._delays = _DelayEstimator(bucket, int(cfg.max_delay / bucket) + 1, cfg.forget)
        self._delays.seed(cfg.initial_delay - cfg.margin)
        self._target = cfg.initial_delay
        self._loss = 0.0
        self._lossy = False
        self._span = 0
        self._offsets: tuple[int, ...] = ()  # the copies' offsets in the newest packet
        self._avg_size = 0.0
        self._jitter = 0.0
        self._clear()

    # -- public API ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the current burst (a new one starts); keep the delay estimate and counters."""
        self._clear()

    def finish(self) -> None:
        """The talker has stopped (the floor went idle): play the frames held, restoring or
        concealing those missing between them, and end after the last one held instead of
        concealing frames that will never come (the END_OF_BURST packet may be lost)."""
        if self._state is not _State.IDLE:
            self._closing = True

    @property
    def playing(self) -> bool:
        """True while frames are due (buffering or playing)."""
        return self._state in (_State.BUFFERING, _State.PLAYING)

    @property
    def ended(self) -> bool:
        """True once the frame flagged END_OF_BURST has been played."""
        return self._state is _State.ENDED

    @property
    def target_delay(self) -> float:
        """Playout delay (seconds above the fastest packets) the buffer is steering to."""
        return self._target

    @property
    def current_delay(self) -> float | None:
        """Playout delay now in effect, once playing."""
        if self._play_base is None or self._floor is None:
            return None
        return self._play_base - self._floor

    @property
    def jitter(self) -> float:
        """RFC 3550 interarrival jitter estimate, seconds."""
        return self._jitter

    def add(self, seq: int, payload: VoicePayload, now: float, end: bool = False) -> bool:
        """Store one packet that arrived at ``now``; False when it was a duplicate or too late."""
        cfg = self.config
        seq &= 0xFFFF
        if self._state is _State.IDLE:
            self._start_stream(seq, now)
        ext = self._unwrap(seq)
        if abs(ext - self._high) >= MAX_MISORDER or ext - self._next >= cfg.capacity:
            if self._state is _State.ENDED and ext < self._high:
                self.stats.late += 1
                return False
            self.stats.resets += 1
            self._clear()
            self._start_stream(seq, now)
            ext = self._unwrap(seq)
        elif self._state is _State.ENDED:
            self.stats.late += 1  # a straggler of the burst that already ended
            return False

        if self._get(ext) is not None:
            self.stats.duplicates += 1
            return False
        self._observe_delay(ext, now)
        if ext < self._next and self._state is not _State.BUFFERING:
            self.stats.late += 1
            return False

        self._ring[ext % cfg.capacity] = _Slot(ext, payload, now)
        self._high = max(self._high, ext)
        self.stats.received += 1
        self._span = payload.span
        self._offsets = tuple(o for o, _ in payload.redundancy)
        size = len(payload.primary)
        self._avg_size = size if not self._avg_size else 0.95 * self._avg_size + 0.05 * size
        if end:
            self._end = ext
        if self._state is _State.STARVED:  # rebuffer from here, as at a burst's start
            self._state = _State.BUFFERING
            self._start_at = now + self._target
            self._start_ext = self._next = ext
        if self._state is _State.BUFFERING:
            # the first packet may have come late (a talker or relay just waking up): a faster
            # one shows when the first frame is due, a target above the path's floor
            self._start_at = min(self._start_at,
                                 now - (ext - self._start_ext) * cfg.frame + self._target)
            # start at the earliest frame held, or that a held packet's redundancy restores
            self._next = max(min(self._next, ext - payload.span), self._played_upto)
        return True

    def pop(self, now: float) -> PlayoutItem | None:
        """The frame to play on the tick at ``now``, or None when nothing is due."""
        if self._state is _State.BUFFERING:
            if now < self._start_at:
                return None
            self._begin_playout()
        if self._state is not _State.PLAYING:
            return None
        if self._end is not None and self._next > self._end:
            self._state = _State.ENDED
            return None

        if self._closing and self._next > self._high:
            self._state = _State.ENDED
            return None

        cfg = self.config
        self._update_target()
        self._play_base = now - self._next * cfg.frame
        if self._start_delay is None:
            self._start_delay = self.current_delay
        self._since_adjust += 1
        self._ticks += 1
        item = self._shrink(now)
        if item is not None:
            return item
        if self._should_wait() or self._grow_in_pause():
            self.stats.inserted += 1
            self._growth += 1
            return PlayoutItem(self._next & 0xFFFF, Source.INSERTED)
        return self._take(self._next)

    # -- internals -----------------------------------------------------------------------------

    def _clear(self) -> None:
        cfg = self.config
        self._ring = [None] * cfg.capacity
        self._state = _State.IDLE
        self._high = 0
        self._next = 0
        self._end = None
        self._start_at = 0.0
        self._start_ext = 0
        self._transits = deque(maxlen=cfg.floor_window)
        self._floor = None
        self._last_transit = None
        self._play_base = None
        self._above_since = None
        self._since_adjust = 0
        self._starving = 0
        self._played_upto = -(1 << 62)
        self._last_lost = -(1 << 62)
        self._growth = 0
        self._ticks = 0
        self._closing = False
        self._start_delay = None

    def _start_stream(self, seq: int, now: float) -> None:
        self._state = _State.BUFFERING
        self._high = seq
        self._next = seq
        self._start_at = now + self._target
        self._start_ext = self._unwrap(seq)
        self.stats.bursts += 1

    def _unwrap(self, seq: int) -> int:
        return self._high + seq_diff(seq, self._high & 0xFFFF)

    def _get(self, ext: int) -> _Slot | None:
        slot = self._ring[ext % self.config.capacity]
        return slot if slot is not None and slot.ext == ext else None

    def _observe_delay(self, ext: int, now: float) -> None:
        transit = now - ext * self.config.frame
        if self._last_transit is not None:
            self._jitter += (abs(transit - self._last_transit) - self._jitter) / 16.0
        self._last_transit = transit
        self._transits.append(transit)
        self._floor = min(self._transits)
        self._delays.add(transit - self._floor)

    def _update_target(self) -> None:
        cfg = self.config
        base = self._delays.quantile(cfg.quantile) + cfg.margin
        if self._lossy and self._loss < cfg.loss_off:
            self._lossy = False
        elif not self._lossy and self._loss > cfg.loss_on:
            self._lossy = True
        look = min(max(self._span, 1), cfg.max_lookahead) if self._lossy else 0
        self._target = min(max(base + look * cfg.frame, cfg.min_delay), cfg.max_delay)

    def _begin_playout(self) -> None:
        self._state = _State.PLAYING
        self._since_adjust = 0
        self._starving = 0

    def _should_wait(self) -> bool:
        """Whether to play a concealed frame *before* the due one instead of giving it up.

        The due frame is missing and nothing in hand restores it, but a late packet or a copy in
        one of the next packets may still come (:meth:`_restorer_coming`). While the delay is
        below target, waiting one frame costs the same concealed frame as giving up, and then
        plays the real frame: this is how the delay grows, by exactly what late packets and
        copies need, and only then.
        """
        ext = self._next
        cfg = self.config
        if self._closing or self._growth >= self._growth_cap():
            return False  # nothing more is coming, or this burst has grown all it may
        if self._get(ext) is not None or self._get(ext + 1) is not None:
            return False  # here, or FEC (or a copy) from the next packet
        for offset in range(2, MAX_OFFSET + 1):
            later = self._get(ext + offset)
            if later is not None and later.payload.redundant_frame(offset) is not None:
                return False
        current = self.current_delay
        if current is None:
            return False
        if current + cfg.frame > self._target + cfg.frame / 2:
            return False
        return self._restorer_coming()

    def _restorer_coming(self) -> bool:
        """Whether a packet that restores the due frame may still come.

        Its own packet, the next one (FEC) and those carrying copies at the newest packet's
        offsets restore it; one is lost once a packet sent LOST_AFTER_JITTERS jitters after
        it is in. A stall (a late packet, not a lost one) holds back every packet after it
        too, so it is still waited for. Without this the target alone bounded the waits, to
        target + half a frame: next to a loss nothing could repair the buffer inserted one
        frame or two, as the burst's start fell against the player's ticks (40-60 ms): whether
        the packet after the copies' reach was in by the second wait or not."""
        cfg = self.config
        ext = self._next
        spread = LOST_AFTER_JITTERS * self._jitter
        return any(self._get(ext + k) is None and (self._high - ext - k) * cfg.frame <= spread
                   for k in (0, 1, *self._offsets))

    def _grow_in_pause(self) -> bool:
        """Whether to insert a frame inside a pause to reach the target before a loss needs it.

        While losing packets the target includes the copies' reach (six frames against runs):
        grown only on demand, each frame of it is inserted next to a lost one, inside speech,
        where the listener hears the stretch. A frame inserted between two quiet ones is not
        heard, and the next lost frame finds its copy in time."""
        cfg = self.config
        if not self._lossy or self._span <= RANDOM_REACH or self._closing:
            return False
        # up to what waiting for the copies needs (_reach_growth): the clock drift allowance of
        # the growth cap is left for the drift
        if self._growth >= self._reach_growth():
            return False
        if self._since_adjust < cfg.adjust_gap:
            return False
        current = self.current_delay
        if current is None or current + cfg.frame > self._target + cfg.frame / 2:
            return False
        if not self._in_pause():
            return False
        self._since_adjust = 0
        return True

    def _growth_cap(self) -> int:
        """Frames this burst's playout may grow by: ``max_growth`` plus clock drift, or, while
        copies reach further back than that lets the buffer wait (a path losing packets in
        runs), what brings the delay to their reach (:meth:`_reach_growth`: two or one frames
        less than the reach, after the start), so a burst is heard at most 80 or 100 ms longer
        with copies at offset 6. The reach replaces the
        drift allowance rather than adding to it: the buffer grows to the reach in pauses, and
        a long burst (12 s) came out 120 ms longer with both. (A frame more of growth measured
        no better: every frame inserted while learning to wait costs PESQ.)"""
        cfg = self.config
        reach = self._reach_growth() if self._lossy and self._span > RANDOM_REACH else 0
        if reach > cfg.max_growth:
            return reach
        return cfg.max_growth + self._ticks // cfg.drift_frames

    def _reach_growth(self) -> int:
        """Frames of growth that bring the delay past the copies' reach by REACH_JITTERS times
        the jitter, from where this burst started: two short of the reach (a start at the
        initial 40 ms, and a little more, reaches it), one short when the start fell closer
        to 40 ms than the jitter allows."""
        cfg = self.config
        reach = min(self._span, cfg.max_lookahead)
        start = self._start_delay
        if REACH_JITTERS is None or start is None:
            return reach - 2
        need = math.ceil((reach * cfg.frame + REACH_JITTERS * self._jitter - start) / cfg.frame)
        return max(reach - 2, min(need, reach - 1))

    def _shrink(self, now: float) -> PlayoutItem | None:
        """Drop one frame, inside a pause, when the delay has stayed more than a frame above
        target for a while. (Growing is left to _should_wait: even a frame added in a pause
        measurably costs PESQ, so the delay grows only when a frame actually needs it.)"""
        cfg = self.config
        current = self.current_delay
        if current is None or self._since_adjust < cfg.adjust_gap:
            return None
        if current <= self._target + cfg.frame:
            self._above_since = None
            return None
        if self._above_since is None:
            self._above_since = now
            return None
        held = now - self._above_since
        if held < cfg.shrink_hold or self._get(self._next) is None or \
                self._get(self._next + 1) is None:
            return None
        # a cut inside a pause is inaudible, where one between two words is not (and costs
        # PESQ up to 0.5)
        if not self._in_pause() and held < cfg.force_shrink:
            return None
        self.stats.skipped += 1
        self.stats.played_received += 1  # it arrived; dropping it is our choice, not a loss
        self._growth -= 1
        self._next += 1
        self._above_since = None
        self._since_adjust = 0
        return self._take(self._next)

    def _in_pause(self) -> bool:
        """The last frame played, the next one and the one after are all quiet."""
        return all(self._quiet(e) for e in (self._next - 1, self._next, self._next + 1))

    def _quiet(self, ext: int) -> bool:
        slot = self._get(ext)
        limit = self.config.quiet_ratio * self._avg_size
        return slot is not None and len(slot.payload.primary) < limit

    def _take(self, ext: int) -> PlayoutItem:
        cfg = self.config
        self._next = self._played_upto = ext + 1
        last = ext == self._end
        seq = ext & 0xFFFF
        slot = self._get(ext)
        if slot is not None:
            self._starving = 0
            self.stats.played_received += 1
            self._loss *= cfg.loss_memory
            return PlayoutItem(seq, Source.RECEIVED, slot.payload.primary, last)

        self.stats.lost += 1
        if self._last_lost != ext - 1:
            self.stats.loss_runs += 1
        self._last_lost = ext
        self._loss = self._loss * cfg.loss_memory + (1.0 - cfg.loss_memory)
        for offset in range(1, MAX_OFFSET + 1):
            later = self._get(ext + offset)
            copy = later.payload.redundant_frame(offset) if later is not None else None
            if copy is not None:
                self._starving = 0
                self.stats.recovered_redundancy += 1
                return PlayoutItem(seq, Source.REDUNDANCY, copy, last)
        following = self._get(ext + 1)
        if following is not None:
            self._starving = 0
            self.stats.recovered_fec += 1
            return PlayoutItem(seq, Source.FEC, following.payload.primary, last)
        self.stats.concealed += 1
        if ext >= self._high:
            self._starving += 1
            if self._starving >= cfg.max_conceal:
                self._state = _State.STARVED
        return PlayoutItem(seq, Source.CONCEALED, None, last)
