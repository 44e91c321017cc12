"""Voice quality under loss: PESQ wideband through the real commands, and through the offline
pipeline in virtual time.

**The real commands** (what a volunteer runs, and the figures of record): a real ``ptt server``,
``ptt talk GROUP --wav`` and ``ptt listen GROUP --out`` as processes, an end-to-end encrypted
group, and ``python -m ptt.faults.proxy`` in front of one client: the listener (loss on the
server -> listener path) or, as a second row, the talker (talker -> server). Held-out speech: an
English (en-us) and a Mandarin (cmn) espeak-ng voice, sentences other than ``ptt.audio.samples``'.
3 seeds, loss 0 / 5 / 10 / 20 % random and Gilbert-Elliott bursty (mean run 3 datagrams, ~10 %).
The proxy's ``--trace`` gives the UDP payload bit rate on the lossy path (over the burst and from
2 s into it); the listener's WAV gives the PESQ (aligned to the sent speech) and the heard span
against the spoken one. These runs take real time: about 20 s a run, 54 runs.

**The offline pipeline, virtual time** (rows so labelled): the same speech model through the
project's encoder, packetiser with its adaptive redundancy policy, a seeded impairment model and
the burst receiver, with a talker frame and a listener tick every 20 ms of virtual time and the
loss reports fed back every second; mean of 5 seeds. It is the ceiling of the media path without
real-time scheduling, and shows what each part (copies, FEC, concealment) buys.

    .venv/bin/python bench/bench_voice_quality.py                 # both (about 30 min)
    .venv/bin/python bench/bench_voice_quality.py --live-only     # the real commands
    .venv/bin/python bench/bench_voice_quality.py --live-only --bitrate 28000,30000  # A/B
    .venv/bin/python bench/bench_voice_quality.py --quick         # one voice, 1 seed, 2 cells
    .venv/bin/python bench/bench_voice_quality.py --only K=2      # offline configurations

"kbps" (offline) is voice header and payload bytes per second; "kbit/s UDP payload" (real
commands) is the datagrams' bytes as the proxy received them (IPv4 and UDP headers add 11.2
kbit/s at 50 datagrams a second).
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import itertools
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptt.audio.codec import DEFAULT_BITRATE, FRAME_BYTES, SAMPLE_RATE, OpusDecoder, OpusEncoder
from ptt.audio.samples import DEFAULT_TEXT, SHORT_TEXT, speech_pcm
from ptt.config import MAX_BITRATE, MIN_BITRATE
from ptt.media.impair import (
    BernoulliLoss,
    Channel,
    ConstantDelay,
    DelayModel,
    GilbertElliott,
    LossModel,
    NoLoss,
    UniformDelay,
)
from ptt.media.jitter import FRAME_SECONDS, JitterConfig
from ptt.media.receiver import BurstReceiver
from ptt.media.sender import DEFAULT_REDUNDANCY, RUNS_BITRATE, Packetizer, RedundancyPolicy

ROOT = Path(__file__).resolve().parent.parent

TARGETS = {"clean": 4.0, "random 5%": 3.9, "random 10%": 3.8, "random 20%": 3.5,
           "bursty 10%": 3.0}
ANCHORS_PLC = {"random 5%": 2.51, "random 10%": 1.70, "random 20%": 1.30}
ANCHORS_FEC = {"random 5%": 2.92, "random 10%": 2.52, "random 20%": 1.88}
SEEDS = (1, 2, 3, 4, 5)
BURST_LENGTH = 3.0  # mean Gilbert-Elliott loss burst, packets (60 ms)
NETWORK_DELAY = 0.002  # one-way floor, seconds
TICK_PHASE = 0.0073  # the player's ticks fall between the talker's frames
REPORT_EVERY = 50  # frames between two listener loss reports (1 s)
DRAIN_FRAMES = 50  # ticks played after the talker's last frame
WARMUP_TEXT = "Radio check on channel five. How do you read me?"


@dataclass(frozen=True)
class Condition:
    name: str
    loss: Callable[[], LossModel]
    delay: Callable[[], DelayModel] = lambda: ConstantDelay(NETWORK_DELAY)
    seeds: tuple[int, ...] = SEEDS


def _jitter40() -> DelayModel:
    return UniformDelay(NETWORK_DELAY, 0.040)


CONDITIONS = (
    Condition("clean", NoLoss, seeds=(1,)),
    Condition("random 5%", lambda: BernoulliLoss(0.05)),
    Condition("random 10%", lambda: BernoulliLoss(0.10)),
    Condition("random 20%", lambda: BernoulliLoss(0.20)),
    Condition("bursty 10%", lambda: GilbertElliott.from_mean(0.10, BURST_LENGTH)),
    Condition("jitter 0-40 ms", NoLoss, _jitter40),
    Condition("10% + jitter 0-40 ms", lambda: BernoulliLoss(0.10), _jitter40),
    Condition("20% + jitter 0-40 ms", lambda: BernoulliLoss(0.20), _jitter40),
)


@dataclass(frozen=True)
class Config:
    """One way of sending: bitrate, copies per packet (None: adapted by RedundancyPolicy),
    Opus in-band FEC and its expected loss, the jitter buffer's tuning, and whether the listener
    has heard the path before (a warm-up burst)."""

    name: str
    bitrate: int = DEFAULT_BITRATE
    redundancy: int | None = None
    fec: bool = False
    expected_loss: int = 0
    jitter: JitterConfig = JitterConfig()
    offsets: tuple[int, ...] | None = None
    warm: bool = True
    conditions: tuple[str, ...] | None = None  # names; None: all

    @property
    def adaptive(self) -> bool:
        return self.redundancy is None and self.offsets is None


RANDOM = ("random 5%", "random 10%", "random 20%")
LOSSY = (*RANDOM, "bursty 10%")
# The configuration of record is ptt's defaults: the adaptive policy (starting protected, at
# DEFAULT_REDUNDANCY copies) at the codec's default bitrate. The others show what each part buys.
RECORD = Config("ptt default (adaptive)")
CONFIGS = (
    RECORD,
    Config("ptt default, cold start", warm=False, conditions=LOSSY),
    Config("K=1 copy (1)", redundancy=1),
    Config("K=2 copies (1,3)", redundancy=2),
    Config("K=3 copies (1,2,4)", redundancy=3),
    Config("K=2 copies (1,2)", offsets=(1, 2), conditions=(*LOSSY, "20% + jitter 0-40 ms")),
    # the codec's own defaults (FEC sized for 10 % loss) under the copies: FEC is paid for by
    # the primary frame, and the copies already repair what it would
    Config("K=2 (1,3) + Opus FEC for 10% loss", redundancy=2, fec=True, expected_loss=10,
           conditions=("clean", "random 10%")),
    Config("PLC only, 24 kbps", 24_000, redundancy=0, conditions=RANDOM),
    Config("Opus FEC only, 24 kbps, loss 10%", 24_000, redundancy=0, fec=True, expected_loss=10,
           conditions=RANDOM),
)


def encode_all(frames: list[bytes], cfg: Config) -> list[bytes]:
    """The Opus packets of ``frames`` under a fixed configuration (they do not depend on the
    network, so the seeds and conditions of one configuration share them)."""
    enc = OpusEncoder(SAMPLE_RATE, cfg.bitrate, fec=cfg.fec, expected_loss=cfg.expected_loss)
    return [enc.encode(f) for f in frames]


class Session:
    """One talker and one listener over one impaired path, in virtual time.

    The talker's encoder and redundancy policy and the listener's receiver (jitter buffer
    estimates included) live across bursts, as they do in a ptt group; each burst gets a new
    packetiser and burst id. The listener reports its loss every REPORT_EVERY frames.
    """

    def __init__(self, cfg: Config, cond: Condition, seed: int) -> None:
        self.cfg = cfg
        self.adaptive = cfg.adaptive
        self.policy = RedundancyPolicy() if self.adaptive else None
        self.encoder = OpusEncoder(SAMPLE_RATE, cfg.bitrate, fec=cfg.fec or self.adaptive,
                                   expected_loss=cfg.expected_loss)
        if self.policy is not None:
            self.policy.start(DEFAULT_REDUNDANCY)
            self.encoder.set_expected_loss(self.policy.settings.expected_loss)
        self.rx = BurstReceiver(OpusDecoder(SAMPLE_RATE), group_id=1, jitter=cfg.jitter)
        self.channel = Channel(random.Random(seed), loss=cond.loss(), delay=cond.delay())
        self.clock = 0  # frames since the session began
        self.burst_id = 40

    def burst(self, frames: list[bytes], encoded: list[bytes] | None = None,
              gap: int = DRAIN_FRAMES) -> tuple[bytes, int, list[float]]:
        """Talk ``frames`` as one burst; (played PCM from the burst's start until ``gap`` frames
        after its end, datagram bytes sent, target delays while playing)."""
        self.burst_id += 1
        if self.policy is not None:
            settings = self.policy.settings
            pk = Packetizer(1, 7, self.burst_id, offsets=settings.offsets)
        else:
            k = DEFAULT_REDUNDANCY if self.cfg.redundancy is None else self.cfg.redundancy
            pk = Packetizer(1, 7, self.burst_id, redundancy=k, offsets=self.cfg.offsets)
        self.encoder.reset()
        rx, enc = self.rx, self.encoder
        in_flight: list[tuple[float, int, bytes]] = []
        out: list[bytes] = []
        silence = bytes(FRAME_BYTES)
        delays = []
        n = len(frames)
        for i in range(n + gap):
            t = self.clock * FRAME_SECONDS
            if i < n:
                packet = enc.encode(frames[i]) if encoded is None else encoded[i]
                datagram = pk.packetize(packet, last=i == n - 1)
                for arrival in self.channel.transmit(t):
                    heapq.heappush(in_flight, (arrival, i, datagram))
            tick = t + TICK_PHASE
            while in_flight and in_flight[0][0] <= tick:
                arrival, _, datagram = heapq.heappop(in_flight)
                rx.receive(datagram, arrival)
            pcm = rx.pop(tick)
            out.append(pcm if pcm is not None else silence)
            if pcm is not None:
                delays.append(rx.buffer.target_delay)
            self.clock += 1
            if self.policy is not None and self.clock % REPORT_EVERY == 0:
                self._report(pk)
        return b"".join(out), pk.bytes_sent, delays

    def _report(self, pk: Packetizer) -> None:
        assert self.policy is not None
        report = self.rx.loss_report()
        if report.frames:
            settings = self.policy.update(report.loss_fraction, report.mean_loss_run)
            if not pk.ended:
                pk.offsets = settings.offsets  # as the talker does (ptt.client.voice.Talker)
            self.encoder.set_expected_loss(settings.expected_loss)
            self.encoder.set_bitrate(settings.bitrate(self.cfg.bitrate))


def simulate(
    frames: list[bytes],
    cfg: Config,
    cond: Condition,
    seed: int,
    encoded: list[bytes] | None = None,
    warmup: list[bytes] | None = None,
) -> tuple[bytes, float, dict[str, Any], float]:
    """Send ``frames`` as one burst through the media path, after a ``warmup`` burst when
    given; (played PCM, wire kbps, receiver counters, mean target delay ms) of the scored burst.
    ``encoded``: the frames already encoded (fixed configurations only)."""
    session = Session(cfg, cond, seed)
    if warmup:
        session.burst(warmup)
    before = {k: getattr(session.rx.stats, k) for k in session.rx.stats.__slots__}
    fec_empty = session.rx.fec_empty
    played, sent, delays = session.burst(frames, encoded)
    stats = {k: getattr(session.rx.stats, k) - v for k, v in before.items()}
    # a "FEC" decode of a packet without FEC data is concealment: count it as such
    empty = session.rx.fec_empty - fec_empty
    stats["recovered_fec"] -= empty
    stats["concealed"] += empty
    kbps = sent * 8 / (len(frames) * FRAME_SECONDS) / 1000
    return played, kbps, stats, 1000 * float(np.mean(delays)) if delays else 0.0


def align(reference: np.ndarray, played: np.ndarray) -> np.ndarray:
    """``played`` shifted so it best matches ``reference`` (codec and buffer delay removed), cut
    or padded to the reference's length."""
    size = 1 << (len(reference) + len(played) - 1).bit_length()
    spec = np.fft.rfft(played, size) * np.conj(np.fft.rfft(reference, size))
    xc = np.fft.irfft(spec, size)[: len(played)]
    lag = int(np.argmax(xc))
    seg = played[lag : lag + len(reference)]
    return np.pad(seg, (0, len(reference) - len(seg)))


