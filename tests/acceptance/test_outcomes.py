"""Honest outcomes of ``ptt talk --wav``: exit 0 only when the whole page went out under one
grant and its end was acknowledged; otherwise how much went out and why, with the exit code the
README lists (1 refused or cut, 4 network, 130/143 interrupted). A lost floor names its cause."""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.acceptance.harness import (
    PTT,
    Site,
    clean_env,
    finish,
    no_traceback,
    read_until,
    signal_and_time,
    tone_wav,
    voiced_seconds,
)
from tests.e2e.serverproc import free_udp_port

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_key_mid_page_releases_the_floor_and_says_how_much_went_out(
        site: Site, tmp_path: Path, sig: int) -> None:
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    ann = site.spawn("ann", "talk", "g", "--wav", str(tone_wav(tmp_path / "long.wav", 8.0)))
    read_until(ann, "floor granted")
    time.sleep(1.5)
    rc, took, out, err = signal_and_time(ann, sig, bound=5.0)
    no_traceback(err)
    assert rc == EXIT[sig], f"exit {rc}\n{out}\n{err}"
    assert "done:" not in out, out
    said = re.search(r"interrupted: sent (\d+\.\d) s of 8\.0 s of long\.wav; floor released", err)
    assert said is not None, err
    assert 0.5 <= float(said.group(1)) < 8.0, err
    # the floor is free at once: bob is granted without queueing
    bob = site.ptt("bob", "talk", "g", "--wav", str(tone_wav(tmp_path / "short.wav", 0.3)))
    assert bob.returncode == 0, bob.stdout + bob.stderr
    assert "queued" not in bob.stdout and "floor granted" in bob.stdout


def test_a_server_killed_and_restarted_mid_page_gets_the_page_again_from_the_start(
        site: Site, tmp_path: Path) -> None:
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    out = tmp_path / "bob.wav"
    bob = site.spawn("bob", "listen", "g", "--out", str(out))
    read_until(bob, "joined g")
    ann = site.spawn("ann", "talk", "g", "--wav", str(tone_wav(tmp_path / "page.wav", 4.0)))
    try:
        read_until(ann, "floor granted")
        time.sleep(1.5)
        site.server.kill()
        time.sleep(0.5)
        site.server.start()
        lines = read_until(ann, "sending the page again from the start", timeout=20)
        assert lines[-1] == "server restarted: sending the page again from the start", lines
        rc, text, err = finish(ann, timeout=40)
    finally:
        if ann.poll() is None:
            ann.kill()
    no_traceback(err)
    assert rc == 0, text + err
    assert text.count("floor granted: sending 4.0 s of page.wav") == 1, text  # the second one
    assert "done: sent 4.0 s" in text and "heard by 1 of 1 online member (bob " in text, text
    time.sleep(0.5)
    bob.send_signal(signal.SIGINT)
    finish(bob)
    # bob heard the part before the kill and then the whole page again
    # (at least 1 s of it before the kill)
    assert voiced_seconds(out) >= 1.0 + 4.0 - 0.2, voiced_seconds(out)


@pytest.mark.slow
def test_a_server_that_does_not_come_back_is_exit_4(site: Site, tmp_path: Path) -> None:
    site.add_user("ann")
    site.group("g", "ann")
    ann = site.spawn("ann", "talk", "g", "--wav", str(tone_wav(tmp_path / "page.wav", 3.0)))
    read_until(ann, "floor granted")
    time.sleep(1.0)
    site.server.kill()
    rc, text, err = finish(ann, timeout=40)
    no_traceback(err)
    assert rc == 4, text + err
    assert "done:" not in text
    assert re.search(r"error: the server at 127\.0\.0\.1:\d+ stopped answering .* is not back "
                     r"after \d+ s: sent \d\.\d s, the end of the page was never acknowledged",
                     err), err


