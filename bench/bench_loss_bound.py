"""What bounds a seed under bursty loss: the real-command bench's loss patterns, offline.

For each voice, lossy path and proxy seed of bench_voice_quality's live cells, the exact voice
datagrams ``python -m ptt.faults.proxy --seed SEED`` drops (by index: the proxy draws each
datagram's fate from a generator seeded per client and path, so the n-th voice datagram of a
lone listener's downlink meets the same fate in every run; bench_voice_quality --dump checks
that live), their runs and where they land in the speech, and what could be heard on it:

- *clean*: the speech through Opus alone, at the rate the talker uses against runs;
- *PLC only*: every lost frame concealed by Opus, no copies;
- *oracle, reach K*: every lost frame that a copy at any offset 1..K could bring back is brought
  back (at least one of the K packets after it arrived), with a listener already waiting K
  frames, no frame inserted to learn it; the rest concealed by Opus. No protection that waits at
  most K frames for a lost frame does better with Opus concealment behind it;
- *ptt, replayed*: ptt's own talker (adaptive policy, starting as ``ptt talk`` does) and a cold
  listener on the same pattern in virtual time (bench/policy_search.py --live-patterns).

    .venv/bin/python bench/bench_loss_bound.py                       # Mandarin, listener's path
    .venv/bin/python bench/bench_loss_bound.py --voices English,Mandarin --paths down,up

Offline, one core; PESQ-WB against the sent speech, aligned as in bench_voice_quality.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_voice_quality as b  # noqa: E402
import numpy as np  # noqa: E402
import policy_search as ps  # noqa: E402

from ptt.audio.codec import DEFAULT_BITRATE, SAMPLE_RATE, OpusDecoder, OpusEncoder  # noqa: E402
from ptt.audio.wav import read_wav  # noqa: E402
from ptt.media import jitter  # noqa: E402
from ptt.media.sender import RUN_OFFSETS, RUNS_BITRATE, RedundancyPolicy  # noqa: E402

REACHES = (2, 3, 4, 6, 8, 10, 12, 16)
LONG_RUN = 7  # runs longer than the copies' reach (6) are listed one by one


def pattern(seed: int, way: str, n: int, condition: str = "bursty 10%") -> list[bool]:
    """Whether each of the first ``n`` voice datagrams of the path is lost."""
    p = ps.ProxyPattern(seed, way, ps.LIVE_IMPAIRMENTS[condition])
    return [p.lost(None) for _ in range(n)]  # type: ignore[arg-type]


def runs_of(lost: list[bool]) -> list[tuple[int, int]]:
    """(first frame, length) of each run of lost datagrams."""
    out: list[tuple[int, int]] = []
    for i, x in enumerate(lost):
        if x:
            if out and out[-1][0] + out[-1][1] == i:
                out[-1] = (out[-1][0], out[-1][1] + 1)
            else:
                out.append((i, 1))
    return out


def voiced(frames: list[bytes], threshold: float = 500.0) -> list[bool]:
    """Frames whose RMS is above ``threshold`` (speech, not a pause)."""
    return [float(np.sqrt(np.mean(np.frombuffer(f, "<i2").astype(np.float64) ** 2))) > threshold
            for f in frames]


def restored(lost: list[bool], reach: int) -> list[bool]:
    """Per frame: heard as sent (arrived, or a copy within ``reach`` packets after it came)."""
    n = len(lost)
    return [not x or any(not lost[j] for j in range(i + 1, min(i + reach, n - 1) + 1))
            for i, x in enumerate(lost)]


def play(packets: list[bytes], heard: list[bool]) -> bytes:
    """Decode ``packets`` in order, concealing (Opus PLC) the frames not ``heard``."""
    dec = OpusDecoder(SAMPLE_RATE)
    return b"".join(dec.decode(p) if h else dec.conceal() for p, h in zip(packets, heard,
                                                                          strict=True))


def replay(frames: list[bytes], seed: int, way: str, before: bool = False) -> float:
    """ptt's adaptive talker and a cold listener on the pattern, virtual time; ``before``:
    with this session's changes undone, as bench_voice_quality --build before does live."""
    b.Session = ps.TalkSession  # type: ignore[misc]
    imp = ps.LIVE_IMPAIRMENTS["bursty 10%"]
    c = b.Condition("bursty 10%", lambda: ps.ProxyPattern(seed, way, imp))
    saved = RedundancyPolicy.GUESS_REPORTS, jitter.REACH_JITTERS
    if before:
        RedundancyPolicy.GUESS_REPORTS, jitter.REACH_JITTERS = 1, None
    try:
        return float(b.measure(frames, b.Config("adaptive", warm=False), c, (seed,))["pesq"])
    finally:
        RedundancyPolicy.GUESS_REPORTS, jitter.REACH_JITTERS = saved


