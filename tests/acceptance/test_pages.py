"""Text pages as people use them: ``ptt page`` sends, ``ptt listen`` shows, the server keeps.

Every test runs the real server process and real ``ptt`` commands, each user with its own home
and config (a second device of a user: a second home with the same credentials).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from ptt.audio.pulse import PulseServer
from tests.acceptance.harness import Site, Tmux, finish, no_traceback, read_until, signal_and_time

GATE = "Gate 3 closed, send arrivals to Gate 5"
CHINESE = "三号门关闭，请把到达的人员引导到五号门 🚪"


def second_device(site: Site, user: str) -> dict[str, str]:
    """The environment of another device of ``user``: its own home, the same credentials."""
    home = site.root / "homes" / f"{user}-laptop"
    config = home / ".config" / "ptt" / "client.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(site.config(user), config)
    env = site.env(user)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local/share"), PTT_CONFIG=str(config))
    return env


def listening(site: Site, user: str, group: str, env: dict[str, str] | None = None):
    p = site.spawn(user, "listen", group, "--out", str(site.root / f"{user}-{time.monotonic()}.wav"),
                   env=env)
    read_until(p, f"joined {group}")
    return p


def stop(p) -> str:
    code, _, out, err = signal_and_time(p)
    assert code == 130, (code, out, err)
    no_traceback(err)
    return out


def test_online_members_get_a_page_at_once_and_the_sender_sees_who(site: Site) -> None:
    site.add_users("ann", "bob", "cat", "dan")
    site.group("ops", "ann", "bob", "cat", "dan")
    bob, cat = listening(site, "bob", "ops"), listening(site, "cat", "ops")
    try:
        t0 = time.monotonic()
        sent = site.ptt("ann", "page", "ops", GATE)
        assert sent.returncode == 0, sent.stderr
        assert "page 1 stored for ops: 3 recipients, 2 online" in sent.stdout
        assert ("delivered to 2 of 2 online members (bob, cat); offline: dan (gets it at login)"
                in sent.stdout), sent.stdout
        for p in (bob, cat):
            line = read_until(p, GATE, timeout=5)[-1]
            assert "page [ops] ann" in line
        assert time.monotonic() - t0 < 8  # the whole command, process start included
    finally:
        stop(bob), stop(cat)


def test_an_offline_member_gets_the_page_once_when_it_logs_in(site: Site) -> None:
    site.add_users("ann", "dan")
    site.group("ops", "ann", "dan")
    assert site.ptt("ann", "page", "ops", "first").returncode == 0
    assert site.ptt("ann", "page", "ops", "second").returncode == 0
    dan = listening(site, "dan", "ops")
    lines = read_until(dan, "second", timeout=5)
    firsts = [ln for ln in lines if ln.endswith(": first")]
    assert len(firsts) == 1 and lines.index(firsts[0]) < len(lines) - 1  # in order
    out = stop(dan)
    assert "first" not in out and "second" not in out
    # the same device again: nothing new, nothing twice
    dan = listening(site, "dan", "ops")
    time.sleep(1.5)
    out = stop(dan)
    assert "page [ops]" not in out, out


def test_receipts_count_people_and_devices_with_two_devices_each(site: Site) -> None:
    site.add_users("ann", "bob", "cat")
    site.group("ops", "ann", "bob", "cat")
    laptop = second_device(site, "bob")
    bob1 = listening(site, "bob", "ops")
    bob2 = listening(site, "bob", "ops", env=laptop)
    try:
        sent = site.ptt("ann", "page", "ops", GATE)
        assert "delivered to 1 of 1 online member (bob); offline: cat" in sent.stdout, sent.stdout
        read_until(bob1, GATE, timeout=5)
        read_until(bob2, GATE, timeout=5)
    finally:
        stop(bob1), stop(bob2)
    time.sleep(0.5)  # receipts reach the store in batches
    listed = site.ptt("ann", "pages", "ops", "--json")
    assert listed.returncode == 0, listed.stderr
    [page] = json.loads(listed.stdout)["pages"]
    assert (page["recipients"], page["delivered"], page["read"]) == (2, 1, 1)
    assert (page["devices_delivered"], page["devices_read"]) == (2, 2)
    assert page["text"] == GATE
    human = site.ptt("ann", "pages", "ops").stdout
    assert "delivered 1/2, read 1/2" in human, human


def test_chinese_text_end_to_end_in_an_encrypted_group(site: Site) -> None:
    site.add_users("张伟", "zoë")
    site.group("志愿者", "张伟", "zoë")
    zoe = listening(site, "zoë", "志愿者")
    try:
        sent = site.ptt("张伟", "page", "志愿者", CHINESE)
        assert sent.returncode == 0, sent.stderr
        line = read_until(zoe, CHINESE, timeout=5)[-1]
        assert "[志愿者] 张伟" in line
    finally:
        stop(zoe)
    # the server keeps only ciphertext of an encrypted group
    db = (site.server.db).read_bytes() + (site.server.db.with_name("ptt.db-wal").read_bytes()
                                           if site.server.db.with_name("ptt.db-wal").exists()
                                           else b"")
    assert CHINESE.encode() not in db
    assert "三号门".encode() not in db


def test_a_removed_member_cannot_read_later_pages(site: Site) -> None:
    site.add_users("ann", "bob", "eve")
    site.group("ops", "ann", "bob", "eve")
    assert site.ptt("ann", "page", "ops", "before removal").returncode == 0
    site.ptt("coordinator", "group", "remove", "ops", "eve", check=True)
    sent = site.ptt("ann", "page", "ops", "after removal")
    assert "2 recipients" not in sent.stdout and "1 recipient," in sent.stdout, sent.stdout
    # eve cannot join the group to be given it, nor list it
    eve = site.ptt("eve", "listen", "ops", "--duration", "1")
    assert eve.returncode == 1 and "not a member" in eve.stderr
    assert site.ptt("eve", "pages", "ops").returncode == 1
    bob = listening(site, "bob", "ops")
    read_until(bob, "after removal", timeout=5)
    stop(bob)


def test_a_server_killed_after_the_ack_loses_no_page(site: Site) -> None:
    site.add_users("ann", "bob")
    site.group("ops", "ann", "bob", plain=True)
    sent = site.ptt("ann", "page", "ops", "kept across a kill")
    assert "stored" in sent.stdout
    site.server.proc.send_signal(signal.SIGKILL)
    site.server.proc.wait(5)
    site.server.start()
    bob = listening(site, "bob", "ops")
    read_until(bob, "kept across a kill", timeout=5)
    stop(bob)


def has_socket(pid: int) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fds / fd).startswith("socket:") for fd in os.listdir(fds))
    except OSError:
        return False


def test_ctrl_c_of_ptt_page_exits_130(site: Site) -> None:
    site.add_users("ann")
    site.group("ops", "ann")
    site.server.proc.send_signal(signal.SIGSTOP)  # the server hears nothing: ptt page waits
    try:
        p = site.spawn("ann", "page", "ops", "never sent", "--timeout", "20")
        deadline = time.monotonic() + 15
        while not has_socket(p.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        code, took, out, err = signal_and_time(p)
    finally:
        site.server.proc.send_signal(signal.SIGCONT)
    assert code == 130, (out, err)
    assert took < 2.0
    assert "interrupted: page not sent" in err
    no_traceback(err)


@pytest.mark.parametrize("text, why", [("x" * 1001, "1001 characters, at most 1000"),
                                       ("   ", "empty page")])
def test_bad_text_is_one_line_and_exit_2(site: Site, text: str, why: str) -> None:
    site.add_users("ann")
    site.group("ops", "ann")
    p = site.ptt("ann", "page", "ops", text)
    assert p.returncode == 2 and why in p.stderr, p.stderr
    no_traceback(p.stderr)
    big = site.ptt("ann", "page", "ops", input="页" * 2000)
    assert big.returncode == 2 and "page too long" in big.stderr


def test_the_interactive_talk_shows_pages_and_counts_them_read(
        site: Site, pulse_server: PulseServer) -> None:  # noqa: F811
    if shutil.which("tmux") is None:
        pytest.skip("tmux is needed to drive a terminal")
    site.add_users("ann", "bob")
    site.group("ops", "ann", "bob")
    term = Tmux(site, "bob", "talk", "ops", env={**pulse_server.child_env(), **site.env("bob")})
    try:
        term.wait_for("you: idle", 20)
        assert site.ptt("ann", "page", "ops", "--urgent", "Evacuate hall B").returncode == 0
        screen = term.wait_for("Evacuate hall B", 10)
        assert "page URGENT [ops] ann" in screen
        term.keys("q")
        assert term.exit_code() == 0
    finally:
        term.close()
    time.sleep(0.5)
    [page] = json.loads(site.ptt("ann", "pages", "ops", "--json").stdout)["pages"]
    assert (page["urgent"], page["delivered"], page["read"]) == (True, 1, 1)


def test_the_monitor_shows_the_pages_of_all_its_groups(site: Site) -> None:
    site.add_users("ann")
    site.add_users("dora", role="dispatcher")
    site.group("north", "ann", "dora")
    site.group("south", "ann", "dora", plain=True)
    mon = site.spawn("dora", "listen", "north", "south", "--out", str(site.root / "mon.wav"))
    read_until(mon, "joined south")
    try:
        site.ptt("ann", "page", "north", "north gate shut", check=True)
        site.ptt("ann", "page", "south", "south gate open", check=True)
        read_until(mon, "[north] ann", timeout=5)
        assert "south gate open" in read_until(mon, "[south] ann", timeout=5)[-1]
    finally:
        stop(mon)


def test_the_server_records_pages_and_replay_shows_them(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    site = Site(tmp_path / "site", server_args=["--record", str(rec)]).start()
    try:
        site.add_users("ann", "bob")
        site.group("lobby", "ann", "bob", plain=True)
        site.group("ops", "ann", "bob")
        site.ptt("ann", "page", "lobby", "Gate 3 closed", check=True)
        site.ptt("ann", "page", "ops", "--urgent", "secret plan", check=True)
        time.sleep(0.3)
        lobby = [json.loads(x) for x in (rec / "lobby" / "events.jsonl").read_text().splitlines()]
        ops = [json.loads(x) for x in (rec / "ops" / "events.jsonl").read_text().splitlines()]
        [plain] = [e for e in lobby if e["kind"] == "page"]
        assert (plain["user"], plain["text"], plain["recipients"], plain["urgent"]) == (
            "ann", "Gate 3 closed", 1, False)
        [sealed] = [e for e in ops if e["kind"] == "page"]
        assert sealed["sealed"] is True and sealed["urgent"] is True and "text" not in sealed
        assert "secret plan" not in (rec / "ops" / "events.jsonl").read_text()
        shown = site.ptt("coordinator", "replay", "--events", str(rec / "lobby" / "events.jsonl"),
                         "--group", "lobby", timeout=60)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "ann page (1 recipients): Gate 3 closed" in shown.stdout, shown.stdout
        shown = site.ptt("coordinator", "replay", "--events", str(rec / "ops" / "events.jsonl"),
                         "--group", "ops", timeout=60)
        assert "ann URGENT page (1 recipients): (sealed" in shown.stdout, shown.stdout
    finally:
        site.stop()


def test_a_page_to_one_user_from_a_file_or_stdin(site: Site, tmp_path: Path) -> None:
    site.add_users("ann", "bob", "eve")
    site.group("ops", "ann", "bob")
    bob = listening(site, "bob", "ops")
    try:
        note = tmp_path / "note.txt"
        note.write_text("Call the desk\n", encoding="utf-8")
        sent = site.ptt("ann", "page", "--to", "bob", "--file", str(note))
        assert sent.returncode == 0, sent.stderr
        assert "delivered to 1 of 1 online member (bob)" in sent.stdout, sent.stdout
        assert "page [to you] ann" in read_until(bob, "Call the desk", timeout=5)[-1]
        piped = site.ptt("ann", "page", "ops", input="闸门3关闭\n")
        assert piped.returncode == 0, piped.stderr
        read_until(bob, "闸门3关闭", timeout=5)
    finally:
        stop(bob)
    # eve shares no group with ann: the same answer as for a user that does not exist
    refused = site.ptt("eve", "page", "--to", "ann", "hello")
    assert refused.returncode == 1 and "only members of your groups" in refused.stderr
    no_traceback(refused.stderr)
    assert "ann" in site.ptt("bob", "pages", "--json").stdout


def test_a_page_is_kept_only_for_the_retention_time(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text("page_retention = 2.0\n", encoding="utf-8")
    site = Site(tmp_path / "site", server_args=["--config", str(config)]).start()
    try:
        site.add_users("ann", "bob")
        site.group("ops", "ann", "bob", plain=True)
        site.ptt("ann", "page", "ops", "soon gone", check=True)
        assert "soon gone" in site.ptt("ann", "pages", "ops").stdout
        time.sleep(3.5)  # retention 2 s; expired pages are deleted every 1 s at most
        assert site.ptt("ann", "pages", "ops").stdout.strip() == "no pages in ops"
        bob = listening(site, "bob", "ops")
        time.sleep(1.0)
        assert "soon gone" not in stop(bob)
    finally:
        site.stop()


def test_a_members_recorder_records_the_text_of_encrypted_pages(site: Site, tmp_path: Path
                                                                ) -> None:
    site.add_users("ann", "bob")
    site.group("ops", "ann", "bob")
    out = tmp_path / "rec"
    rec = site.spawn("bob", "record", "ops", "--out", str(out), "--duration", "6",
                     env=site.env("bob", PTT_MULTICAST="off"))
    read_until(rec, "recording ops", stream="stderr")
    site.ptt("ann", "page", "ops", "--urgent", "秘密: hall B", check=True)
    code, _, err = finish(rec, timeout=30)
    assert code == 0, err
    events = [json.loads(x) for x in (out / "ops" / "events.jsonl").read_text().splitlines()]
    [page] = [e for e in events if e["kind"] == "page"]
    assert (page["user"], page["text"], page["urgent"]) == ("ann", "秘密: hall B", True)
    # the recorder is a device of its own: bob's listener still gets the page
    bob = listening(site, "bob", "ops")
    read_until(bob, "秘密: hall B", timeout=5)
    stop(bob)


def test_a_page_sent_before_a_rekey_opens_for_a_member_who_logs_in_after_it(site: Site
                                                                            ) -> None:
    site.add_users("ann", "bob", "dan")
    site.group("ops", "ann", "bob")
    site.ptt("ann", "page", "ops", "sealed with the old key", check=True)
    site.ptt("coordinator", "group", "add", "ops", "dan", check=True)  # a new key epoch
    site.stop()  # and the server restarted: the old epoch's grants come from its database
    site.start()
    [page] = json.loads(site.ptt("ann", "pages", "ops", "--json").stdout)["pages"]
    shown = json.loads(site.ptt("coordinator", "group", "show", "ops", "--json").stdout)
    assert 0 < page["epoch"] < shown["key_epoch"]
    bob = listening(site, "bob", "ops")
    line = read_until(bob, "sealed with the old key", timeout=8)[-1]
    assert "cannot read" not in line
    stop(bob)
    # dan, added after it was sent, is not one of its recipients
    dan = listening(site, "dan", "ops")
    time.sleep(1.0)
    assert "sealed with the old key" not in stop(dan)


def test_urgent_pages_take_the_emergency_right_of_the_role(tmp_path: Path) -> None:
    site = Site(tmp_path / "site", server_args=["--emergency-roles", "dispatcher"]).start()
    try:
        site.add_users("ann")
        site.add_users("dora", role="dispatcher")
        site.group("ops", "ann", "dora")
        refused = site.ptt("ann", "page", "ops", "--urgent", "fire")
        assert refused.returncode == 1, refused.stdout
        assert "your role may not send urgent pages" in refused.stderr
        no_traceback(refused.stderr)
        assert site.ptt("ann", "page", "ops", "not urgent").returncode == 0
        assert site.ptt("dora", "page", "ops", "--urgent", "fire").returncode == 0
    finally:
        site.stop()
