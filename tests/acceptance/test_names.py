"""Names in any script, as volunteers at an event in Beijing type them.

The real ``ptt`` console script and a real ``ptt server --record`` process: a group ``志愿者``,
users ``张伟`` and ``Zoë``; ``zoë`` and ``ＺＯË`` are the same name as ``Zoë`` (PRECIS mapping) and so
taken; a 33-character name is refused with one line; a page from 张伟 is heard by Zoë and
recorded under an ASCII path whose Ogg tags hold the real names.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import wave
from pathlib import Path

import pytest

from ptt.audio.samples import speech_pcm
from ptt.textwidth import display_width
from tests.acceptance.harness import (
    COORDINATOR,
    Site,
    finish,
    no_traceback,
    read_until,
    signal_and_time,
)
from tests.e2e.audiocheck import aligned_correlation

GROUP = "志愿者"
ZHANG = "张伟"
ZOE = "Zoë"
ZOE_MAPPED = "zoë"
RECORDER = "ярослав"  # Cyrillic
PAGE_TEXT = "Gate three opens in five minutes. Volunteers to your posts, please."


def _wav(path: Path, pcm: bytes, rate: int = 16_000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def _pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16_000)
        return w.readframes(w.getnframes())


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    no_traceback(proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def recording_site(tmp_path: Path) -> Site:
    s = Site(tmp_path, server_args=["--record", str(tmp_path / "rec")]).start()
    yield s
    s.stop()


@pytest.mark.slow
def test_chinese_and_accented_names_page_heard_and_recorded(recording_site: Site,
                                                            tmp_path: Path) -> None:
    site = recording_site
    made = site.add_user(ZHANG)
    assert made["name"] == ZHANG
    assert site.add_user(ZOE)["name"] == ZOE_MAPPED  # case-mapped, as Alice is alice

    # the same name after PRECIS mapping (case, width, NFC) is taken
    for same in ("zoë", "ＺＯË", "ZOE\u0308"):
        taken = site.ptt(COORDINATOR, "user", "add", same)
        assert taken.returncode == 1, (same, taken.stdout, taken.stderr)
        assert f"user '{ZOE_MAPPED}' already exists" in _one_error_line(taken)
    long_name = "长" * 33  # 33 characters, 99 bytes
    refused = site.ptt(COORDINATOR, "user", "add", long_name)
    assert refused.returncode == 2, refused.stderr
    assert "33 characters, at most 32" in _one_error_line(refused)
    fits = site.ptt(COORDINATOR, "user", "add", "长" * 32, "--json")
    assert fits.returncode == 0, fits.stderr  # 32 characters are fine, though 96 bytes

    site.add_user(RECORDER)
    site.group(GROUP, ZHANG, ZOE, RECORDER, plain=True)
    again = site.ptt(COORDINATOR, "group", "create", "志愿者")
    assert again.returncode == 1 and f"group '{GROUP}' already exists" in _one_error_line(again)

    # the lists show the names, aligned by terminal cells
    users = site.ptt(COORDINATOR, "user", "list", check=True).stdout.splitlines()
    header = users[0]
    role_at = display_width(header[: header.index("ROLE")])
    rows = {line.split()[0]: line for line in users[1:]}
    assert {ZHANG, ZOE_MAPPED} <= set(rows)
    for name in (ZHANG, ZOE_MAPPED, COORDINATOR):
        line = rows[name]
        role = line.index(line.split()[1], len(name))
        assert display_width(line[:role]) == role_at, users
    shown = json.loads(site.ptt(ZHANG, "group", "show", GROUP, "--json", check=True).stdout)
    assert {m["user"] for m in shown["members"]} >= {ZHANG, ZOE_MAPPED}

    # a page from 张伟, heard by Zoë and recorded by the server
    original = speech_pcm(PAGE_TEXT)
    page = _wav(tmp_path / "page.wav", original)
    heard = tmp_path / "zoe.wav"
    listener = site.spawn(ZOE, "listen", GROUP, "--out", str(heard), "--bursts", "1")
    read_until(listener, GROUP, timeout=20)  # joined: the first line names the group
    # a member's recorder client too (another user: one session per user): the same slug+id
    # layout as the server's
    member_rec = tmp_path / "member-rec"
    recorder = site.spawn(RECORDER, "record", GROUP, "--out", str(member_rec))
    started = read_until(recorder, "recording", timeout=20, stream="stderr")
    assert f"recording {GROUP} into {member_rec}/group+" in started[-1], started
    talk = site.ptt(ZHANG, "talk", GROUP, "--wav", str(page), timeout=60)
    no_traceback(talk.stderr)
    assert talk.returncode == 0, (talk.stdout, talk.stderr)
    code, out, err = finish(listener, timeout=30)
    no_traceback(err)
    assert code == 0, (out, err)
    assert ZHANG in out + err  # who talked, by the real name
    corr = aligned_correlation(original, _pcm(heard))
    assert corr >= 0.9, f"Zoë heard the page badly: aligned correlation {corr:.3f}"

    code, _, out, err = signal_and_time(recorder, signal.SIGINT, bound=10)
    no_traceback(err)
    assert code in (0, 130) and "recorded 1 bursts" in out, (code, out, err)
    site.stop()  # the server's recorder finishes its files
    rec = tmp_path / "rec"
    dirs = [p for p in rec.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    group_dir = dirs[0]
    assert group_dir.name.isascii() and group_dir.name.startswith("group+"), group_dir.name
    files = sorted(group_dir.glob("*.opus"))
    assert len(files) == 1 and files[0].name.isascii(), files
    assert "-user+" in files[0].name  # the talker's slug: 张伟 has no ASCII letters

    # the real names are in the Ogg tags: the project's reader and opusinfo agree
    sessions = site.ptt(COORDINATOR, "sessions", str(rec), "--bursts", check=True)
    table = sessions.stdout.splitlines()
    assert table[1].startswith(GROUP + " " * (16 - display_width(GROUP))), table
    assert ZHANG in table[1] and ZHANG in "\n".join(table[2:]), table
    if shutil.which("opusinfo"):
        info = subprocess.run(["opusinfo", str(files[0])], capture_output=True, timeout=30,
                              check=True)
        text = info.stdout.decode("utf-8", "replace")
        assert f"GROUP={GROUP}" in text and f"TALKER={ZHANG}" in text, text
    # the member's recording: under the same directory name, the same real names inside
    (client_dir,) = [p for p in member_rec.iterdir() if p.is_dir()]
    assert client_dir.name == group_dir.name
    client_files = sorted(client_dir.glob("*.opus"))
    assert len(client_files) == 1 and client_files[0].name.isascii()
    client_info = site.ptt(RECORDER, "sessions", str(client_dir), check=True).stdout
    assert GROUP in client_info and ZHANG in client_info, client_info
    events = [json.loads(line) for line in
              (group_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {e["group"] for e in events} == {GROUP}
    assert any(e.get("user") == ZHANG for e in events)


def test_group_names_with_spaces_and_the_one_line_refusals(site: Site) -> None:
    site.add_user("ann")
    made = site.ptt(COORDINATOR, "group", "create", "North  Gate", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["name"] == "north gate"
    site.ptt(COORDINATOR, "group", "add", "north gate", "ann", check=True)
    listed = site.ptt("ann", "group", "list", check=True).stdout
    assert "north gate" in listed
    # one refusal of each kind through the console script; the other characters and rules are
    # refused the same way in-process (tests/test_names.py, tests/cli/test_errors.py)
    refused = site.ptt(COORDINATOR, "group", "create", "call:a+b")
    assert refused.returncode == 2, refused.stderr
    assert "':' is not allowed" in _one_error_line(refused)
    spaced = site.ptt(COORDINATOR, "user", "add", "north gate")
    assert spaced.returncode == 2
    assert "spaces are not allowed" in _one_error_line(spaced)
