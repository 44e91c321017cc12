"""Stop keys: every long-running command stops within a second of SIGINT or SIGTERM, finishes
cleanly (floor released, files valid) and exits 130 or 143.

Each command runs as the real ``ptt`` console script; the signal goes to its process. The bound
asserted is 1.5 s (the promise is 1 s), a margin for a loaded 2-core CI machine.
"""

from __future__ import annotations

import signal
import wave
from pathlib import Path

import pytest

from tests.acceptance.harness import Site, no_traceback, read_until, signal_and_time

BOUND = 1.5  # seconds: the promise is 1 s
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def assert_stopped(proc_result: tuple[int, float, str, str], sig: int) -> tuple[str, str]:
    rc, took, out, err = proc_result
    assert rc == EXIT[sig], f"exit {rc} after {took:.2f} s\n{out}\n{err}"
    assert took <= BOUND, f"took {took:.2f} s to stop\n{out}\n{err}"
    no_traceback(err)
    return out, err


def valid_wav(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1
        return w.getnframes() / w.getframerate()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_listen_stops_at_once_and_leaves_a_valid_wav(site: Site, tmp_path: Path,
                                                     sig: int) -> None:
    site.add_user("bob")
    site.group("g", "bob", plain=True)
    out = tmp_path / "bob.wav"
    proc = site.spawn("bob", "listen", "g", "--out", str(out))
    read_until(proc, "joined g")
    text, _ = assert_stopped(signal_and_time(proc, sig), sig)
    assert "heard 0 burst(s)" in text
    assert valid_wav(out) >= 0.0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_monitor_stops_at_once(site: Site, tmp_path: Path, sig: int) -> None:
    site.add_user("dora", role="dispatcher")
    site.group("g1", "dora", plain=True)
    site.group("g2", "dora", plain=True)
    out = tmp_path / "monitor.wav"
    proc = site.spawn("dora", "listen", "g1", "g2", "--out", str(out))
    read_until(proc, "joined g2")
    assert_stopped(signal_and_time(proc, sig), sig)
    valid_wav(out)
