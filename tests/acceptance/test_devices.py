"""One user on several devices: each device hears the group, the user's one-shot commands do not
cut its listening, and a login beyond the limit ends the oldest device, saying why."""

from __future__ import annotations

import json
import shutil
import time
import wave
from pathlib import Path

import pytest

from ptt.audio.pulse import PulseServer
from ptt.audio.samples import make_speech_wav
from tests.acceptance.harness import COORDINATOR, Site, Tmux, finish, no_traceback, read_until
from tests.e2e.audiocheck import aligned_correlation

TEXT = "Unit seven, please report to the loading dock at gate four. Repeat, gate four."


def pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes())


def test_the_same_user_listening_on_two_devices_hears_the_page_on_both(
        site: Site, tmp_path: Path) -> None:
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    speech = make_speech_wav(tmp_path / "speech.wav", TEXT)
    outs = [tmp_path / "laptop.wav", tmp_path / "desktop.wav"]
    devices = [site.spawn("bob", "listen", "g", "--bursts", "1", "--out", str(o)) for o in outs]
    for d in devices:
        read_until(d, "g", timeout=20)
    code, out, err = finish(site.spawn("ann", "talk", "g", "--wav", str(speech)), timeout=40)
    assert code == 0, f"{out}\n{err}"
    for d, o in zip(devices, outs):
        code, dout, derr = finish(d, timeout=20)
        assert code == 0, derr
        no_traceback(derr)
        corr = aligned_correlation(pcm(speech), pcm(o))
        assert corr >= 0.9, (o.name, corr)
        assert "connection lost" not in dout


def test_a_coordinator_administers_while_it_listens_and_hears_the_whole_page(
        site: Site, tmp_path: Path) -> None:
    site.add_user("ann")
    site.group("g", "ann", COORDINATOR)
    speech = make_speech_wav(tmp_path / "speech.wav", TEXT)
    out = tmp_path / "monitor.wav"
    monitor = site.spawn(COORDINATOR, "listen", "g", "--bursts", "1", "--out", str(out))
    read_until(monitor, "g", timeout=20)
    ann = site.spawn("ann", "talk", "g", "--wav", str(speech))
    read_until(ann, "floor granted", timeout=20)
    done = 0
    deadline = time.monotonic() + 20
    while ann.poll() is None and time.monotonic() < deadline:  # admin commands during the page
        args = ("group", "list") if done % 2 == 0 else ("group", "show", "g")
        site.ptt(COORDINATOR, *args, check=True)
        done += 1
    code, aout, aerr = finish(ann, timeout=30)
    assert code == 0, f"{aout}\n{aerr}"
    assert done >= 3, "the page ended before three admin commands ran"
    code, mout, merr = finish(monitor, timeout=20)
    assert code == 0, merr
    no_traceback(merr)
    corr = aligned_correlation(pcm(speech), pcm(out))
    assert corr >= 0.9
    assert "connection lost" not in mout


def test_a_fifth_device_ends_the_oldest_which_says_why(site: Site, tmp_path: Path) -> None:
    site.add_user("bob")
    site.group("g", "bob")
    devices = []
    for i in range(5):
        d = site.spawn("bob", "listen", "g", "--out", str(tmp_path / f"d{i}.wav"))
        read_until(d, "g", timeout=20)
        devices.append(d)
        if i == 0:
            time.sleep(0.2)  # the first is the oldest beyond doubt
    oldest = devices[0]
    code, out, err = finish(oldest, timeout=10)
    assert code == 1, f"{out}\n{err}"
    assert "session ended by the server" in err and "at most 4" in err, err
    no_traceback(err)
    time.sleep(1.5)  # the other four stay
    assert all(d.poll() is None for d in devices[1:])
    shown = json.loads(site.ptt(COORDINATOR, "group", "show", "g", "--json", check=True).stdout)
    assert len(shown["members"][0]["devices"].split(", ")) == 4  # group show lists them
    listed = site.ptt(COORDINATOR, "group", "show", "g", check=True).stdout
    assert all(dev in listed for dev in shown["members"][0]["devices"].split(", "))
    for d in devices[1:]:
        d.terminate()
        finish(d, timeout=10)


def test_an_interactive_talk_ended_by_a_fifth_device_says_why_and_exits_1(
        site: Site, pulse_server: PulseServer, tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed, so no terminal can be driven")
    site.add_user("bob")
    site.group("g", "bob", plain=True)
    term = Tmux(site, "bob", "talk", "g", env={**pulse_server.child_env(), **site.env("bob")})
    others = []
    try:
        term.wait_for("g", timeout=20)
        time.sleep(0.2)  # the terminal is the oldest device beyond doubt
        for i in range(4):
            d = site.spawn("bob", "listen", "g", "--out", str(tmp_path / f"d{i}.wav"))
            read_until(d, "g", timeout=20)
            others.append(d)
        assert term.exit_code(10) == 1
        screen = term.wait_for("session ended by the server")
        assert "at most 4" in screen and "Traceback" not in screen
    finally:
        term.close()
        for d in others:
            d.terminate()
            finish(d, timeout=10)