def score(reference: bytes, played: bytes) -> float:
    from pesq import pesq

    ref = np.frombuffer(reference, dtype="<i2").astype(np.float64)
    deg = align(ref, np.frombuffer(played, dtype="<i2").astype(np.float64))
    return float(pesq(SAMPLE_RATE, ref, deg, "wb"))


def split(pcm: bytes) -> list[bytes]:
    """Whole 20 ms frames of ``pcm``."""
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def measure(frames: list[bytes], cfg: Config, cond: Condition, seeds: tuple[int, ...],
            warmup: list[bytes] | None = None) -> dict[str, Any]:
    """Mean PESQ, wire bitrate, delay and summed receiver counters of one configuration under
    one condition."""
    ref = b"".join(frames)
    scores, rates, delays = [], [], []
    totals: dict[str, int] = {}
    encoded = _encoded(frames, cfg)
    for seed in seeds:
        played, kbps, stats, delay = simulate(frames, cfg, cond, seed, encoded, warmup)
        scores.append(score(ref, played))
        rates.append(kbps)
        delays.append(delay)
        for k, v in stats.items():
            totals[k] = totals.get(k, 0) + v
    return {
        "pesq": float(np.mean(scores)),
        "pesq_min": float(np.min(scores)),
        "kbps": float(np.mean(rates)),
        "delay_ms": float(np.mean(delays)),
        "stats": totals,
    }


