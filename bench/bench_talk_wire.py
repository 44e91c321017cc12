"""What ``ptt talk --wav`` puts on the wire, per loss on the listener's path.

The real commands as processes: a ``ptt server``, ``ptt listen --out`` and ``ptt talk --wav``
(both through ``python -m ptt.faults.proxy``, which drops voice on the server -> listener path
only), one encrypted group. The proxy's ``--trace`` records the UDP payload of every voice
datagram the talker sends (sealed, headers included); the talker prints a line per change of
protection. Rows: loss on the listener's path (random, or Gilbert-Elliott in
runs of 3), the talker's mean kbit/s over the whole burst and after its first 2 s, the mean voice
datagram size, and the copies per packet it ended with. Speech: espeak-ng, about 12 s.

    .venv/bin/python bench/bench_talk_wire.py            # 3 seeds
    .venv/bin/python bench/bench_talk_wire.py --quick    # 1 seed
    .venv/bin/python bench/bench_talk_wire.py --ptt OLD/bin/ptt   # another build's commands
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.acceptance.harness import Site  # noqa: E402  (the same users and server as the tests)

TEXT = ("Unit seven, please report to the loading dock at gate four. Emergency crews are standing "
        "by near the north entrance. Repeat, the north entrance is now closed. Dispatch, this is "
        "team bravo, we copy your last message.")
CONDITIONS = [("clean", []), ("5%", ["--loss", "down.voice=0.05"]),
              ("10%", ["--loss", "down.voice=0.10"]), ("20%", ["--loss", "down.voice=0.20"]),
              ("bursty 10%, runs of 3", ["--loss", "down.voice=0.10", "--burst", "down.voice=3"])]
LINK = re.compile(r"-> ((?:no copies|1 copy at offset \d|\d copies at offsets \d(?:,\d)*)"
                  r"(?:, Opus at (?:most|least) [\d.]+ kbit/s)?)")


def _reader(stream: Any, out: list[tuple[float, str]]) -> threading.Thread:
    def read() -> None:
        for line in stream:
            out.append((time.monotonic(), line.rstrip("\n")))
    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_run(site: Site, wav: Path, proxy_args: list[str], seed: int) -> dict[str, Any]:
    port = _free_port()
    trace = site.root / f"trace-{seed}.txt"
    proxy = subprocess.Popen(
        [sys.executable, "-m", "ptt.faults.proxy", "--listen", f"127.0.0.1:{port}", "--server",
         site.address, "--trace", str(trace), "--seed", str(seed), *proxy_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    time.sleep(1.0)
    via = ["--server", f"127.0.0.1:{port}"]
    listener = site.spawn("bob", "listen", "g", "--out", str(site.root / "bob.wav"),
                          "--bursts", "1", *via)
    time.sleep(2.0)
    talker = site.spawn("ann", "talk", "g", "--wav", str(wav), *via)
    said: list[tuple[float, str]] = []
    _reader(talker.stdout, said).join(60)
    talker.wait(60)
    listener.wait(20)
    proxy.terminate()
    proxy.wait(5)
    ups = [(float(t), int(n)) for t, way, n in
           (line.split() for line in trace.read_text().splitlines()) if way == "up"]
    t0, t1 = ups[0][0], ups[-1][0]
    after = [n for t, n in ups if t >= t0 + 2.0]
    links = [mo.group(1) for _, line in said if (mo := LINK.search(line)) is not None]
    return {
        "kbps": sum(n for _, n in ups) * 8 / (t1 - t0) / 1000,
        "kbps_after_2s": sum(after) * 8 / (t1 - t0 - 2.0) / 1000,
        "bytes_per_datagram": sum(n for _, n in ups) / len(ups),
        "copies_at_end": links[-1] if links else "(no report)",
    }


def run(quick: bool = False) -> dict[str, Any]:
    from ptt.audio.samples import make_speech_wav

    seeds = [1] if quick else [1, 2, 3]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ptt-bench-wire-") as tmp:
        wav = make_speech_wav(Path(tmp, "notice.wav"), TEXT)
        site = Site(Path(tmp, "site")).start()
        try:
            site.add_user("ann")
            site.add_user("bob")
            site.group("g", "ann", "bob")
            for name, args in CONDITIONS:
                runs = [one_run(site, wav, args, seed) for seed in seeds]
                rows.append({
                    "loss on server->listener": name,
                    "kbit/s (whole burst)": statistics.mean(r["kbps"] for r in runs),
                    "kbit/s after 2 s": statistics.mean(r["kbps_after_2s"] for r in runs),
                    "bytes/datagram": statistics.mean(r["bytes_per_datagram"] for r in runs),
                    "protection at the end": " / ".join(r["copies_at_end"] for r in runs),
                })
        finally:
            site.stop()
    return {
        "title": "What `ptt talk --wav` sends (UDP payload at the proxy, real commands)",
        "command": ".venv/bin/python bench/bench_talk_wire.py",
        "target": "clean path <= 48 kbit/s after the first 2 s; 20% loss <= 110 kbit/s",
        "rows": rows,
        "notes": (f"Mean of {len(seeds)} seed(s); talker -> proxy -> server clean, loss on the "
                  "server -> listener voice only; encrypted group, the configured bitrate "
                  "(lower under heavy random loss). The talker starts at 1 copy (offset 1) and "
                  "follows its listener's reports."),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ptt", help="the ptt executable to run (server and clients; the proxy "
                    "stays this tree's)")
    ns = ap.parse_args()
    if ns.ptt:
        from tests.acceptance import harness
        from tests.e2e import serverproc

        harness.PTT = serverproc.PTT = ns.ptt

        def add_user(site: Site, name: str, role: str = "volunteer") -> dict[str, object]:
            """As Site.add_user, also for builds that take the token only with --token."""
            made = site.ptt("coordinator", "user", "add", name, "--role", role, "--json",
                            check=True)
            info: dict[str, object] = json.loads(made.stdout)
            token = str(info["token"])
            login = ["login", "--server", site.address, "--user", name]
            if site.ptt(name, *login, "--token-stdin", input=token + "\n").returncode != 0:
                site.ptt(name, *login, "--token", token, check=True)
            return info

        Site.add_user = add_user  # type: ignore[method-assign]
    print(json.dumps(run(ns.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
