"""The cost of authenticating voice per frame: the session MAC the server checks, and what
per-sender signatures (so multicast members could not forge one another) would cost.

Measured in-process on a 20 ms frame of ``--payload`` bytes (a sealed Opus frame with
redundancy is ~100-200): ``add_mac`` (talker), ``open_mac`` (the server, per frame it forwards
or bridges), and with ``cryptography``'s Ed25519: signing and verifying every frame, and the
amortised scheme (each frame carries a hash of the next one's, every ``--every``-th frame is
signed: the cost per frame is one SHA-256 plus a signature or verification per N frames).

    .venv/bin/python bench/bench_voice_auth.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402

from ptt.protocol.voice import VoiceHeader, add_mac, encode_voice, open_mac, voice_mac_key  # noqa: E402


def per_call_us(fn: Callable[[], object], n: int, runs: int = 3) -> float:
    """The best of ``runs`` timings of ``n`` calls, in microseconds per call."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def run(quick: bool = False, payload: int = 160, every: int = 10) -> dict[str, object]:
    n = 2_000 if quick else 20_000
    key = voice_mac_key(bytes(32))
    frame = encode_voice(VoiceHeader(1, 2, 3, 4, 5), bytes(payload))
    sent = add_mac(key, frame)
    sk = Ed25519PrivateKey.generate()
    pk = sk.public_key()
    sig = sk.sign(frame)
    mac_add = per_call_us(lambda: add_mac(key, frame), n)
    mac_open = per_call_us(lambda: open_mac(key, sent), n)
    sign = per_call_us(lambda: sk.sign(frame), n // 10)
    verify = per_call_us(lambda: pk.verify(sig, frame), n // 10)
    sha = per_call_us(lambda: hashlib.sha256(frame).digest(), n)
    rows = [
        {"scheme": "session MAC (BLAKE2s-64), talker adds", "us_per_frame": round(mac_add, 2),
         "bytes_per_frame": 8},
        {"scheme": "session MAC, server checks and strips", "us_per_frame": round(mac_open, 2),
         "bytes_per_frame": 8},
        {"scheme": "Ed25519 every frame, talker signs", "us_per_frame": round(sign, 1),
         "bytes_per_frame": 64},
        {"scheme": "Ed25519 every frame, each listener verifies", "us_per_frame": round(verify, 1),
         "bytes_per_frame": 64},
        {"scheme": f"hash chain + Ed25519 every {every}th frame, talker",
         "us_per_frame": round(sha + sign / every, 1), "bytes_per_frame": round(32 + 64 / every)},
        {"scheme": f"hash chain + Ed25519 every {every}th frame, listener",
         "us_per_frame": round(sha + verify / every, 1),
         "bytes_per_frame": round(32 + 64 / every)},
    ]
    return {"title": "Voice authentication cost per frame", "payload_bytes": payload,
            "target": ("the server's MAC check small next to the relay's ~7-10 us per forwarded "
                       "packet (it is paid once per frame, not per listener)"),
            "notes": ("Best of 3 timings, in-process, on a shared and loaded machine. The session "
                      "MAC is what the relay and the multicast bridge check (built); per-sender "
                      "Ed25519 (every frame, or amortised over a hash chain) is what keeping "
                      "members from forging one another on a multicast LAN would cost each "
                      "listener (not built, see docs/security.md)."),
            "rows": rows, "machine": loadgen.machine_line(),
            "command": ".venv/bin/python bench/bench_voice_auth.py"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--payload", type=int, default=160)
    ap.add_argument("--every", type=int, default=10)
    args = ap.parse_args()
    res = run(False, args.payload, args.every)
    print(f"machine: {res['machine']}")
    print(loadgen.fmt_table(res["rows"]))  # type: ignore[arg-type]
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