_ENCODED: dict[tuple[int, int, bool, int], list[bytes]] = {}


def _encoded(frames: list[bytes], cfg: Config) -> list[bytes] | None:
    if cfg.adaptive:
        return None  # adaptive: the policy changes the encoder's settings as it goes
    key = (id(frames), cfg.bitrate, cfg.fec, cfg.expected_loss)
    if key not in _ENCODED:
        _ENCODED.clear()
        _ENCODED[key] = encode_all(frames, cfg)
    return _ENCODED[key]


def run_offline(quick: bool = False, configs: tuple[Config, ...] | None = None,
                verbose: bool = True) -> dict[str, Any]:
    """Score ``configs`` (default: all; quick: ptt's defaults only, 2 seeds, 7 s of speech) under
    their conditions in the offline pipeline (virtual time)."""
    if configs is None:
        configs = (RECORD,) if quick else CONFIGS
    frames = split(speech_pcm(SHORT_TEXT + " " + SHORT_TEXT if quick else DEFAULT_TEXT))
    warmup = split(speech_pcm(WARMUP_TEXT))
    seconds = len(frames) * FRAME_SECONDS
    rows = []
    met = []
    for cfg in configs:
        for cond in CONDITIONS:
            if cfg.conditions is not None and cond.name not in cfg.conditions:
                continue
            seeds = cond.seeds[:2] if quick else cond.seeds
            t0 = time.monotonic()
            m = measure(frames, cfg, cond, seeds, warmup if cfg.warm else None)
            target = TARGETS.get(cond.name)
            st = m["stats"]
            ok = "" if target is None else ("yes" if m["pesq"] >= target else "NO")
            if cfg is RECORD and target is not None:
                met.append(ok == "yes")
            rows.append({
                "pipeline": "offline pipeline, virtual time",
                "configuration": cfg.name,
                "condition": cond.name,
                "PESQ": round(m["pesq"], 2),
                "worst seed": round(m["pesq_min"], 2),
                "target": target if target is not None else "",
                "met": ok,
                "kbps on wire": round(m["kbps"], 1),
                "playout delay ms": round(m["delay_ms"]),
                "copy/FEC/PLC frames": f"{st['recovered_redundancy']}/{st['recovered_fec']}"
                                       f"/{st['concealed']}",
                "anchor PLC": ANCHORS_PLC.get(cond.name, ""),
                "anchor FEC": ANCHORS_FEC.get(cond.name, ""),
            })
            if verbose:
                anchors = (f"  anchors PLC {ANCHORS_PLC[cond.name]:.2f} FEC "
                           f"{ANCHORS_FEC[cond.name]:.2f}" if cond.name in ANCHORS_PLC else "")
                print(f"{cfg.name:34s} {cond.name:21s} PESQ {m['pesq']:.2f} (worst "
                      f"{m['pesq_min']:.2f})  {m['kbps']:5.1f} kbps  delay {m['delay_ms']:3.0f} ms"
                      f"  copy/FEC/PLC {rows[-1]['copy/FEC/PLC frames']}"
                      + (f"  target {target} {ok}" if target else "") + anchors
                      + f"  [{time.monotonic() - t0:.0f} s]", flush=True)
    return {
        "title": "Voice quality, offline pipeline in virtual time (PESQ wideband)",
        "target": "clean >= 4.0; random loss 5% >= 3.9, 10% >= 3.8, 20% >= 3.5; "
                  "bursty (Gilbert-Elliott, average 10%) >= 3.0",
        "rows": rows,
        "targets met (ptt defaults)": f"{sum(met)} of {len(met)}",
        "speech seconds": round(seconds, 1),
        "notes": (
            f"{seconds:.0f} s of espeak-ng speech through ptt's own encoder, packetiser and "
            "adaptive redundancy policy, a seeded impairment model, and the receiver's jitter "
            "buffer and decoder, in virtual time; after one unscored warm-up burst over the same "
            f"path (except cold start). Mean of {len(SEEDS)} seeds {SEEDS} per lossy condition; "
            "worst seed beside it. Bursty: Gilbert model, average 10%, mean loss run "
            f"{BURST_LENGTH:g} packets. Jitter: uniform 0-40 ms over a "
            f"{NETWORK_DELAY * 1000:g} ms floor. kbps on wire: voice header + payload at 50 "
            "packets/s (IPv4/UDP adds 11.2). Playout delay: the jitter buffer's mean target "
            "above the fastest packets. copy/FEC/PLC: frames restored from a redundant copy, "
            "from Opus in-band FEC, and concealed, summed over the seeds. Anchors (measured the "
            "same way here, ../shared/TESTING.md): PLC only and Opus in-band FEC only at "
            "24 kbps; the two 24 kbps rows re-measure them through ptt's path."
        ),
    }


