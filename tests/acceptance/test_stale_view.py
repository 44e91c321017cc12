"""A listener that lost every copy of a floor's news still hears the burst: `ptt listen` behind
`python -m ptt.faults.proxy`, whose blackout (SIGUSR1) swallows the grant, its repeats and the
first seconds of voice. An idle listener heartbeats once a minute, so without a cue it would
learn of the talker only then; the voice that arrives after the blackout is that cue."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.acceptance.harness import (
    Site,
    spawn_logged,
    start_proxy,
    stop_logged,
    stop_proxy,
    tone_wav,
    voiced_seconds,
    wait_in_file,
)

# from before the talker's process starts to past the last repeat of the floor news (1.7 s
# after the grant, which comes 0.3-1.5 s after the start)
BLACKOUT = 4.0
FIRST = 0.5
SECOND = 5.5  # the burst the listener misses the start of: 1.5 s or more of it comes after


@pytest.mark.slow
def test_an_idle_listener_that_lost_the_floor_news_hears_the_rest_of_the_burst(
        site: Site, tmp_path: Path) -> None:
    site.add_users("ann", "bob")
    site.group("crew", "ann", "bob")
    first = tone_wav(tmp_path / "first.wav", FIRST)
    second = tone_wav(tmp_path / "second.wav", SECOND, hz=660.0)
    proxy, addr = start_proxy(site.address, "--blackout", str(BLACKOUT))
    out, log = tmp_path / "heard.wav", tmp_path / "listen.log"
    try:
        listener = spawn_logged(site, "bob", log, "listen", "crew", "--out", str(out),
                                env=site.env("bob", PTT_SERVER=addr))
        try:
            wait_in_file(listener, log, "joined crew", timeout=30)
            # a first burst, heard normally: the listener now plays only announced bursts
            assert site.ptt("ann", "talk", "crew", "--wav", str(first), timeout=60).returncode == 0
            time.sleep(0.5)
            proxy.send_signal(signal.SIGUSR1)  # from now on nothing reaches bob for a while
            talked = site.ptt("ann", "talk", "crew", "--wav", str(second), timeout=60)
            assert talked.returncode == 0, talked.stderr
            time.sleep(1.0)  # the jitter buffer's tail
        finally:
            code = stop_logged(listener, signal.SIGINT, bound=10)
        assert code == 130, log.read_text()
    finally:
        stop_proxy(proxy)
    heard = voiced_seconds(out) - FIRST - 0.04  # the first burst played whole, at most
    # without a cue bob hears none of it (his next heartbeat is a minute away)
    assert heard >= 1.0, (heard, log.read_text())
