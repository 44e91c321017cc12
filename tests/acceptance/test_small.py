"""The small promises: an emergency is shown by every listener, an empty or silent WAV is
refused before the floor is asked, a multicast group is refused by a server without multicast,
the desktop window keeps its width and greys what cannot work offline. The real ``ptt``
console script as processes (the desktop under Xvfb).
"""

from __future__ import annotations

import signal
import wave
from pathlib import Path

import pytest

from tests.acceptance.harness import (COORDINATOR, Site, finish, no_traceback, read_until,
                                      tone_wav)


def write_wav(path: Path, samples: bytes) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples)
    return path


def test_a_single_group_listener_shows_an_emergency(site: Site, tmp_path: Path) -> None:
    site.add_user("ann")
    site.add_user("bob")
    site.group("g", "ann", "bob")
    bob = site.spawn("bob", "listen", "g", "--out", str(tmp_path / "bob.wav"))
    read_until(bob, "joined g")
    page = site.ptt("ann", "talk", "g", "--wav", str(tone_wav(tmp_path / "t.wav", 1.0)),
                    "--emergency", timeout=60)
    assert page.returncode == 0, page.stdout + page.stderr
    bob.send_signal(signal.SIGINT)
    _, out, _ = finish(bob, timeout=10)
    assert "g  ann is talking (EMERGENCY)" in out, out


@pytest.mark.parametrize("kind", ["empty", "silent"])
def test_an_empty_or_silent_wav_is_refused_before_the_floor(site: Site, tmp_path: Path,
                                                            kind: str) -> None:
    site.add_user("ann")
    site.add_user("bob")
    site.group("g", "ann", "bob")
    wav = write_wav(tmp_path / f"{kind}.wav", b"" if kind == "empty" else b"\0\0" * 32000)
    bob = site.spawn("bob", "listen", "g", "--out", str(tmp_path / "bob.wav"))
    read_until(bob, "joined g")
    for args in (("talk", "g"), ("call", "bob")):
        run = site.ptt("ann", *args, "--wav", str(wav))
        assert run.returncode == 1, run.stdout + run.stderr
        assert f"no audio in {wav}" in run.stderr
        no_traceback(run.stderr)
    bob.send_signal(signal.SIGINT)
    _, out, _ = finish(bob, timeout=10)
    assert "talking" not in out and "calling" not in out, out  # the floor was never asked


def test_a_multicast_group_is_refused_when_the_servers_multicast_is_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an interface that does not exist: this server has no multicast, whatever the host's routes
    monkeypatch.setenv("PTT_SERVER_MULTICAST_INTERFACE", "ptt-none0")
    site = Site(tmp_path).start()
    try:
        assert "multicast off" in site.server.output()
        made = site.ptt(COORDINATOR, "group", "create", "lan", "--mode", "multicast")
        assert made.returncode == 1
        assert made.stderr.startswith("error: 'lan' cannot be a multicast group: multicast is "
                                      "off on this server")
        assert "--mode auto" in made.stderr and "\n" == made.stderr[-1:]
        assert made.stderr.count("\n") == 1
        assert site.ptt(COORDINATOR, "group", "show", "lan").returncode == 1  # not created
        site.ptt(COORDINATOR, "group", "create", "lan", "--mode", "auto", check=True)
        changed = site.ptt(COORDINATOR, "group", "update", "lan", "--mode", "multicast")
        assert changed.returncode == 1 and "cannot be a multicast group" in changed.stderr
    finally:
        site.stop()