# --- through the real commands -----------------------------------------------------------------
#
# `ptt talk --wav` and `ptt listen --out` as processes, a real `ptt server`, and
# `python -m ptt.faults.proxy` in front of the impaired client: the listener (loss on the
# server -> listener path, "down") or the talker (talker -> server, "up"). The proxy writes one
# line per voice datagram, from which the UDP payload bit rate is taken.

# held-out speech: none of these sentences is in ptt.audio.samples
LIVE_VOICES = {
    "English (en-us)": ("en-us", "Good evening, this is the night shift at the river crossing. "
                        "Two boats are tied up at the north pier and the water is still rising. "
                        "Please send one more crew with lights and ropes before midnight."),
    "Mandarin (cmn)": ("cmn", "各位志愿者请注意，东门的停车场已经满了。"
                       "请把新到的车辆引导到西边的临时停车区。"),
}
LIVE_CONDITIONS: dict[str, tuple[str, ...]] = {
    "clean": (),
    "random 5%": ("0.05",),
    "random 10%": ("0.10",),
    "random 20%": ("0.20",),
    "bursty 10%": ("0.10", "3"),
}
LIVE_TARGETS = {"clean": 4.2, "random 5%": 4.1, "random 10%": 4.0, "random 20%": 3.7,
                "bursty 10%": 3.3}
LIVE_SEEDS = (1, 2, 3)
SEED_SLACK = 0.3  # no seed more than this below the target
WIRE_CLEAN_TARGET = 48.0  # kbit/s of UDP payload after the first 2 s of a burst, clean path
WIRE_LOSSY_TARGET = 110.0  # kbit/s at 20 % loss
SETTLE = 2.0  # seconds of a burst before the "after 2 s" bit rate counts
MAX_STRETCH_MS = 100  # a burst heard at most this much longer than spoken
AUDIBLE = 20  # peak of a frame that counts as heard (exact silence where nothing plays)
TAIL = 1.0  # seconds the listener runs on after `ptt talk` is done (its buffer's tail)
LIVE_BOUND = 30.0  # seconds `ptt listen` may run beyond the speech in any case
NO_RUNS_BITRATE = ROOT / "bench" / "no_runs_bitrate"  # a sitecustomize switching RUNS_BITRATE off
# this session's changes, each undone by a sitecustomize on both clients' PYTHONPATH: the talker's
# start falling at a first report without loss, the listener growing two frames short of the
# copies' reach whatever its start, and counting a run of loss across two reports in the first
# only ("before", for A/B runs on one build)
ONE_REPORT_START = ROOT / "bench" / "one_report_start"
REACH_TWO_SHORT = ROOT / "bench" / "reach_two_short"
RUNS_PER_BURST = ROOT / "bench" / "runs_per_burst"  # ... and a run across two reports in one
BEFORE = (ONE_REPORT_START, REACH_TWO_SHORT, RUNS_PER_BURST)


@dataclass
class LiveSite:
    """One server with a talker, a listener and an encrypted group, for many runs."""

    root: Path
    site: Any = None

    def __enter__(self) -> LiveSite:
        sys.path.insert(0, str(ROOT))
        from tests.acceptance.harness import Site

        self.site = Site(self.root).start()
        self.site.add_user("talker")
        self.site.add_user("listener")
        self.site.group("bench", "talker", "listener")
        return self

    def __exit__(self, *exc: object) -> None:
        self.site.stop()


