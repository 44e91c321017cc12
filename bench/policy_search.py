"""Offline search for the adaptation policy's copies, offsets and bitrate (virtual time, cold).

Each experiment is ``condition|offsets|bitrate|max_lookahead|max_growth``; the talker sends
fixed copies at a fixed bitrate (no adaptation), the listener starts cold (no warm-up burst, as
in one `ptt talk --wav` run), through bench_voice_quality's offline pipeline, the two held-out
voices of its real-command rows, 6 seeds. Prints mean and worst PESQ-WB, kbps on the wire, the
mean playout delay and the frames concealed and inserted (summed over the seeds).

    .venv/bin/python bench/policy_search.py "bursty 10%|2,4,6|30000|6|3" \
        "random 20%|1,2,3|24000|4|3"

The jitter buffer's growth cap is its own (``max_growth`` plus drift, or two frames short of the
copies' reach while losing), so ``max_growth`` above 3 matters only for short reaches.

``--live-patterns COND...`` replays, offline, the exact loss patterns of the real-command bench
(bench_voice_quality's live cells: the proxy's ``--seed`` 1-3 on the listener's downlink and on
the talker's uplink) through ptt's adaptive policy as ``ptt talk`` runs it (starting at
START_REDUNDANCY, the first report half a second in, then one a second) and a cold listener::

    .venv/bin/python bench/policy_search.py --live-patterns "bursty 10%" "random 20%"

It tracks the live cells to within run-to-run noise without the machine's scheduling in them,
so a policy change can be judged on the very patterns the live bench will draw. ``--phases``
replays each seed with the listener's ticks at these offsets (ms) after the talker's frames
(live, where they fall is fixed for a burst and differs from run to run; the offline pipeline's
is 7.3 ms), and prints each phase's PESQ and frames inserted; ``--text`` speaks one sentence in
every voice instead of theirs (the smoke test's, for its one cell)::

    .venv/bin/python bench/policy_search.py --live-patterns "random 10%" --phases 1,5,9,13,17 \
        --text "Radio check, gate two. How do you read?"

``--spread-seeds N`` runs the feedback loop of tests/media/test_feedback_loop.py (virtual time,
Gilbert-Elliott 10 % in runs of 3, two listeners, 10 s) on seeds 1-N, where the test takes seeds
1 and 2, and prints for each the share of the last 5 s the copies were spread against runs (the
test asks 80 %) and from when they stayed spread: whether a change of the listener's timeline or
of the reports moves the talker's call of runs on other channels than the test's::

    .venv/bin/python bench/policy_search.py --spread-seeds 10
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_voice_quality as b  # noqa: E402

from ptt.audio.codec import FRAME_BYTES, OpusEncoder  # noqa: E402
from ptt.audio.samples import SHORT_TEXT, speech_pcm  # noqa: E402
from ptt.audio.wav import read_wav  # noqa: E402
from ptt.faults.proxy import Impairment  # noqa: E402
from ptt.media.impair import GilbertElliott  # noqa: E402
from ptt.media.jitter import JitterConfig  # noqa: E402
from ptt.media.sender import RUN_OFFSETS, START_REDUNDANCY  # noqa: E402

SEEDS = (1, 2, 3, 4, 5, 6)


LIVE_IMPAIRMENTS = {"random 5%": Impairment(loss=0.05), "random 10%": Impairment(loss=0.10),
                    "random 20%": Impairment(loss=0.20),
                    "bursty 10%": Impairment(loss=0.10, burst=b.BURST_LENGTH)}
PROXY_PATHS = ("up", "down")  # ImpairmentProxy draws a generator per (way, kind) in this order ...
PROXY_KINDS = ("control", "voice")  # ... for a client's first datagram


class ProxyPattern:
    """The losses `python -m ptt.faults.proxy --seed SEED` gives the voice of a lone client's
    ``way`` (the generators drawn as ImpairmentProxy._channels draws them)."""

    def __init__(self, seed: int, way: str, impairment: Impairment) -> None:
        master = random.Random(seed)
        draws = {(w, k): master.getrandbits(64) for w in PROXY_PATHS for k in PROXY_KINDS}
        self.channel = impairment.channel(random.Random(draws[(way, "voice")]))

    def lost(self, rng: random.Random) -> bool:
        return not self.channel.transmit(0.0)


class TalkSession(b.Session):
    """A Session whose talker starts as `ptt talk` does: at START_REDUNDANCY, its listener's
    first report half a second in."""

    def __init__(self, cfg: b.Config, cond: b.Condition, seed: int) -> None:
        super().__init__(cfg, cond, seed)
        assert self.policy is not None
        self.policy.start(START_REDUNDANCY)
        self.encoder.set_bitrate(self.policy.settings.bitrate(cfg.bitrate))

    def burst(self, frames: list[bytes], encoded: list[bytes] | None = None,
              gap: int = b.DRAIN_FRAMES) -> tuple[bytes, int, list[float]]:
        self.clock = b.REPORT_EVERY // 2  # reports fall due at multiples of REPORT_EVERY
        return super().burst(frames, encoded, gap)


def live_patterns(conditions: list[str], phases: tuple[float, ...] | None = None,
                  text: str | None = None) -> int:
    """Each live cell's three seeds, replayed offline (see the module's doc); at each of
    ``phases`` (ms) when given."""
    with tempfile.TemporaryDirectory(prefix="ptt-policy-") as tmp:
        voices = {name: b.split(read_wav(b.held_out_speech(v, text or said,
                                                           Path(tmp, f"{v}.wav"))))
                  for name, (v, said) in b.LIVE_VOICES.items()}
    b.Session = TalkSession  # type: ignore[misc]
    for cond in conditions:
        imp = LIVE_IMPAIRMENTS[cond]
        for name, frames in voices.items():
            for way in ("down", "up"):
                scores, rates, each = [], [], []
                for seed in b.LIVE_SEEDS:
                    c = b.Condition(cond, lambda s=seed, w=way: ProxyPattern(s, w, imp))
                    runs = []
                    for phase in phases or (b.TICK_PHASE * 1000,):
                        b.TICK_PHASE = phase / 1000
                        m = b.measure(frames, b.Config("adaptive", warm=False), c, (seed,))
                        runs.append((phase, m["pesq"], m["stats"]["inserted"]))
                        rates.append(m["kbps"])
                    scores.append(sum(p for _, p, _ in runs) / len(runs))
                    each.append(f"seed {seed}: " + " ".join(f"{ph:g} ms {p:.2f} ({n} inserted)"
                                                           for ph, p, n in runs))
                print(f"{cond:11s} {name:16s} {way:4s} PESQ {sum(scores) / len(scores):.2f} "
                      f"seeds {' '.join(f'{x:.2f}' for x in scores)} "
                      f"kbps {sum(rates) / len(rates):.1f}", flush=True)
                if phases:
                    for line in each:
                        print(f"    {line}", flush=True)
    return 0


def spread_seeds(n: int) -> int:
    """The feedback-loop test's bursty case on seeds 1-``n`` (see the module's doc)."""
    from tests.media.test_feedback_loop import run_loop

    pcm = speech_pcm(SHORT_TEXT)
    enc = OpusEncoder(bitrate=32_000)  # as the test's packets
    packets = [enc.encode(pcm[i:i + FRAME_BYTES])
               for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]
    passed = 0
    for seed in range(1, n + 1):
        trace = run_loop(packets, GilbertElliott.from_mean(0.10, burst=3.0), 10.0, listeners=2,
                         seed=seed)
        spread = [o in (RUN_OFFSETS[2], RUN_OFFSETS[3]) for _, o, _ in trace]
        late = [s for (t, _, _), s in zip(trace, spread, strict=True) if t >= 5.0]
        share = sum(late) / len(late)
        since = next((trace[i][0] for i in range(len(trace)) if all(spread[i:])), None)
        passed += share >= 0.8
        print(f"seed {seed}: spread {share:.0%} of the last 5 s, for good from "
              + (f"{since:.2f} s" if since is not None else "never"), flush=True)
    print(f"{passed} of {n} seeds spread >= 80 % of the last 5 s")
    return 0


def experiments(lines: list[str]) -> int:
    conds = {c.name: c for c in b.CONDITIONS}
    with tempfile.TemporaryDirectory(prefix="ptt-policy-") as tmp:
        voices = {name: b.split(read_wav(b.held_out_speech(v, text, Path(tmp, f"{v}.wav"))))
                  for name, (v, text) in b.LIVE_VOICES.items()}
    for line in lines:
        cond, offs, br, look, growth = line.split("|")
        offsets = tuple(int(x) for x in offs.split(","))
        jc = JitterConfig(max_lookahead=int(look), max_growth=int(growth))
        cfg = b.Config(f"{offsets}", bitrate=int(br), offsets=offsets, jitter=jc, warm=False)
        for name, frames in voices.items():
            m = b.measure(frames, cfg, conds[cond], SEEDS)
            st = m["stats"]
            print(f"{cond:11s} offsets {offs:8s} {br} bit/s look {look} growth {growth} "
                  f"{name:16s} PESQ {m['pesq']:.2f} worst {m['pesq_min']:.2f} "
                  f"kbps {m['kbps']:.1f} delay {m['delay_ms']:.0f} ms "
                  f"concealed {st['concealed']} inserted {st['inserted']}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    conds = [c.name for c in b.CONDITIONS]
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                    help="condition|offsets|bitrate|max_lookahead|max_growth, e.g. "
                         "'bursty 10%%|2,4,6|30000|6|3'; conditions: "
                         + ", ".join(conds).replace("%", "%%"))
    ap.add_argument("--live-patterns", nargs="+", metavar="COND",
                    help="replay the real-command bench's loss patterns of these conditions "
                         "through ptt's adaptive policy")
    ap.add_argument("--phases", help="with --live-patterns: the listener's tick phases, ms "
                    "after the talker's frames, e.g. 1,5,9,13,17")
    ap.add_argument("--text", help="with --live-patterns: speak this in every voice")
    ap.add_argument("--spread-seeds", type=int, metavar="N",
                    help="the feedback-loop test's bursty case on seeds 1-N")
    args = ap.parse_args(argv)
    if args.spread_seeds is not None:
        if not 1 <= args.spread_seeds <= 100:
            ap.error(f"--spread-seeds {args.spread_seeds}: 1 to 100")
        return spread_seeds(args.spread_seeds)
    if args.live_patterns:
        unknown = [c for c in args.live_patterns if c not in LIVE_IMPAIRMENTS]
        if unknown:
            ap.error(f"--live-patterns: unknown {', '.join(unknown)}; one of: "
                     f"{', '.join(LIVE_IMPAIRMENTS)}")
        try:
            phases = (tuple(float(x) for x in args.phases.split(","))
                      if args.phases else None)
        except ValueError:
            ap.error(f"--phases {args.phases!r}: expected numbers like 1,5,9")
        if phases is not None and not all(0 <= p < 20 for p in phases):
            ap.error(f"--phases {args.phases!r}: each within 0-20 ms (one frame)")
        return live_patterns(args.live_patterns, phases, args.text)
    if not args.experiments:
        ap.error("give one EXPERIMENT or more, or --live-patterns COND")
    for line in args.experiments:
        parts = line.split("|")
        if len(parts) != 5 or parts[0] not in conds:
            ap.error(f"{line!r}: want condition|offsets|bitrate|max_lookahead|max_growth "
                     f"with a condition of: {', '.join(conds)}")
        try:
            [int(x) for x in parts[1].split(",")] + [int(x) for x in parts[2:]]
        except ValueError:
            ap.error(f"{line!r}: offsets, bitrate, max_lookahead and max_growth are integers")
    return experiments(args.experiments)


if __name__ == "__main__":
    sys.exit(main())
