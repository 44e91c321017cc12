"""A talker whose connection logs in again mid-page keeps the floor from the queue: dan's `ptt
talk` behind `python -m ptt.faults.proxy --blackout-way down`, whose blackout (SIGUSR1) leaves
the server hearing his voice and heartbeats while nothing comes back. His client gives its
session up after the session timeout and logs in again (same device) while the server still
has the old session holding the floor, without backing off its login while the floor may still
be held for it; bob, queued behind him, must not be granted then: dan is granted his own burst
again and sends the page again from the start."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tests.acceptance.harness import (
    Site,
    finish,
    interrupt,
    no_traceback,
    read_until,
    spawn_logged,
    start_proxy,
    stop_logged,
    stop_proxy,
    tone_wav,
    wait_in_file,
)

# short sessions: dan's client gives up ~2.0 s after the blackout starts (a talking client
# heartbeats every 0.125 s and gives up busy_timeout after it last heard the server) and
# stops sending voice then
BUSY = "0.5"
TIMEOUT = "2"
# ends ~0.9 s after dan gives up: a client that held a floor sends its Hello every 0.25 s
# within T1 of giving up (ptt.protocol.client.TALKER_BACK_WITHIN), so its fifth copy, at +1.0 s,
# logs him in inside the floor's silence timer (T1, 1.5 s after his last voice); backing off as
# other clients do, the copy after +0.75 s would leave at +1.75 s, past it
BLACKOUT = 2.9
PAGE = 3.5  # dan is still talking when he gives up (the blackout starts ~0.5 s in)


@pytest.mark.slow
def test_the_talker_s_connection_logging_in_again_keeps_the_floor_from_the_queue(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTT_SERVER_HEARTBEAT_INTERVAL", BUSY)
    monkeypatch.setenv("PTT_SERVER_SESSION_TIMEOUT", TIMEOUT)
    site = Site(tmp_path).start()
    proxy = dan = bob = listener = None
    try:
        site.add_users("dan", "bob", "ann")
        site.group("g", "dan", "bob", "ann", plain=True)
        page = tone_wav(tmp_path / "dan.wav", PAGE)
        short = tone_wav(tmp_path / "bob.wav", 0.5, hz=660.0)
        proxy, addr = start_proxy(site.address, "--blackout", str(BLACKOUT),
                                  "--blackout-way", "down")
        heard = tmp_path / "listen.log"
        listener = spawn_logged(site, "ann", heard, "listen", "g", "--out",
                                str(tmp_path / "heard.wav"))
        wait_in_file(listener, heard, "joined g", timeout=20)
        dan = site.spawn("dan", "talk", "g", "--wav", str(page),
                         env=site.env("dan", PTT_SERVER=addr))
        read_until(dan, "floor granted", timeout=20)
        bob = site.spawn("bob", "talk", "g", "--wav", str(short))
        read_until(bob, "queued #1", timeout=10)
        proxy.send_signal(signal.SIGUSR1)  # dan hears nothing back; the server hears him
        cut = time.monotonic()
        lines = read_until(dan, "floor granted", timeout=15)
        again = time.monotonic() - cut
        code, out, err = finish(dan, timeout=20)
        no_traceback(err)
        assert any("sending the page again from the start" in x for x in lines), lines
        assert code == 0, (lines, out, err)
        assert "busy" not in out + err and "queued" not in "".join(lines) + out, (lines, out)
        code_b, out_b, err_b = finish(bob, timeout=20)
        assert code_b == 0 and "floor granted" in out_b, (out_b, err_b)
        wait_in_file(listener, heard, "bob is talking", timeout=10)
    finally:
        interrupt(dan, bob)
        if listener is not None:
            stop_logged(listener, signal.SIGINT)
        if proxy is not None:
            stop_proxy(proxy)
        site.stop()
    log = site.server.output()
    grants = re.findall(r"event=floor_granted group=g user=(\w+) burst=(\d+)", log)
    # dan's burst granted twice (the same id), then bob's: nobody in between
    assert [u for u, _ in grants] == ["dan", "dan", "bob"], grants
    assert grants[0][1] == grants[1][1], grants
    talkers = re.findall(r"(\w+) is talking", heard.read_text())
    assert talkers and talkers[-1] == "bob" and "bob" not in talkers[:-1], talkers
    print(f"dan granted his burst again {again:.2f} s after the downstream blackout started")
