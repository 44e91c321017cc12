"""The dispatcher's monitor (``ptt listen G1 G2``) ends as single-group ``ptt listen`` does when
the server ends its session (a fifth device of the same user logged in): exit 1, saying why."""

from __future__ import annotations

import time
from pathlib import Path

from tests.acceptance.harness import Site, finish, no_traceback, read_until


def test_a_monitor_ended_by_a_fifth_device_says_why_and_exits_1(site: Site,
                                                                tmp_path: Path) -> None:
    site.add_user("bob")
    site.group("g1", "bob")
    site.group("g2", "bob")
    monitor = site.spawn("bob", "listen", "g1", "g2", "--out", str(tmp_path / "m.wav"))
    devices = []
    try:
        read_until(monitor, "joined g2", timeout=20)
        time.sleep(0.2)  # the monitor is the oldest device beyond doubt
        for i in range(4):
            d = site.spawn("bob", "listen", "g1", "--out", str(tmp_path / f"d{i}.wav"))
            devices.append(d)
            read_until(d, "joined g1", timeout=20)
        code, out, err = finish(monitor, timeout=10)
    finally:
        for d in devices:
            d.terminate()
            finish(d, timeout=10)
        if monitor.poll() is None:
            monitor.kill()
    no_traceback(err)
    assert code == 1, f"{out}\n{err}"
    # the same words as single-group listen (tests/acceptance/test_devices.py)
    assert "error: session ended by the server" in err and "at most 4" in err, err