def spans(seqs: list[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``."""
    out: list[list[int]] = []
    for q in sorted(seqs):
        if out and q == out[-1][1] + 1:
            out[-1][1] = q
        else:
            out.append([q, q])
    return ", ".join(f"{a}-{z}" if z > a else f"{a}" for a, z in out)


def mouth_to_ear(run: Path) -> list[float]:
    """Milliseconds from the talker's send to the listener's playout of each frame played from
    its packet or a copy (bench_mouth_to_ear's measure), from a run's two timing logs."""
    from ptt.client.timing import read_timing

    sent = {e.seq: e.at for p in run.glob("sent-*.txt") for e in read_timing(p)}
    return [1000 * (e.at - sent[e.seq]) for p in run.glob("played-*.txt")
            for e in read_timing(p)
            if e.source in ("received", "redundancy") and e.seq in sent]


def dumps(dirs: list[Path]) -> int:
    """Each run bench_voice_quality --dump left: whether the proxy dropped the datagrams the
    seed's pattern says (by seq), and which frames the listener concealed or waited before."""
    for d in dirs:
        for path in sorted(d.rglob("run.json")):
            r = json.loads(path.read_text())
            dropped = r["dropped"]
            n = max(dropped, default=0) + 1
            expected = [i for i, x in enumerate(pattern(r["seed"], r["way"], n)) if x]
            delays = mouth_to_ear(path.parent)
            m2e = (f"mouth-to-ear p50 / p95 {np.percentile(delays, 50):.0f} / "
                   f"{np.percentile(delays, 95):.0f} ms; " if delays else "")
            env = (r.get("env") or r.get("talker_env") or {}).get("PYTHONPATH", "")
            variant = "before" if env else "as built"
            print(f"{path.parent.parent.name} {r['voice'][:8]:8s} {r['way']:4s} seed {r['seed']} "
                  f"{variant:17s} PESQ {r['pesq']:.2f} load {r['load']:.1f}: dropped "
                  f"{len(dropped)} {'= the pattern' if dropped == expected else '!= the pattern'}"
                  f"; concealed {len(r['concealed'])} [{spans(r['concealed'])}]; inserted "
                  f"before [{spans(r['inserted'])}]; {m2e}{r['protection']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--voices", default="Mandarin")
    ap.add_argument("--paths", default="down")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--reaches", default=",".join(map(str, REACHES)))
    ap.add_argument("--bitrate", type=int, default=RUNS_BITRATE or DEFAULT_BITRATE)
    ap.add_argument("--no-replay", action="store_true", help="skip ptt's own replay")
    ap.add_argument("--dumps", nargs="+", type=Path, metavar="DIR",
                    help="instead: read the runs bench_voice_quality --dump left in DIR")
    args = ap.parse_args(argv)
    if args.dumps:
        return dumps(args.dumps)
    try:
        voices = b._pick(args.voices, tuple(b.LIVE_VOICES), "voice") or ()
        ways = b._pick(args.paths, ("down", "up"), "path") or ()
        seeds = tuple(int(s) for s in args.seeds.split(","))
        reaches = tuple(int(k) for k in args.reaches.split(","))
    except ValueError as exc:
        print(f"bench_loss_bound: {exc}", file=sys.stderr)
        return 2
    print(f"ptt's copies against runs reach {max(RUN_OFFSETS[3])} frames; Opus at "
          f"{args.bitrate} bit/s")
    with tempfile.TemporaryDirectory(prefix="ptt-bound-") as tmp:
        for name in voices:
            v, text = b.LIVE_VOICES[name]
            frames = b.split(read_wav(b.held_out_speech(v, text, Path(tmp, f"{v}.wav"))))
            ref = b"".join(frames)
            enc = OpusEncoder(SAMPLE_RATE, args.bitrate, fec=False, expected_loss=0)
            packets = [enc.encode(f) for f in frames]
            speech = voiced(frames)
            clean = b.score(ref, play(packets, [True] * len(packets)))
            print(f"{name}: {len(frames)} frames ({sum(speech)} voiced), clean {clean:.2f}")
            for way in ways:
                for seed in seeds:
                    lost = pattern(seed, way, len(frames))
                    runs = runs_of(lost)
                    long = [(s, n, sum(speech[s:s + n])) for s, n in runs if n >= LONG_RUN]
                    plc = b.score(ref, play(packets, [not x for x in lost]))
                    bound = {k: b.score(ref, play(packets, restored(lost, k))) for k in reaches}
                    unrestored = {k: sum(not h for h in restored(lost, k)) for k in reaches}
                    product = None if args.no_replay else (replay(frames, seed, way, True),
                                                           replay(frames, seed, way))
                    print(f"  {way:4s} seed {seed}: lost {sum(lost)} ({100 * sum(lost) / len(lost):.1f} %)"
                          f" in {len(runs)} runs, longest {max((n for _, n in runs), default=0)}"
                          f"; runs >= {LONG_RUN} (frame, length, voiced frames): {long}")
                    print(f"      PLC only {plc:.2f}  "
                          + "  ".join(f"oracle K={k} {bound[k]:.2f} ({unrestored[k]} concealed)"
                                      for k in reaches)
                          + ("" if product is None else
                             f"  ptt replayed {product[0]:.2f} before, {product[1]:.2f} now"),
                          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
