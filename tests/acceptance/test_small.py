"""The small promises: an emergency is shown by every listener, a listener joining just after
a burst prints nothing of it, an empty or silent WAV is
refused before the floor is asked, a multicast group is refused by a server without multicast,
the desktop window keeps its width and greys what cannot work offline. The real ``ptt``
console script as processes (the desktop under Xvfb).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from ptt.audio.pulse import PulseServer
from tests.acceptance.harness import (
    COORDINATOR,
    Site,
    finish,
    no_traceback,
    read_until,
    tone_wav,
    x_geometry,
    x_window,
)
from tests.desktop.conftest import ARTIFACTS


def write_wav(path: Path, samples: bytes) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples)
    return path


def test_a_single_group_listener_shows_an_emergency(site: Site, tmp_path: Path) -> None:
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    bob = site.spawn("bob", "listen", "g", "--out", str(tmp_path / "bob.wav"))
    read_until(bob, "joined g")
    page = site.ptt("ann", "talk", "g", "--wav", str(tone_wav(tmp_path / "t.wav", 1.0)),
                    "--emergency", timeout=60)
    assert page.returncode == 0, page.stdout + page.stderr
    bob.send_signal(signal.SIGINT)
    _, out, _ = finish(bob, timeout=10)
    assert "g  ann is talking (EMERGENCY)" in out, out


def test_a_listener_joining_just_after_a_burst_prints_nothing_of_it(site: Site,
                                                                    tmp_path: Path) -> None:
    """The server repeats a floor's idle news for 1.7 s; a listener that joins within them saw
    neither the burst nor its talker, so a "floor idle" would be about nothing it was shown."""
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob", plain=True)
    page = site.ptt("ann", "talk", "g", "--wav", str(tone_wav(tmp_path / "t.wav", 0.2)))
    assert page.returncode == 0, page.stdout + page.stderr
    released = time.monotonic()
    bob = site.spawn("bob", "listen", "g", "--out", str(tmp_path / "bob.wav"))
    read_until(bob, "joined g")
    joined = time.monotonic() - released
    time.sleep(max(0.0, 1.9 - joined))  # past the idle news' last repeat
    bob.send_signal(signal.SIGINT)
    rc, out, err = finish(bob, timeout=10)
    assert rc == 130, err
    assert "floor idle" not in out, f"joined {joined:.2f} s after the release:\n{out}"


@pytest.mark.parametrize("kind", ["empty", "silent"])
def test_an_empty_or_silent_wav_is_refused_before_the_floor(site: Site, tmp_path: Path,
                                                            kind: str) -> None:
    site.add_users("ann", "bob")
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



def _grab(wid: str, path: Path) -> np.ndarray:
    """The window's pixels (RGB) from the X server."""
    x, y, w, h = x_geometry(wid)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "x11grab",
                    "-video_size", f"{w}x{h}", "-i", f"{os.environ['DISPLAY']}+{x},{y}",
                    "-frames:v", "1", "-pix_fmt", "rgb24", "-f", "rawvideo", "-y", str(path)],
                   check=True, timeout=20)
    return np.fromfile(path, np.uint8).reshape(h, w, 3)


def _share(img: np.ndarray, hex_colour: str) -> float:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], np.uint8)
    return float(np.all(img == rgb, axis=2).mean())


def _png(img: np.ndarray, path: Path) -> None:
    h, w, _ = img.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "rawvideo",
                    "-pix_fmt", "rgb24", "-video_size", f"{w}x{h}", "-i", "-", "-y", str(path)],
                   input=img.tobytes(), check=True, timeout=20)


@pytest.mark.slow
def test_the_desktop_keeps_its_width_and_greys_presence_and_talk_button_offline(
        tmp_path: Path, display: str, pulse_server: PulseServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ptt.desktop.window import OFFLINE_BG, WIDTH_PX

    # short sessions, idle or not (no idle cadence): the window learns within about 2 s that
    # the server is gone
    monkeypatch.setenv("PTT_SERVER_HEARTBEAT_INTERVAL", "0.5")
    monkeypatch.setenv("PTT_SERVER_SESSION_TIMEOUT", "2")
    monkeypatch.setenv("PTT_SERVER_IDLE_HEARTBEAT_INTERVAL", "0.5")
    site = Site(tmp_path).start()
    try:
        site.add_users("ann", "bob")
        site.group("g", "ann", "bob")
        proc = site.spawn("ann", "desktop", "--group", "g",
                          env={**pulse_server.child_env(), **site.env("ann")})
        wid = x_window("ptt: ann")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            shown = site.ptt(COORDINATOR, "group", "show", "g", "--json", check=True).stdout
            if '"user": "ann", "online": true' in shown.replace("\n", " ").replace("  ", " "):
                break
            time.sleep(0.2)
        time.sleep(1.0)
        online = _grab(wid, tmp_path / "online.raw")
        _png(online, ARTIFACTS / "desktop-online.png")
        site.stop()  # the server goes away: the window goes offline
        time.sleep(4.0)  # past the session timeout (2 s): the client knows it is offline
        offline = _grab(wid, tmp_path / "offline.raw")
        _png(offline, ARTIFACTS / "desktop-offline.png")
        proc.send_signal(signal.SIGTERM)
        finish(proc, timeout=10)
    finally:
        site.stop()
    assert online.shape[1] == offline.shape[1] == WIDTH_PX, (online.shape, offline.shape)
    # the talk button is most of the window: live colour online, greyed offline
    assert _share(online, "#d5dbdb") > 0.15 and _share(online, OFFLINE_BG) < 0.01
    assert _share(offline, OFFLINE_BG) > 0.15 and _share(offline, "#d5dbdb") < 0.01
