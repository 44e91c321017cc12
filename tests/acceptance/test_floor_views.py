"""Under heavy random loss (the real impairment proxy, 20% and 30% both ways) a talker keeps its
session for the whole page, and a listener's view of the floor never stays stale: `ptt listen
--bursts 1` ends soon after each page instead of waiting for an idle it missed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptt.audio.samples import make_speech_wav
from tests.acceptance.harness import Site, finish, no_traceback, read_until
from tests.e2e.serverproc import free_udp_port

PAGES = 2
LISTENERS = ("bob", "cat")
# the views converge within 2 s of the server's idle; the talker itself learns of it no earlier,
# and a listener then closes its WAV file and says goodbye: 1.5 s of slack for that on a busy CI
STALE_BOUND = 2.0 + 1.5


def proxy(site: Site, loss: float) -> tuple[subprocess.Popen[str], str]:
    port = free_udp_port()
    p = subprocess.Popen(
        [sys.executable, "-m", "ptt.faults.proxy", "--listen", f"127.0.0.1:{port}",
         "--server", site.address, "--loss", str(loss), "--seed", str(int(loss * 100))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None and "proxy listening" in p.stderr.readline()
    return p, f"127.0.0.1:{port}"


@pytest.mark.slow
@pytest.mark.parametrize("loss", [0.2, 0.3])
def test_pages_at_heavy_loss_keep_the_talkers_session_and_no_view_stays_stale(
        site: Site, tmp_path: Path, loss: float) -> None:
    site.add_users("ann", *LISTENERS)
    site.group("g", "ann", *LISTENERS)
    speech = make_speech_wav(tmp_path / "page.wav", "Gate four is closed. Use gate five.")
    lossy, via = proxy(site, loss)
    late: list[float] = []
    try:
        for page in range(PAGES):
            listeners = [site.spawn(u, "listen", "g", "--bursts", "1",
                                    "--out", str(tmp_path / f"{u}-{page}.wav"),
                                    env=site.env(u, PTT_SERVER=via)) for u in LISTENERS]
            for lp in listeners:
                read_until(lp, "g", timeout=20)
            ann = site.spawn("ann", "talk", "g", "--wav", str(speech),
                             env=site.env("ann", PTT_SERVER=via))
            code, out, err = finish(ann, timeout=40)
            t_done = time.monotonic()
            assert code == 0, f"page {page}: {out}\n{err}"
            assert "floor lost" not in out + err
            for u, lp in zip(LISTENERS, listeners):
                try:
                    lp.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    lp.kill()
                late.append(time.monotonic() - t_done)
                code, lout, lerr = finish(lp, timeout=5)
                assert code == 0, f"{u} on page {page}: {lerr}"
                assert "connection lost" not in lout, lout
                no_traceback(lerr)
    finally:
        lossy.send_signal(signal.SIGTERM)
        lossy.communicate(timeout=10)
    assert max(late) <= STALE_BOUND, f"listeners ended {late} s after the talker"