def _wire_kbps(trace: Path, way: str) -> tuple[float, float, float]:
    """(overall, after the first SETTLE s) kbit/s of UDP payload in the trace's ``way``, and
    the mean datagram's bytes."""
    rows = [(float(t), int(n)) for t, w, n in
            (line.split() for line in trace.read_text().splitlines() if line.strip())
            if w == way]
    if not rows:
        return 0.0, 0.0, 0.0
    t0, t1 = rows[0][0], rows[-1][0]
    overall = sum(n for _, n in rows) * 8 / max(t1 - t0 + FRAME_SECONDS, FRAME_SECONDS) / 1000
    late = [(t, n) for t, n in rows if t >= t0 + SETTLE]
    after = (sum(n for _, n in late) * 8 / max(t1 - late[0][0] + FRAME_SECONDS, FRAME_SECONDS)
             / 1000) if late else overall
    return overall, after, sum(n for _, n in rows) / len(rows)


def live_run(ls: LiveSite, wav: Path, condition: str, seed: int, way: str, work: Path,
             env: dict[str, str] | None = None, talker_env: dict[str, str] | None = None
             ) -> dict[str, Any]:
    """One burst of ``wav`` from `ptt talk --wav` to `ptt listen --out` with ``condition`` on
    the ``way`` path ("down": server -> listener, "up": talker -> server); PESQ-WB, wire kbit/s
    and the played span against the sent one, the seqs the proxy dropped and how the listener
    made each frame it played (from the proxy's ``--fates`` and the clients' ``--timing``
    logs, left in ``work``). ``env`` is added to both clients' environment, ``talker_env`` to
    the talker's."""
    from ptt.audio.wav import read_wav
    from ptt.client.timing import read_timing
    from tests.acceptance.harness import page_heard, start_proxy, stop_proxy, voiced_frames

    site = ls.site
    args = LIVE_CONDITIONS[condition]
    scope = f"{way}.voice"
    imp = [f"--loss={scope}={args[0]}"] if args else []
    if len(args) > 1:
        imp.append(f"--burst={scope}={args[1]}")
    trace = work / f"trace-{way}-{seed}.txt"
    fates = work / f"fates-{way}-{seed}.txt"
    out = work / f"out-{way}-{seed}.wav"
    played_log, sent_log = work / f"played-{way}-{seed}.txt", work / f"sent-{way}-{seed}.txt"
    proxy, addr = start_proxy(site.address, *imp, "--seed", str(seed), "--fates", str(fates),
                              trace=trace)
    extra = dict(env or {})
    try:
        # stopped by SIGINT once the talker is done and the tail played; --duration bounds it
        seconds = len(read_wav(wav)) / (2 * SAMPLE_RATE) + LIVE_BOUND
        talked = page_heard(
            site, "talker", "listener", "bench", wav, work / f"listen-{way}-{seed}.log",
            listen_args=("--out", str(out), "--duration", f"{seconds:.1f}",
                         "--timing", str(played_log)),
            talk_args=("--timing", str(sent_log)),
            listener_env=site.env("listener", **extra,
                                  **({"PTT_SERVER": addr} if way == "down" else {})),
            talker_env=site.env("talker", **{**extra, **(talker_env or {})},
                                **({"PTT_SERVER": addr} if way == "up" else {})),
            tail=TAIL)
    finally:
        stop_proxy(proxy)
    src = read_wav(wav)
    played = read_wav(out)
    s0, s1 = voiced_frames(src, AUDIBLE)
    p0, p1 = voiced_frames(played, AUDIBLE)
    overall, after, size = _wire_kbps(trace, way)
    dropped = [int(q) for _, w, q, fate in (line.split() for line in
               fates.read_text().splitlines() if line.strip()) if w == way and fate == "lost"]
    played_entries = [e for e in read_timing(played_log) if e.event == "played"]
    made = [e.source for e in played_entries]
    return {
        "dropped": dropped,  # seqs the proxy dropped on the lossy path, in order
        "sources": {s: made.count(s) for s in dict.fromkeys(made)},  # frames played, by source
        # the frames the listener concealed, and those it played a concealed frame before
        "concealed": [e.seq for e in played_entries if e.source == "concealed"],
        "inserted": [e.seq for e in played_entries if e.source == "inserted"],
        "links": [line for line in talked.stdout.splitlines() if "link:" in line],
        "pesq": score(src, played),
        "kbps": overall,
        "kbps_after_2s": after,
        "datagram_bytes": size,
        "stretch_ms": ((p1 - p0) - (s1 - s0)) * FRAME_SECONDS * 1000,
        "talk_line": talked.stdout.strip().splitlines()[-1] if talked.stdout.strip() else "",
        # `ptt talk` prints a line each time its protection changes: the last is where it settled
        "protection": next((line.split("-> ", 1)[-1] for line in
                            reversed(talked.stdout.splitlines()) if "link:" in line),
                           "as it started"),
    }


def held_out_speech(voice: str, text: str, path: Path) -> Path:
    """``text`` spoken by espeak-ng's ``voice``, cut to its first and last audible frame (so
    the listener's heard span compares with it)."""
    from ptt.audio.samples import make_speech_wav
    from ptt.audio.wav import read_wav, write_wav
    from tests.acceptance.harness import voiced_frames

    pcm = read_wav(make_speech_wav(path.with_suffix(".raw.wav"), text, voice=voice))
    first, last = voiced_frames(pcm, AUDIBLE)
    write_wav(path, pcm[first * FRAME_BYTES : last * FRAME_BYTES])
    return path


