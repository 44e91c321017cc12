"""The floor-view soak through the real commands: a server, `python -m ptt.faults.proxy` with
random loss both ways, two `ptt listen` and a talker paging with `ptt talk --wav` again and again
for SECONDS, all through the proxy. Reports, per loss rate, the pages sent, the talker's failed
pages, how long after each page's end every listener showed "floor idle" (its view stale until
then), and the listeners' lost sessions ("connection lost")::

    .venv/bin/python bench/soak_floor_views_proxy.py [SECONDS]
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptt.audio.samples import make_speech_wav  # noqa: E402
from tests.acceptance.harness import Site, read_until  # noqa: E402
from tests.e2e.serverproc import free_udp_port  # noqa: E402

LISTENERS = ("bob", "cat")


def idle_times(lines: list[str]) -> list[float]:
    """Wall-clock times (s since the epoch) of the "floor idle" lines of ``ptt listen``."""
    today = datetime.now().strftime("%Y-%m-%d")
    return [datetime.strptime(f"{today} {line.split()[0]}", "%Y-%m-%d %H:%M:%S.%f").timestamp()
            for line in lines if line.endswith("floor idle")]


def soak(root: Path, loss: float, seconds: float) -> str:
    site = Site(root).start()
    try:
        for u in ("ann", *LISTENERS):
            site.add_user(u)
        site.group("g", "ann", *LISTENERS)
        speech = make_speech_wav(root / "page.wav", "Gate four is closed. Use gate five.")
        port = free_udp_port()
        proxy = subprocess.Popen(
            [sys.executable, "-m", "ptt.faults.proxy", "--listen", f"127.0.0.1:{port}",
             "--server", site.address, "--loss", str(loss)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        via = f"127.0.0.1:{port}"
        assert proxy.stderr is not None and "proxy listening" in proxy.stderr.readline()
        listeners = [site.spawn(u, "listen", "g", "--duration", str(seconds + 15),
                                "--out", str(root / f"{u}.wav"),
                                env=site.env(u, PTT_SERVER=via)) for u in LISTENERS]
        for lp in listeners:
            try:
                read_until(lp, "g", timeout=30)
            except AssertionError:
                lp.kill()
                raise RuntimeError(f"ptt listen did not start: {lp.communicate()}") from None
        ends: list[float] = []
        failed = 0
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            done = site.ptt("ann", "talk", "g", "--wav", str(speech), timeout=60,
                            env=site.env("ann", PTT_SERVER=via))
            ends.append(time.time())
            failed += done.returncode != 0
            time.sleep(2.5)  # idle between pages: a listener's view must show it
        outs = []
        for lp in listeners:
            lp.send_signal(signal.SIGINT)
            out, _ = lp.communicate(timeout=30)
            outs.append(out.splitlines())
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(10)
        lags = []
        for lines in outs:
            idles = idle_times(lines)
            for t in ends:  # the first "floor idle" after the page's end, within the idle gap
                after = [i - t for i in idles if i > t - 3.0]
                lags.append(min(after) if after else float("inf"))
        lost = sum(line.count("connection lost") for lines in outs for line in lines)
        worst = max(lags)
        return (f"loss {loss:.0%} both ways, {seconds:.0f} s: {len(ends)} pages, {failed} failed; "
                f"'floor idle' shown at most {worst:+.2f} s after the talker's end "
                f"(negative: before it), {sum(lg > 2.0 for lg in lags)} of {len(lags)} views "
                f"stale > 2 s; listeners' sessions lost: {lost}")
    finally:
        site.stop()


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    for loss in (0.2, 0.3):
        with tempfile.TemporaryDirectory() as tmp:
            print(soak(Path(tmp), loss, seconds), flush=True)


if __name__ == "__main__":
    main()
