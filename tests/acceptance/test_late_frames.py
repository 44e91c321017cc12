"""A listener whose own process stalls mid-burst (SIGSTOP/SIGCONT on the real `ptt listen`)
counts nothing lost: what waited in its socket was delivered, played late or said to have come
too late to play. It still prints its reception line for the burst (`--bursts 1` waits for the
tail its grown jitter buffer holds), and the talker, told of no loss, adds no copies."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from tests.acceptance.harness import (
    Site,
    no_traceback,
    spawn_logged,
    stop_logged,
    tone_wav,
    wait_in_file,
)

STALL = 0.4  # s: ~20 voice packets wait in the socket meanwhile


def test_a_stalled_listener_reports_late_frames_not_loss(site: Site, tmp_path: Path) -> None:
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    page = tone_wav(tmp_path / "page.wav", 4.0)
    log = tmp_path / "listen.log"
    listener = spawn_logged(site, "bob", log, "listen", "g", "--bursts", "1", "--out",
                            str(tmp_path / "heard.wav"))
    try:
        wait_in_file(listener, log, "joined g", timeout=30)
        talker = site.spawn("ann", "talk", "g", "--wav", str(page))
        wait_in_file(listener, log, "ann is talking", timeout=30)
        time.sleep(1.5)  # past the talker's first reports
        listener.send_signal(signal.SIGSTOP)
        time.sleep(STALL)
        listener.send_signal(signal.SIGCONT)
        out, err = talker.communicate(timeout=60)
        no_traceback(err)
        assert talker.returncode == 0, out + err
        heard = wait_in_file(listener, log, "received", timeout=20)
    finally:
        listener.send_signal(signal.SIGCONT)
        code = stop_logged(listener, bound=20)
    assert code == 0, log.read_text()
    line = next(x for x in heard.splitlines() if "received" in x)
    assert re.search(r"received 100% \(0 of \d+ frames lost(; \d+ came too late to play)?\)",
                     line), line
    # told of no loss, the talker stays on bare frames (the link lines name every change)
    losses = [float(x) for x in re.findall(r"link: ([0-9.]+)% loss", out)]
    assert losses and max(losses) == 0.0, out
