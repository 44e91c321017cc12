"""One-to-one calls reach the callee in whatever ptt client it runs, and work whichever side
starts: the real ``ptt`` console script as processes, the audio checked in the WAV written.

``ptt call USER --wav FILE`` opens the call and says the file; the callee hears it in ``ptt
listen`` (one group), in the dispatcher's monitor (several groups) and in the interactive
``ptt talk`` (tmux, a private PulseAudio), where the talk key answers the caller.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ptt.audio.pulse import PulseServer
from ptt.audio.samples import make_speech_wav
from tests.acceptance.harness import (
    COORDINATOR,
    Site,
    Tmux,
    finish,
    no_traceback,
    read_until,
    x_geometry,
    x_window,
)
from tests.e2e.audiocheck import aligned_correlation

HELLO = "Hello bob, this is ann. Please come to the north gate."
REPLY = "Ann, this is bob. I am on my way to the north gate now."


def pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes())


def voiced(original: bytes, heard: bytes) -> float:
    """Aligned correlation of ``original`` with the part of ``heard`` that holds it."""
    assert np.abs(np.frombuffer(heard, "<i2")).max(initial=0) > 1000, "nothing audible heard"
    return aligned_correlation(original, heard)


@pytest.fixture
def speech(tmp_path: Path) -> Path:
    return make_speech_wav(tmp_path / "hello.wav", HELLO)


@contextlib.contextmanager
def speaker(pulse: PulseServer, path: Path) -> Iterator[None]:
    """Record what is played to the private PulseAudio's sink (16 kHz mono raw) into ``path``."""
    with open(path, "wb") as raw:
        rec = subprocess.Popen(["parec", "--raw", "--format=s16le", "--rate=16000",
                                "--channels=1", "-d", pulse.monitor], stdout=raw,
                               env=pulse.child_env())
        try:
            yield
        finally:
            rec.terminate()
            rec.wait(5)


def stop(proc) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    proc.send_signal(signal.SIGINT)
    return finish(proc, timeout=10)


def test_a_listener_of_another_group_hears_the_call(site: Site, tmp_path: Path,
                                                    speech: Path) -> None:
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    out = tmp_path / "bob.wav"
    bob = site.spawn("bob", "listen", "g", "--out", str(out))
    read_until(bob, "joined g")
    called = site.ptt("ann", "call", "bob", "--wav", str(speech), timeout=60)
    assert called.returncode == 0, called.stdout + called.stderr
    rc, text, err = stop(bob)
    assert rc == 130, err
    no_traceback(err)
    assert "ann is calling you" in text
    assert "call with ann  ann is talking" in text
    assert "heard 1 burst(s)" in text, text
    # the burst's reception line names the call it played, not the idle group
    assert re.search(r"call with ann  received [0-9.]+% \(\d+ of \d+ frames lost", text), text
    assert "nothing received" not in text, text
    assert voiced(pcm(speech), pcm(out)) >= 0.9


def test_the_dispatchers_monitor_hears_a_call(site: Site, tmp_path: Path,
                                              speech: Path) -> None:
    site.add_user("ann")
    site.add_user("dora", role="dispatcher")
    site.group("g1", "ann", "dora")
    site.group("g2", "dora")
    out = tmp_path / "dora.wav"
    dora = site.spawn("dora", "listen", "g1", "g2", "--out", str(out))
    read_until(dora, "joined g2")
    called = site.ptt("ann", "call", "dora", "--wav", str(speech), timeout=60)
    assert called.returncode == 0, called.stdout + called.stderr
    rc, text, err = stop(dora)
    assert rc == 130, err
    assert "[call] ann talking" in text, text
    assert voiced(pcm(speech), pcm(out)) >= 0.9


def test_a_call_to_someone_offline_rings_when_they_log_in(site: Site, tmp_path: Path,
                                                         speech: Path) -> None:
    """Whichever side starts: bob calls while ann runs nothing; ann's listener, started
    later, is rung and hears the call."""
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    bob = site.spawn("bob", "call", "ann", "--wav", str(speech), "--wait", "30")
    read_until(bob, "ann is not online")
    out = tmp_path / "ann.wav"
    ann = site.spawn("ann", "listen", "g", "--out", str(out))
    rc, said, err = finish(bob, timeout=40)
    assert rc == 0, said + err
    rc, text, err = stop(ann)
    assert "bob is calling you" in text, text
    assert voiced(pcm(speech), pcm(out)) >= 0.9