@dataclass(frozen=True)
class LivePlan:
    """Which cells the real-command benchmark runs."""

    voices: tuple[str, ...] = tuple(LIVE_VOICES)
    conditions: tuple[str, ...] = tuple(LIVE_CONDITIONS)
    ways: tuple[str, ...] = ("down", "up")
    seeds: tuple[int, ...] = LIVE_SEEDS
    texts: dict[str, str] | None = None  # voice -> text instead of LIVE_VOICES' (smoke tests)
    # the talker with the Opus rate against loss runs (True) or without it (False, see
    # NO_RUNS_BITRATE); both: each cell for each in turn, an A/B comparison on one build
    runs_bitrate: tuple[bool, ...] = (True,)
    # as built (True) or with BEFORE's shims (False); both: an A/B comparison on one build
    built: tuple[bool, ...] = (True,)
    # the talker's PTT_BITRATE, bit/s (None: the default); several: each cell at each in turn
    bitrates: tuple[int | None, ...] = (None,)
    minutes: float = 45.0  # cells not started by then are reported as not run
    dump: Path | None = None  # keep each run's traces, timing logs and WAV here


QUICK_PLAN = LivePlan(voices=("English (en-us)",), conditions=("clean", "random 10%"),
                      ways=("down",), seeds=(1,))


