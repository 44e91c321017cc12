"""``ptt replay`` into a group says, after each burst, who heard it (the delivery report, the
line ``ptt talk --wav`` prints), and its exit code is honest as talk's: a burst whose end the
server never acknowledged is not reported as sent."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

from tests.acceptance.harness import (
    Site,
    finish,
    no_traceback,
    read_until,
    signal_and_time,
    start_proxy,
    stop_proxy,
    tone_wav,
)


def _opus(tmp_path: Path, seconds: float) -> Path:
    opus = tmp_path / "notice.opus"
    subprocess.run(["opusenc", "--quiet", str(tone_wav(tmp_path / "notice.wav", seconds)),
                    str(opus)], check=True)
    return opus


def test_replay_prints_the_delivery_report_of_each_burst(site: Site, tmp_path: Path) -> None:
    site.add_users("ann", "bob", "dan")
    site.group("g", "ann", "bob", "dan")
    opus = _opus(tmp_path, 1.0)
    bob = site.spawn("bob", "listen", "g", "--out", str(tmp_path / "bob.wav"))
    try:
        read_until(bob, "joined g")
        replayed = site.ptt("ann", "replay", str(opus), "--group", "g", timeout=30)
    finally:
        bob.terminate()
        finish(bob)
    no_traceback(replayed.stderr)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    lines = replayed.stdout.splitlines()
    sent = next(i for i, x in enumerate(lines) if re.search(r": sent [0-9.]+ s", x))
    # the report follows its burst, in the words ptt talk uses
    assert re.fullmatch(r"heard by 1 of 1 online member \(bob (\d+)%\); offline: dan",
                        lines[sent + 1]), lines
    assert int(re.findall(r"(\d+)%", lines[sent + 1])[0]) >= 95, lines  # loopback
    assert "done: 1 of 1 bursts sent" in lines[-1], lines


def test_a_burst_whose_end_is_never_acknowledged_is_not_reported_sent(
        site: Site, tmp_path: Path) -> None:
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    opus = _opus(tmp_path, 4.0)
    # everything between ann and the server vanishes from 2.5 s into the 4 s burst on: its end
    # and the release never reach the server
    proxy, addr = start_proxy(site.address, "--blackout", "30")
    try:
        replay = site.spawn("ann", "replay", str(opus), "--group", "g",
                            env=site.env("ann", PTT_SERVER=addr))
        read_until(replay, "replaying 1 bursts", timeout=20)
        time.sleep(2.5)
        proxy.send_signal(signal.SIGUSR1)
        rc, out, err = finish(replay, timeout=40)
    finally:
        stop_proxy(proxy)
    no_traceback(err)
    assert rc == 4, out + err  # the network's fault, as ptt talk's exit code says it
    assert "done: 0 of 1 bursts sent" in out, out
    assert "unacknowledged" in err, err
    assert "heard by" not in out, out


def test_a_stop_key_mid_burst_does_not_wait_for_the_report(site: Site, tmp_path: Path) -> None:
    # dan is online (queued with a page of his own) but plays nothing: a report would wait the
    # server's whole receipt window for him; a stopped replay must not
    site.add_users("ann", "bob", "dan")
    site.group("g", "ann", "bob", "dan")
    opus = _opus(tmp_path, 8.0)
    bob = site.spawn("bob", "listen", "g", "--out", str(tmp_path / "bob.wav"))
    dan = None
    try:
        read_until(bob, "joined g")
        replay = site.spawn("ann", "replay", str(opus), "--group", "g")
        read_until(replay, "replaying 1 bursts", timeout=20)
        dan = site.spawn("dan", "talk", "g", "--wav", str(tone_wav(tmp_path / "d.wav", 0.5)))
        read_until(dan, "queued #1", timeout=20)
        rc, took, out, err = signal_and_time(replay, signal.SIGINT, bound=10.0)
    finally:
        for p in (bob, dan):
            if p is not None:
                p.terminate()
                finish(p)
    no_traceback(err)
    assert rc == 130, out + err
    assert took <= 1.5, f"took {took:.2f} s to stop\n{out}\n{err}"  # the promise is 1 s
    assert "heard by" not in out, out
