"""Who sees what: a volunteer sees only its own groups, a coordinator sees all; a member
removed from a group, or whose group is deleted, is told at once; a call tells a volunteer no
more of the directory than its own groups do. The real ``ptt`` console script as processes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.acceptance.harness import COORDINATOR, Site, finish, no_traceback, read_until


def test_a_volunteer_lists_and_shows_only_its_own_groups(site: Site) -> None:
    site.add_users("ann", "bob")
    site.group("mine", "ann", "bob")
    site.group("theirs", "bob")
    listed = site.ptt("ann", "group", "list", "--json", check=True)
    assert [g["name"] for g in json.loads(listed.stdout)["groups"]] == ["mine"]
    shown = site.ptt("ann", "group", "show", "mine", check=True)
    assert "bob" in shown.stdout
    other = site.ptt("ann", "group", "show", "theirs")
    missing = site.ptt("ann", "group", "show", "nowhere")
    assert other.returncode == missing.returncode == 1
    # a group one is not in looks exactly like one that does not exist
    assert other.stderr.replace("theirs", "X") == missing.stderr.replace("nowhere", "X")
    assert "unknown group 'theirs'" in other.stderr
    everything = site.ptt(COORDINATOR, "group", "list", "--json", check=True)
    assert {g["name"] for g in json.loads(everything.stdout)["groups"]} == {"mine", "theirs"}
    assert site.ptt(COORDINATOR, "group", "show", "theirs").returncode == 0


def test_a_volunteer_calls_only_members_of_its_groups(site: Site, tmp_path: Path) -> None:
    from ptt.audio.samples import make_speech_wav

    site.add_users("ann", "bob", "eve")
    site.group("g", "ann", "bob")
    site.group("h", "eve")
    wav = make_speech_wav(tmp_path / "hi.wav", "hello")
    stranger = site.ptt("ann", "call", "eve", "--wav", str(wav), "--wait", "1")
    nobody = site.ptt("ann", "call", "zed", "--wav", str(wav), "--wait", "1")
    assert stranger.returncode == nobody.returncode == 1
    assert "you can call only members of your groups ('eve' is not)" in stranger.stderr
    assert stranger.stderr.replace("eve", "X") == nobody.stderr.replace("zed", "X")
    no_traceback(stranger.stderr)


def test_a_removed_listener_is_told_at_once_and_exits_1(site: Site, tmp_path: Path) -> None:
    site.add_user("ann")
    site.group("g", "ann")
    ann = site.spawn("ann", "listen", "g", "--out", str(tmp_path / "ann.wav"))
    read_until(ann, "joined g")
    t0 = time.monotonic()
    site.ptt(COORDINATOR, "group", "remove", "g", "ann", check=True)
    rc, out, err = finish(ann, timeout=10)
    took = time.monotonic() - t0
    assert rc == 1, out + err
    assert "g  a coordinator removed you from this group" in out
    assert "no group left to listen to" in err
    assert took < 5.0, took
    no_traceback(err)


def test_the_monitor_goes_on_with_its_other_groups_when_one_is_deleted(
        site: Site, tmp_path: Path) -> None:
    site.add_user("dora", role="dispatcher")
    site.group("g1", "dora")
    site.group("g2", "dora")
    dora = site.spawn("dora", "listen", "g1", "g2", "--out", str(tmp_path / "dora.wav"))
    read_until(dora, "joined g2")
    site.ptt(COORDINATOR, "group", "delete", "g1", check=True)
    read_until(dora, "g1  a coordinator deleted this group", timeout=5)
    read_until(dora, "still listening to g2", timeout=5)
    assert dora.poll() is None
    site.ptt(COORDINATOR, "group", "remove", "g2", "dora", check=True)
    rc, out, err = finish(dora, timeout=10)
    assert rc == 1, out + err
    assert "g2  a coordinator removed you from this group" in out
    no_traceback(err)