def run_live(plan: LivePlan = LivePlan(), verbose: bool = True) -> dict[str, Any]:
    """Every cell of ``plan`` through the real commands; rows per (voice, path, condition)."""
    deadline = time.monotonic() + plan.minutes * 60
    rows: list[dict[str, Any]] = []
    misses: list[str] = []
    # the talker's environment that switches the Opus rate against loss runs off, for A/B runs
    # on one build; the bench's own shim, not a setting of ptt's
    def shims(*dirs: Path) -> dict[str, str] | None:
        if not dirs:
            return None
        return {"PYTHONPATH": os.pathsep.join(
            p for p in (*map(str, dirs), os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryDirectory(prefix="ptt-vq-live-") as tmp, \
            LiveSite(Path(tmp, "site")) as ls:
        for voice_name in plan.voices:
            voice, text = LIVE_VOICES[voice_name]
            if plan.texts is not None:
                text = plan.texts[voice_name]
            wav = held_out_speech(voice, text, Path(tmp, f"{voice}.wav"))
            for way in plan.ways:
                # clean runs on both legs: the talker's carries its session MAC, so its wire
                # figure is the larger, and it is what `ptt talk` sends
                for cond in plan.conditions:
                    for on, built, rate in itertools.product(plan.runs_bitrate, plan.built,
                                                             plan.bitrates):
                        talker_env = {**((shims(NO_RUNS_BITRATE) or {}) if not on else {}),
                                      **({"PTT_BITRATE": str(rate)} if rate else {})}
                        row = _live_cell(ls, wav, voice_name, cond, way, plan.seeds,
                                         deadline, Path(tmp), verbose, talker_env or None,
                                         plan.dump, None if built else shims(*BEFORE))
                        if plan.runs_bitrate != (True,):
                            row["Opus against runs"] = (f"{RUNS_BITRATE / 1000:g} kbit/s"
                                                        if on else "as configured")
                        if plan.built != (True,):
                            row["build"] = "as built" if built else "before (shims)"
                        if plan.bitrates != (None,):
                            row["Opus bitrate"] = (f"{(rate or DEFAULT_BITRATE) / 1000:g} kbit/s"
                                                   + ("" if rate else " (default)"))
                        rows.append(row)
                        misses += _misses(row)
    return {"rows": rows, "misses": misses}


def _live_cell(ls: LiveSite, wav: Path, voice_name: str, cond: str, way: str,
               seeds: tuple[int, ...], deadline: float, tmp: Path, verbose: bool,
               talker_env: dict[str, str] | None = None, dump: Path | None = None,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    results = []
    t0 = time.monotonic()
    load0 = os.getloadavg()[0]  # real-time figures: the machine's load beside each cell
    for seed in seeds:
        if time.monotonic() > deadline:
            break
        work = Path(tempfile.mkdtemp(prefix="cell-", dir=dump or tmp))
        try:
            results.append(live_run(ls, wav, cond, seed, way, work, env=env,
                                    talker_env=talker_env))
        except (RuntimeError, AssertionError) as exc:  # one failed run must not hide the rest
            print(f"  {voice_name} {way} {cond} seed {seed}: {exc}", file=sys.stderr)
            continue
        if dump is not None:
            r = results[-1]
            (work / "run.json").write_text(json.dumps(
                {"voice": voice_name, "way": way, "condition": cond, "seed": seed,
                 "talker_env": talker_env, "env": env, "load": os.getloadavg()[0],
                 **{k: r[k] for k in ("pesq", "dropped", "sources", "concealed", "inserted",
                                      "links", "stretch_ms", "protection")}}))
    path = "server -> listener" if way == "down" else "talker -> server"
    row: dict[str, Any] = {"pipeline": "real commands", "voice": voice_name,
                           # clean: the proxy loses nothing, but measures the wire on ``path``
                           "lossy path": path if cond != "clean" else f"none (wire: {path})",
                           "condition": cond, "seeds": len(results)}
    target = LIVE_TARGETS[cond]
    if not results:
        row["PESQ"] = "not run"
        return row
    scores = [r["pesq"] for r in results]
    mean, worst = float(np.mean(scores)), float(np.min(scores))
    short = max(target - mean, (target - SEED_SLACK) - worst, 0.0)
    row.update({
        "PESQ": round(mean, 2), "worst seed": round(worst, 2),
        "each seed": " ".join(f"{x:.2f}" for x in scores), "target": target,
        "met": "yes" if short == 0 else f"NO, short by {short:.2f}",
        "kbit/s UDP payload": round(float(np.mean([r["kbps"] for r in results])), 1),
        "after 2 s": round(float(np.mean([r["kbps_after_2s"] for r in results])), 1),
        "bytes/datagram": round(float(np.mean([r["datagram_bytes"] for r in results]))),
        "heard - spoken ms (max)": round(max(r["stretch_ms"] for r in results)),
        "ptt talk settled on": ", ".join(dict.fromkeys(r["protection"] for r in results)),
        "load average (1 min)": f"{load0:.1f}-{os.getloadavg()[0]:.1f}",
    })
    if verbose:
        off = "".join(f"{Path(e['PYTHONPATH'].split(os.pathsep)[0]).name}: "
                      for e in (talker_env, env) if e is not None and "PYTHONPATH" in e)
        if talker_env is not None and "PTT_BITRATE" in talker_env:
            off += f"Opus {int(talker_env['PTT_BITRATE']) / 1000:g} kbit/s: "
        print(f"{voice_name:18s} {path:19s} {cond:11s} {off}PESQ {mean:.2f} (worst {worst:.2f}, "
              f"target {target}: {row['met']})  {row['kbit/s UDP payload']:5.1f} kbit/s, "
              f"{row['after 2 s']:5.1f} after 2 s, {row['bytes/datagram']} B/datagram, "
              f"stretch {row['heard - spoken ms (max)']} ms  [{time.monotonic() - t0:.0f} s, "
              f"load {row['load average (1 min)']}]  seeds: "
              + " ".join(f"{r['pesq']:.2f}" for r in results),
              flush=True)
        for seed, r in zip(seeds, results, strict=False):
            print(f"    seed {seed}: PESQ {r['pesq']:.2f}, {len(r['dropped'])} dropped, played "
                  + ", ".join(f"{n} {s}" for s, n in r["sources"].items()), flush=True)
    return row


def _misses(row: dict[str, Any]) -> list[str]:
    """Targets this row misses, each saying by how much."""
    if not isinstance(row.get("PESQ"), float):
        return []
    name = f"{row['voice']}, {row['condition']} ({row['lossy path']})"
    out = []
    if row["met"] != "yes":
        out.append(f"{name}: PESQ {row['PESQ']} (worst {row['worst seed']}) vs {row['target']}"
                   f" - {row['met'].lower()}")
    wire = row["after 2 s"]
    if row["condition"] == "clean" and wire > WIRE_CLEAN_TARGET:
        out.append(f"{name}: {wire} kbit/s after 2 s vs <= {WIRE_CLEAN_TARGET:g}, over by "
                   f"{wire - WIRE_CLEAN_TARGET:.1f}")
    if row["condition"] == "random 20%" and row["kbit/s UDP payload"] > WIRE_LOSSY_TARGET:
        over = row["kbit/s UDP payload"] - WIRE_LOSSY_TARGET
        out.append(f"{name}: {row['kbit/s UDP payload']} kbit/s vs <= {WIRE_LOSSY_TARGET:g}, "
                   f"over by {over:.1f}")
    if row["heard - spoken ms (max)"] > MAX_STRETCH_MS:
        out.append(f"{name}: heard {row['heard - spoken ms (max)']} ms longer than spoken vs "
                   f"<= {MAX_STRETCH_MS}")
    return out


LIVE_COMMAND = ("ptt talk bench --wav SPEECH.wav  ->  ptt server  ->  python -m ptt.faults.proxy "
                "--loss down.voice=P [--burst down.voice=3] --seed S --trace T  ->  "
                "ptt listen bench --out HEARD.wav (or the proxy in front of the talker, "
                "--loss up.voice=P)")


def run(quick: bool = False, plan: LivePlan | None = None, offline: bool = True,
        verbose: bool = True) -> dict[str, Any]:
    """The real commands first (nothing else running), then the offline pipeline; the dict
    bench/run_all.py renders."""
    live = run_live(plan or (QUICK_PLAN if quick else LivePlan()), verbose)
    off: dict[str, Any] = {}
    tables = []
    if offline:
        off = run_offline(quick, verbose=verbose)
        tables.append({"title": off["title"], "rows": off["rows"],
                       "notes": f"Target (offline): {off['target']}. {off['notes']}"})
    return {
        "title": "Voice quality (PESQ wideband): the real commands, and the offline pipeline",
        "target": "through the real commands, mean of 3 seeds per voice: clean >= 4.2, 5% >= "
                  "4.1, 10% >= 4.0, 20% >= 3.7, bursty >= 3.3, no seed more than 0.3 below; "
                  f"UDP payload on a clean path <= {WIRE_CLEAN_TARGET:g} kbit/s after the first "
                  f"2 s of a burst, at 20% loss <= {WIRE_LOSSY_TARGET:g} kbit/s; a burst heard "
                  f"at most {MAX_STRETCH_MS} ms longer than spoken",
        "rows": live["rows"],
        "tables": tables,
        "targets missed (real commands)": "; ".join(live["misses"]) or "none",
        "targets met (offline pipeline)": off.get("targets met (ptt defaults)", "not run"),
        "notes": (
            f"Real commands: {LIVE_COMMAND}, one burst per run, a real server, an end-to-end "
            "encrypted group, held-out espeak-ng speech (an English and a Mandarin voice, "
            "sentences not in ptt.audio.samples), loss on voice datagrams only. PESQ-WB of the "
            "listener's WAV against the sent one after alignment (codec and buffer delay "
            "removed). kbit/s UDP payload: bytes of the voice datagrams the proxy received on "
            "the lossy path (before its losses) over the burst, and from 2 s into the burst; "
            "IPv4 and UDP headers add 11.2 kbit/s at 50 datagrams/s. heard - spoken: the "
            "audible span of the listener's WAV minus the sent one's, worst seed. Bursty: "
            "Gilbert-Elliott, average 10%, mean loss run 3 datagrams. 2 shared cores, 8 "
            "engineers' test runs alongside: real-time figures carry that noise."
        ),
    }


def _pick(given: str | None, known: tuple[str, ...], what: str) -> tuple[str, ...] | None:
    """The names of ``given`` (comma-separated, each a unique prefix of one of ``known``)."""
    if given is None:
        return None
    out = []
    for part in given.split(","):
        hits = [k for k in known if k.lower().startswith(part.strip().lower())]
        if len(hits) != 1:
            raise ValueError(f"{what} {part.strip()!r}: expected one of {', '.join(known)}")
        out.append(hits[0])
    return tuple(dict.fromkeys(out))


def _live_cells(args: argparse.Namespace) -> dict[str, Any]:
    """The LivePlan fields that --voices, --paths, --conditions and --seeds choose."""
    cells: dict[str, Any] = {}
    for key, known, what in (("voices", tuple(LIVE_VOICES), "voice"),
                             ("ways", ("down", "up"), "path"),
                             ("conditions", tuple(LIVE_CONDITIONS), "condition")):
        picked = _pick(getattr(args, "paths" if key == "ways" else key), known, what)
        if picked is not None:
            cells[key] = picked
    if args.text is not None:
        cells["texts"] = {v: args.text for v in cells.get("voices", tuple(LIVE_VOICES))}
    if args.bitrate is not None:
        try:
            cells["bitrates"] = tuple(int(x) for x in args.bitrate.split(","))
        except ValueError:
            raise ValueError(f"bitrate {args.bitrate!r}: expected bit/s like 28000 or "
                             "28000,30000") from None
        if not all(MIN_BITRATE <= b <= MAX_BITRATE for b in cells["bitrates"]):
            raise ValueError(f"bitrate {args.bitrate!r}: expected {MIN_BITRATE}-{MAX_BITRATE} "
                             "bit/s")
    if args.seeds is not None:
        try:
            cells["seeds"] = tuple(int(x) for x in args.seeds.split(","))
        except ValueError:
            raise ValueError(f"seeds {args.seeds!r}: expected integers like 1,2,3") from None
    return cells


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="ptt's defaults, 2 seeds, 7 s of speech")
    ap.add_argument("--only", help="only configurations whose name contains this")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--offline-only", action="store_true",
                    help="only the offline pipeline (virtual time)")
    ap.add_argument("--live-only", action="store_true", help="only the real commands")
    ap.add_argument("--minutes", type=float, default=LivePlan.minutes,
                    help="time bound of the real-command runs")
    ap.add_argument("--voices", help=f"real commands: comma-separated, of {', '.join(LIVE_VOICES)}"
                    " (a unique prefix will do: English,Mandarin)")
    ap.add_argument("--paths", help="real commands: down (server -> listener), up (talker -> "
                    "server) or down,up")
    ap.add_argument("--conditions", help="real commands: comma-separated, of "
                    f"{', '.join(LIVE_CONDITIONS)}".replace("%", "%%"))  # argparse formats help with %
    ap.add_argument("--seeds", help="real commands: the proxy's seeds, e.g. 1,2,3")
    ap.add_argument("--text", help="real commands: each voice speaks this instead of its "
                    "sentence (tests/bench/test_bench_voice_live.py's: \"Radio check, gate two. "
                    "How do you read?\")")
    ap.add_argument("--runs-bitrate", choices=("on", "off", "on,off", "off,on"), default="on",
                    help="real commands: off runs the talker without the Opus rate against "
                    "loss runs (RUNS_BITRATE); on,off runs each cell both ways in turn (A/B)")
    ap.add_argument("--build", choices=("after", "before", "after,before", "before,after"),
                    default="after", help="real commands: before runs both clients with this "
                    "session's changes undone (bench/one_report_start, bench/reach_two_short, "
                    "bench/runs_per_burst first on their PYTHONPATH); after,before runs each cell both ways in turn")
    ap.add_argument("--bitrate", help="real commands: the talker's Opus bitrate in bit/s "
                    "(PTT_BITRATE, e.g. 28000); comma-separated, e.g. 28000,30000: each cell at "
                    "each in turn (A/B); default: ptt's default")
    ap.add_argument("--dump", type=Path, help="real commands: keep each run's proxy trace and "
                    "fates, timing logs, WAV and a run.json under this directory")
    args = ap.parse_args()
    try:
        cells = _live_cells(args)
    except ValueError as exc:
        print(f"bench_voice_quality: {exc}", file=sys.stderr)
        return 2
    configs = None
    if args.only:
        configs = tuple(c for c in CONFIGS if args.only in c.name)
        if not configs:
            print(f"no configuration matches {args.only!r}", file=sys.stderr)
            return 2
    if args.offline_only or configs is not None:
        res = run_offline(args.quick, configs)
        print(f"targets met by ptt's defaults: {res['targets met (ptt defaults)']}")
    else:
        plan = QUICK_PLAN if args.quick else LivePlan()
        plan = dataclasses.replace(plan, minutes=args.minutes,
                                   runs_bitrate=tuple(x == "on" for x in
                                                      args.runs_bitrate.split(",")),
                                   built=tuple(x == "after" for x in args.build.split(",")),
                                   dump=args.dump, **cells)
        res = run(args.quick, plan, offline=not args.live_only)
        print(f"targets missed (real commands): {res['targets missed (real commands)']}")
    print("anchors: PLC only 2.51 / 1.70 / 1.30, Opus FEC only (24 kbps) 2.92 / 2.52 / 1.88 "
          "at 5 / 10 / 20% random loss")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
