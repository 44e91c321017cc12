"""Delivery reports: every talking command says who received the page, as the real ``ptt``
processes run it (listeners send receipts at the end of each burst; the server reports to the
talker within about a second)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from tests.acceptance.harness import Site, finish, no_traceback, read_until, tone_wav


def _listen(site: Site, user: str, group: str, out: Path):  # type: ignore[no-untyped-def]
    proc = site.spawn(user, "listen", group, "--out", str(out))
    read_until(proc, f"joined {group}")
    return proc


def test_a_page_reports_who_heard_it_and_who_was_offline(site: Site, tmp_path: Path) -> None:
    site.add_users("ann", "bob", "cat", "dan")
    site.group("volunteers", "ann", "bob", "cat", "dan")
    wav = tone_wav(tmp_path / "page.wav", 2.0)
    listeners = [_listen(site, u, "volunteers", tmp_path / f"{u}.wav") for u in ("bob", "cat")]
    try:
        page = site.ptt("ann", "talk", "volunteers", "--wav", str(wav), timeout=30)
    finally:
        for p in listeners:
            p.terminate()
            finish(p)
    no_traceback(page.stderr)
    assert page.returncode == 0, page.stdout + page.stderr
    line = next(x for x in page.stdout.splitlines() if x.startswith("heard by"))
    assert re.fullmatch(r"heard by 2 of 2 online members \(bob (\d+)%, cat (\d+)%\); "
                        r"offline: dan", line), line
    for pct in re.findall(r"(\d+)%", line):
        assert int(pct) >= 95, line  # loopback: every frame arrives


def test_an_online_member_that_does_not_listen_is_not_confirmed(site: Site,
                                                                 tmp_path: Path) -> None:
    # dan is online in the group (queued for the floor with his own page) but plays nothing:
    # his client sends no receipt for ann's page, so the report cannot count him as a listener
    site.add_users("ann", "bob", "dan")
    site.group("g", "ann", "bob", "dan")
    bob = _listen(site, "bob", "g", tmp_path / "bob.wav")
    try:
        ann = site.spawn("ann", "talk", "g", "--wav", str(tone_wav(tmp_path / "a.wav", 6.0)))
        read_until(ann, "floor granted")
        dan = site.spawn("dan", "talk", "g", "--wav", str(tone_wav(tmp_path / "d.wav", 0.5)))
        read_until(dan, "queued #1")
        rc, out, err = finish(ann)
        dan_rc, dan_out, dan_err = finish(dan)
    finally:
        bob.terminate()
        finish(bob)
    assert rc == 0, out + err
    line = next(x for x in out.splitlines() if x.startswith("heard by"))
    assert line.startswith("heard by 1 of 2 online members (bob "), line
    assert line.endswith("; not confirmed: dan"), line
    assert dan_rc == 0, dan_out + dan_err


def test_the_report_is_recorded_in_events_jsonl(tmp_path: Path) -> None:
    site = Site(tmp_path, server_args=["--record", str(tmp_path / "rec")]).start()
    try:
        site.add_users("ann", "bob")
        site.group("lobby", "ann", "bob", plain=True)
        bob = _listen(site, "bob", "lobby", tmp_path / "bob.wav")
        try:
            page = site.ptt("ann", "talk", "lobby", "--wav",
                            str(tone_wav(tmp_path / "p.wav", 1.0)), timeout=30)
        finally:
            bob.terminate()
            finish(bob)
        assert page.returncode == 0, page.stdout + page.stderr
    finally:
        site.stop()
    events = [json.loads(x) for x in (tmp_path / "rec" / "lobby" / "events.jsonl")
              .read_text().splitlines()]
    delivered = [e for e in events if e.get("kind") == "delivery"]
    assert len(delivered) == 1, events
    d = delivered[0]
    assert d["talker"] == "ann" and [r["user"] for r in d["heard"]] == ["bob"]
    assert d["heard"][0]["received"] >= d["frames"] - 2 and d["offline"] == []


def test_the_caller_learns_that_the_callee_heard_the_call(site: Site, tmp_path: Path) -> None:
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    bob = _listen(site, "bob", "g", tmp_path / "bob.wav")
    try:
        call = site.ptt("ann", "call", "bob", "--wav", str(tone_wav(tmp_path / "hi.wav", 1.5)),
                        timeout=30)
    finally:
        bob.terminate()
        finish(bob)
    no_traceback(call.stderr)
    assert call.returncode == 0, call.stdout + call.stderr
    said = re.search(r"^bob heard it \((\d+)%\)$", call.stdout, re.M)
    assert said is not None and int(said.group(1)) >= 95, call.stdout


def test_a_listener_behind_a_lossy_link_is_reported_with_what_it_received(
        site: Site, tmp_path: Path) -> None:
    # bob's link drops 40% of the voice and 20% of the control datagrams both ways (his
    # receipt included, which is retransmitted); cat's is clean
    from tests.acceptance.harness import start_proxy, stop_proxy

    site.add_users("ann", "bob", "cat")
    site.group("g", "ann", "bob", "cat")
    proxy, addr = start_proxy(site.address, "--loss=down.voice=0.4", "--loss=control=0.2",
                              "--seed", "7")
    try:
        bob = site.spawn("bob", "listen", "g", "--out", str(tmp_path / "bob.wav"),
                         env=site.env("bob", PTT_SERVER=addr))
        read_until(bob, "joined g", timeout=30)
        cat = _listen(site, "cat", "g", tmp_path / "cat.wav")
        try:
            page = site.ptt("ann", "talk", "g", "--wav", str(tone_wav(tmp_path / "p.wav", 3.0)),
                            timeout=40)
        finally:
            for p in (bob, cat):
                p.terminate()
                finish(p)
    finally:
        stop_proxy(proxy)
    assert page.returncode == 0, page.stdout + page.stderr
    line = next(x for x in page.stdout.splitlines() if x.startswith("heard by"))
    got = re.fullmatch(r"heard by 2 of 2 online members \(bob (\d+)%, cat (\d+)%\)", line)
    assert got is not None, line
    bob_pct, cat_pct = int(got.group(1)), int(got.group(2))
    # redundant copies in later datagrams restore most of what was lost, not all of it
    assert 60 <= bob_pct < 100 and cat_pct >= 95, line


def test_every_kind_of_listener_confirms_what_it_received(site: Site, tmp_path: Path) -> None:
    # a single-group listener, a dispatcher's monitor of two groups and a recorder client
    site.add_users("ann", "bob")
    site.add_user("dora", role="dispatcher")
    site.add_user("rec")
    site.group("g", "ann", "bob", "dora", "rec")
    site.group("h", "dora")
    procs = [_listen(site, "bob", "g", tmp_path / "bob.wav")]
    mon = site.spawn("dora", "listen", "g", "h", "--out", str(tmp_path / "dora.wav"))
    read_until(mon, "joined h")
    rec = site.spawn("rec", "record", "g", "--out", str(tmp_path / "rec"))
    read_until(rec, "recording g", stream="stderr")
    procs += [mon, rec]
    try:
        page = site.ptt("ann", "talk", "g", "--wav", str(tone_wav(tmp_path / "p.wav", 2.0)),
                        timeout=30)
    finally:
        for p in procs:
            p.terminate()
            finish(p)
    assert page.returncode == 0, page.stdout + page.stderr
    line = next(x for x in page.stdout.splitlines() if x.startswith("heard by"))
    assert re.fullmatch(r"heard by 3 of 3 online members \(bob (9\d|100)%, dora (9\d|100)%, "
                        r"rec (9\d|100)%\)", line), line


def test_the_interactive_terminal_prints_the_report_after_each_burst(
        site: Site, tmp_path: Path, pulse_server) -> None:  # type: ignore[no-untyped-def]
    import shutil

    import pytest

    from tests.acceptance.harness import Tmux

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed, so no terminal can be driven")
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    bob = _listen(site, "bob", "g", tmp_path / "bob.wav")
    term = Tmux(site, "ann", "talk", "g", env={**pulse_server.child_env(), **site.env("ann")})
    try:
        term.wait_for("you: idle", 20)
        term.keys("Space")
        term.wait_for("TALKING")
        time.sleep(1.5)
        term.keys("Space")
        screen = term.wait_for("heard by", 10)
        assert re.search(r"g  heard by 1 of 1 online member \(bob (9\d|100)%\)", screen), screen
    finally:
        term.close()
        bob.terminate()
        finish(bob)