def test_a_call_with_nobody_answering_gives_up_and_sends_nothing(site: Site,
                                                                 speech: Path) -> None:
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    called = site.ptt("ann", "call", "bob", "--wav", str(speech), "--wait", "1")
    assert called.returncode == 1
    assert "bob did not come online within 1 s: nothing sent" in called.stderr
    no_traceback(called.stderr)


@pytest.mark.slow
def test_the_interactive_talk_plays_a_call_and_the_talk_key_answers_it(
        site: Site, tmp_path: Path, speech: Path, pulse_server: PulseServer) -> None:
    if shutil.which("tmux") is None or shutil.which("parec") is None:
        pytest.skip("tmux and parec are needed to drive and hear a terminal")
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    term = Tmux(site, "bob", "talk", "g", env={**pulse_server.child_env(), **site.env("bob")})
    heard = tmp_path / "bob-speaker.raw"
    try:
        term.wait_for("you: idle", 20)
        # what bob's terminal plays goes to the null sink: record its monitor
        with speaker(pulse_server, heard):
            called = site.ptt("ann", "call", "bob", "--wav", str(speech), timeout=60)
            time.sleep(0.5)
        assert called.returncode == 0, called.stdout + called.stderr
        screen = term.wait_for("call from ann: Space answers")
        assert "ann is calling you" in screen
        assert voiced(pcm(speech), heard.read_bytes()) >= 0.9

        # ann listens to her group now; bob keys: the answer rings her and she hears him
        out = tmp_path / "ann.wav"
        ann = site.spawn("ann", "listen", "g", "--out", str(out))
        read_until(ann, "joined g")
        reply = make_speech_wav(tmp_path / "reply.wav", REPLY)
        term.keys("Space")
        term.wait_for("TALKING")
        assert "call with ann" in term.screen()
        subprocess.run(["paplay", "-d", pulse_server.sink, str(reply)], check=True,
                       env=pulse_server.child_env(), timeout=30)
        time.sleep(0.5)
        term.keys("Space")
        term.wait_for("you: idle")
        rc, text, err = stop(ann)
        assert "bob is calling you" in text, text
        assert "call with bob  bob is talking" in text, text
        assert voiced(pcm(reply), pcm(out)) >= 0.9
        term.keys("q")
        assert term.exit_code() == 0
    finally:
        term.close()


@pytest.mark.slow
def test_the_desktop_plays_a_call_and_its_button_answers_it(
        site: Site, tmp_path: Path, speech: Path, pulse_server: PulseServer,
        display: str) -> None:
    for tool in ("parec", "xdotool", "paplay"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is needed to hear and drive the window")
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    env = {**pulse_server.child_env(), **site.env("bob")}
    bob = site.spawn("bob", "desktop", "--group", "g", env=env)
    heard = tmp_path / "bob-speaker.raw"
    try:
        wid = x_window("ptt: bob")
        wait_online(site, "g", "bob")
        with speaker(pulse_server, heard):
            called = site.ptt("ann", "call", "bob", "--wav", str(speech), timeout=60)
            time.sleep(0.5)
        assert called.returncode == 0, called.stdout + called.stderr
        assert voiced(pcm(speech), heard.read_bytes()) >= 0.9

        # bob holds the big button: it answers ann, who listens to her group by now
        out = tmp_path / "ann.wav"
        ann = site.spawn("ann", "listen", "g", "--out", str(out))
        read_until(ann, "joined g")
        reply = make_speech_wav(tmp_path / "reply.wav", REPLY)
        x, y, w, h = x_geometry(wid)
        subprocess.run(["xdotool", "mousemove", "--sync", str(x + w // 2), str(y + h * 7 // 10)],
                       check=True, timeout=5)
        subprocess.run(["xdotool", "mousedown", "1"], check=True, timeout=5)
        try:
            seen = read_until(ann, "call with bob  bob is talking", timeout=10)
            subprocess.run(["paplay", "-d", pulse_server.sink, str(reply)], check=True,
                           env=pulse_server.child_env(), timeout=30)
            time.sleep(0.5)
        finally:
            subprocess.run(["xdotool", "mouseup", "1"], check=True, timeout=5)
        time.sleep(1.0)
        rc, text, err = stop(ann)
        assert any("bob is calling you" in line for line in seen), seen
        assert voiced(pcm(reply), pcm(out)) >= 0.9
    finally:
        bob.send_signal(signal.SIGTERM)
        finish(bob, timeout=10)


def wait_online(site: Site, group: str, user: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = json.loads(site.ptt(COORDINATOR, "group", "show", group, "--json",
                                    check=True).stdout)
        if any(mb["user"] == user and mb["online"] for mb in shown["members"]):
            return
        time.sleep(0.2)
    raise AssertionError(f"{user} never came online in {group}")
