"""Voice quality under loss and jitter: PESQ wideband through ptt's own media path.

Real speech (espeak-ng, ``ptt.audio.samples``) goes through the project's Opus encoder
(``ptt.audio.codec``), packetiser with redundancy and its adaptive policy (``ptt.media.sender``), a
seeded impairment model (``ptt.media.impair``) and the burst receiver with its jitter buffer and
decoder (``ptt.media.receiver``), in virtual time: the talker makes a frame every 20 ms, the
listener's player pops one every 20 ms (at a phase offset), datagrams arrive in between, and the
listener reports its loss every second. The played audio is aligned to the original by
cross-correlation (codec and jitter-buffer delay removed) and scored with PESQ wideband (``pesq``,
mode "wb", 16 kHz). Each lossy condition is the mean of 5 seeds.

As in a talk group, the listener first hears one short burst over the same path (not scored), so
the jitter buffer and the talker's policy start from what the path taught them; the "cold start"
rows skip it.

    .venv/bin/python bench/bench_voice_quality.py                # everything (about 10 min)
    .venv/bin/python bench/bench_voice_quality.py --quick        # ptt's defaults, 2 seeds, 7 s
    .venv/bin/python bench/bench_voice_quality.py --only K=2     # configurations matching

"kbps" is the bitrate on the wire: voice header and payload bytes per second (IPv4 and UDP headers
add 11.2 kbps at 50 packets a second).
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptt.audio.codec import DEFAULT_BITRATE, FRAME_BYTES, SAMPLE_RATE, OpusDecoder, OpusEncoder
from ptt.audio.samples import DEFAULT_TEXT, SHORT_TEXT, speech_pcm
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
from ptt.media.sender import DEFAULT_REDUNDANCY, Packetizer, RedundancyPolicy

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
            pk = Packetizer(1, 7, self.burst_id, redundancy=settings.redundancy)
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
                pk.redundancy = settings.redundancy
            self.encoder.set_expected_loss(settings.expected_loss)


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


def run(quick: bool = False, configs: tuple[Config, ...] | None = None,
        verbose: bool = True) -> dict[str, Any]:
    """Score ``configs`` (default: all; quick: ptt's defaults only, 2 seeds, 7 s of speech) under
    their conditions; returns the dict bench/run_all.py renders."""
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
        "title": "Voice quality under loss and jitter (PESQ wideband)",
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="ptt's defaults, 2 seeds, 7 s of speech")
    ap.add_argument("--only", help="only configurations whose name contains this")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    configs = None
    if args.only:
        configs = tuple(c for c in CONFIGS if args.only in c.name)
        if not configs:
            print(f"no configuration matches {args.only!r}", file=sys.stderr)
            return 2
    res = run(args.quick, configs)
    print(f"targets met by ptt's defaults: {res['targets met (ptt defaults)']}")
    print("anchors: PLC only 2.51 / 1.70 / 1.30, Opus FEC only (24 kbps) 2.92 / 2.52 / 1.88 "
          "at 5 / 10 / 20% random loss")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