def test_pre_empted_by_an_emergency_is_exit_1_naming_the_cause(site: Site,
                                                                tmp_path: Path) -> None:
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    ann = site.spawn("ann", "talk", "g", "--wav", str(tone_wav(tmp_path / "long.wav", 8.0)))
    read_until(ann, "floor granted")
    time.sleep(1.0)
    bob = site.ptt("bob", "talk", "g", "--emergency", "--wav",
                   str(tone_wav(tmp_path / "fire.wav", 0.5)))
    rc, text, err = finish(ann)
    no_traceback(err)
    assert rc == 1, text + err
    assert re.search(r"error: floor lost after \d+\.\d s of 8\.0 s: pre-empted by a "
                     r"higher-priority talker", err), err
    assert bob.returncode == 0, bob.stdout + bob.stderr


@pytest.mark.parametrize("how,cause", [
    (("group", "remove", "g", "ann"), "you were removed from the group"),
    (("group", "delete", "g"), "the group was deleted"),
])
def test_removal_while_talking_names_it(site: Site, tmp_path: Path, how: tuple[str, ...],
                                        cause: str) -> None:
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    ann = site.spawn("ann", "talk", "g", "--wav", str(tone_wav(tmp_path / "long.wav", 8.0)))
    read_until(ann, "floor granted")
    time.sleep(1.0)
    site.ptt("coordinator", *how, check=True)
    rc, text, err = finish(ann)
    no_traceback(err)
    assert rc == 1, text + err
    assert re.search(rf"error: floor lost after \d+\.\d s of 8\.0 s: {cause}", err), err


def test_cut_by_the_maximum_talk_time_is_exit_1_naming_it(site: Site, tmp_path: Path) -> None:
    site.add_user("ann")
    site.group("g", "ann", extra=("--max-talk", "2"))
    page = site.ptt("ann", "talk", "g", "--wav", str(tone_wav(tmp_path / "long.wav", 5.0)))
    no_traceback(page.stderr)
    assert page.returncode == 1, page.stdout + page.stderr
    said = re.search(r"error: floor lost after (\d+\.\d) s of 5\.0 s: maximum talk time reached",
                     page.stderr)
    assert said is not None and 1.5 <= float(said.group(1)) <= 3.0, page.stderr
    assert "done:" not in page.stdout


def test_a_call_page_interrupted_is_exit_130_with_the_amount_sent(site: Site,
                                                                 tmp_path: Path) -> None:
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    bob = site.spawn("bob", "listen", "g", "--out", str(tmp_path / "bob.wav"))
    read_until(bob, "joined g")
    try:
        ann = site.spawn("ann", "call", "bob", "--wav", str(tone_wav(tmp_path / "hi.wav", 8.0)))
        read_until(ann, "floor granted")
        time.sleep(1.0)
        rc, _, out, err = signal_and_time(ann, signal.SIGINT, bound=5.0)
    finally:
        bob.terminate()
        finish(bob)
    no_traceback(err)
    assert rc == 130, out + err
    assert re.search(r"interrupted: sent \d+\.\d s of 8\.0 s of hi\.wav; floor released", err), err


def test_no_server_of_the_list_answering_is_exit_4_naming_them_all(tmp_path: Path) -> None:
    # two servers configured (PTT_SERVER first, PTT_SERVERS more), nothing listening on either:
    # each gets its try, then one line names them all
    first, second = free_udp_port(), free_udp_port()
    listed = f"127.0.0.1:{first}, 127.0.0.1:{second}"
    env = clean_env(tmp_path, PTT_SERVER=f"127.0.0.1:{first}",
                    PTT_SERVERS=f"127.0.0.1:{first},127.0.0.1:{second}", PTT_USER="ann",
                    PTT_TOKEN=secrets.token_urlsafe(24))
    proc = subprocess.run([PTT, "listen", "g"], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=60)
    no_traceback(proc.stderr)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: no server of {listed} answered a login (each tried for 2 s): is 'ptt server' "
        "running at any of them?"], proc.stderr
