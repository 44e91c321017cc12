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
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_voice_quality as b  # noqa: E402

from ptt.audio.wav import read_wav  # noqa: E402
from ptt.media.jitter import JitterConfig  # noqa: E402

SEEDS = (1, 2, 3, 4, 5, 6)


def main(experiments: list[str]) -> int:
    conds = {c.name: c for c in b.CONDITIONS}
    with tempfile.TemporaryDirectory(prefix="ptt-policy-") as tmp:
        voices = {name: b.split(read_wav(b.held_out_speech(v, text, Path(tmp, f"{v}.wav"))))
                  for name, (v, text) in b.LIVE_VOICES.items()}
    for line in experiments:
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
