"""Bulk set-up from a CSV file: ``ptt user import`` and ``ptt user export``, the real ``ptt``
console script as processes against a real server.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.acceptance.harness import COORDINATOR, PTT, Site, clean_env, no_traceback

# 30 users in 3 groups (one of them named with a space), names in Chinese and with accents
CHINESE = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄勇", "周杰", "吴霞"]
ACCENTED = ["zoë", "josé", "renée", "andré", "chloé", "søren", "ælfric", "björn", "łukasz",
            "ñandú"]
PLAIN = [f"vol{i:02d}" for i in range(10)]
GROUPS = ["north gate", "医疗", "médicos"]


def roster_csv() -> str:
    lines = ["name,role,groups"]
    for i, name in enumerate(CHINESE + ACCENTED + PLAIN):
        role = "dispatcher" if i % 10 == 0 else ("" if i % 3 else "volunteer")
        groups = [GROUPS[i % 3]] + ([GROUPS[(i + 1) % 3]] if i % 4 == 0 else [])
        lines.append(f"{name},{role},{';'.join(groups)}")
    return "\n".join(lines) + "\n"


def expected_groups() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for i, name in enumerate(CHINESE + ACCENTED + PLAIN):
        out[name] = {GROUPS[i % 3]} | ({GROUPS[(i + 1) % 3]} if i % 4 == 0 else set())
    return out


def login_with(site: Site, tmp_path: Path, name: str, file: Path) -> dict[str, str]:
    """A fresh home for ``name`` logged in with its credentials file; its environment."""
    home = tmp_path / "volunteers" / name
    home.mkdir(parents=True)
    env = clean_env(home, PTT_CONFIG=str(home / "client.toml"))
    site.ptt(name, "login", "--credentials", str(file), env=env, check=True)
    return env


def test_import_logs_in_reruns_unchanged_and_exports(site: Site, tmp_path: Path) -> None:
    src = tmp_path / "event.csv"
    src.write_text(roster_csv(), encoding="utf-8")
    out = tmp_path / "creds"
    first = site.ptt(COORDINATOR, "user", "import", str(src), "--out", str(out), "--json",
                     timeout=120)
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    want = expected_groups()
    assert sorted(made["new"]) == sorted(want)
    assert made["kept"] == [] and sorted(made["groups_created"]) == sorted(GROUPS)
    # one re-key per group, each carrying all of the group's members
    assert sorted(made["epochs"]) == sorted(GROUPS)
    assert all(epoch == 1 for epoch in made["epochs"].values())
    for g in GROUPS:
        assert sorted(made["added"][g]) == sorted(u for u, gs in want.items() if g in gs)

    # one private credentials file per new user, and the hand-out sheet
    files = {p.stem: p for p in out.glob("*.toml")}
    assert sorted(files) == sorted(want)
    for p in files.values():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    sheet = (out / "sheet.txt").read_text(encoding="utf-8")
    assert "ptt login --credentials FILE" in sheet
    assert "张伟" in sheet and "north gate" in sheet and "张伟.toml" in sheet

    # the users listed with their roles, and the credentials files log in
    users = json.loads(site.ptt(COORDINATOR, "user", "list", "--json", check=True).stdout)
    roles = {u["name"]: u["role"] for u in users["users"]}
    assert roles["张伟"] == "dispatcher" and roles["王芳"] == "volunteer"
    for name in ("张伟", "zoë", "ñandú", "vol09"):
        env = login_with(site, tmp_path, name, files[name])
        listed = site.ptt(name, "group", "list", "--json", env=env, check=True)
        seen = {g["name"] for g in json.loads(listed.stdout)["groups"]}
        assert seen == want[name], (name, listed.stdout)

    # the same command again changes nothing: no new user, file or key, tokens unchanged
    before = {n: p.read_bytes() for n, p in files.items()}
    again = site.ptt(COORDINATOR, "user", "import", str(src), "--out", str(out), timeout=120)
    assert again.returncode == 0, again.stderr
    no_traceback(again.stderr)
    assert "0 new users, 30 kept, 0 new groups, 0 new memberships" in again.stdout
    assert "Re-keyed" not in again.stdout + again.stderr
    assert {p.stem: p.read_bytes() for p in out.glob("*.toml")} == before
    env = login_with(site, tmp_path / "again", "zoë", files["zoë"])
    assert site.ptt("zoë", "group", "list", env=env).returncode == 0

    # export writes the directory back as the same CSV: importing it elsewhere is the same
    exported = tmp_path / "export.csv"
    site.ptt(COORDINATOR, "user", "export", str(exported), check=True)
    text = exported.read_text(encoding="utf-8")
    assert "token" not in text and "verifier" not in text
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(text))}
    for name, groups in want.items():
        assert set(rows[name]["groups"].split(";")) == groups
        assert rows[name]["role"] == roles[name]
    assert rows[COORDINATOR]["role"] == "coordinator"
    stdout = site.ptt(COORDINATOR, "user", "export", check=True).stdout
    assert stdout == text
    # and it imports as a no-op
    back = site.ptt(COORDINATOR, "user", "import", str(exported), timeout=120)
    assert back.returncode == 0, back.stderr
    assert "0 new users, 31 kept" in back.stdout


def test_bad_rows_are_reported_by_line_and_skipped_whole(site: Site, tmp_path: Path) -> None:
    src = tmp_path / "event.csv"
    src.write_text("name,role,groups\n"
                   "ann,,crew\n"
                   "bad name,volunteer,crew\n"       # line 3: a space in a user name
                   "bob,chief,crew\n"                # line 4: no such role
                   "carl,volunteer,crew;call:x+y\n"  # line 5: a reserved group name
                   "Ann,volunteer,crew\n"            # line 6: ann again (mapped form)
                   "dora,volunteer,crew;new one\n", encoding="utf-8")
    out = tmp_path / "creds"
    checked = site.ptt(COORDINATOR, "user", "import", str(src), "--check")
    assert checked.returncode == 2
    assert not out.exists()
    res = site.ptt(COORDINATOR, "user", "import", str(src), "--out", str(out), timeout=60)
    assert res.returncode == 2
    no_traceback(res.stderr)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    for line in (3, 4, 5, 6):
        hits = [e for e in errors if e.startswith(f"error: {src}:{line}: ")]
        assert len(hits) == 1, (line, res.stderr)
    assert "2 new users" in res.stdout
    # nothing was done for a bad row: no user, no file, no group of its own
    assert sorted(p.stem for p in out.glob("*.toml")) == ["ann", "dora"]
    users = {u["name"] for u in json.loads(
        site.ptt(COORDINATOR, "user", "list", "--json", check=True).stdout)["users"]}
    assert users == {COORDINATOR, "ann", "dora"}
    groups = {g["name"] for g in json.loads(
        site.ptt(COORDINATOR, "group", "list", "--json", check=True).stdout)["groups"]}
    assert groups == {"crew", "new one"}


def test_not_utf8_and_bad_header_are_one_line(site: Site, tmp_path: Path) -> None:
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("name,role,groups\nzoë,,crew\n".encode("latin-1"))
    res = site.ptt(COORDINATOR, "user", "import", str(latin), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "not UTF-8" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    headless = tmp_path / "headless.csv"
    headless.write_text("zoë,,crew\n", encoding="utf-8")
    res = site.ptt(COORDINATOR, "user", "import", str(headless), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and f"{headless}:1: the first row must be the header" in res.stderr
    no_traceback(res.stderr)


def test_new_tokens_replace_old_ones_and_keep_the_groups(site: Site, tmp_path: Path) -> None:
    src = tmp_path / "event.csv"
    src.write_text("name,role,groups\nzoë,,crew;medics\n张伟,,crew\n", encoding="utf-8")
    out = tmp_path / "creds"
    site.ptt(COORDINATOR, "user", "import", str(src), "--out", str(out), check=True)
    old = (out / "zoë.toml").read_bytes()
    keep = (out / "张伟.toml").read_bytes()
    old_copy = tmp_path / "old-zoë.toml"
    old_copy.write_bytes(old)
    site.ptt(COORDINATOR, "group", "create", "lobby", "--plain", check=True)
    site.ptt(COORDINATOR, "group", "add", "lobby", "zoë", check=True)

    only = tmp_path / "zoë.csv"
    only.write_text("name,role,groups\nzoë,,crew\n", encoding="utf-8")
    res = site.ptt(COORDINATOR, "user", "import", str(only), "--out", str(out),
                   "--new-tokens", "--json", timeout=60)
    assert res.returncode == 0, res.stderr
    made = json.loads(res.stdout)
    assert made["renewed"] == ["zoë"] and made["new"] == ["zoë"]
    assert (out / "zoë.toml").read_bytes() != old
    assert (out / "张伟.toml").read_bytes() == keep

    # the old token no longer logs in; the new one does, into every group zoë was in
    home = tmp_path / "old-home"
    home.mkdir()
    refused = site.ptt("zoë", "login", "--credentials", str(old_copy),
                       env=clean_env(home, PTT_CONFIG=str(home / "client.toml")))
    assert refused.returncode != 0
    no_traceback(refused.stderr)
    env = login_with(site, tmp_path, "zoë", out / "zoë.toml")
    listed = site.ptt("zoë", "group", "list", "--json", env=env, check=True)
    assert {g["name"] for g in json.loads(listed.stdout)["groups"]} == {"crew", "medics",
                                                                        "lobby"}


@pytest.mark.slow
def test_ctrl_c_mid_import_then_the_same_command_completes_it(site: Site, tmp_path: Path
                                                               ) -> None:
    src = tmp_path / "event.csv"
    src.write_text("name,role,groups\n" + "".join(f"v{i},,crew {i % 2}\n" for i in range(150)),
                   encoding="utf-8")
    out = tmp_path / "creds"
    cmd = [PTT, "user", "import", str(src), "--out", str(out)]
    # its own process group, as in a terminal: Ctrl-C reaches the key-stretching workers too
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=site.env(COORDINATOR), start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not list(out.glob("*.toml")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    if proc.returncode != 0:  # else it finished first, on a fast machine: nothing to resume
        assert proc.returncode == 130, err
        no_traceback(err)
        assert len(err.strip().splitlines()) <= 1, err
    again = site.ptt(COORDINATOR, "user", "import", str(src), "--out", str(out), timeout=120)
    assert again.returncode == 0, again.stderr
    assert sorted(p.stem for p in out.glob("*.toml")) == sorted(f"v{i}" for i in range(150))
    users = json.loads(site.ptt(COORDINATOR, "user", "list", "--json", check=True).stdout)
    assert len(users["users"]) == 151
    for g in ("crew 0", "crew 1"):
        shown = json.loads(site.ptt(COORDINATOR, "group", "show", g, "--json",
                                    check=True).stdout)
        assert len(shown["members"]) == 75
    # every credentials file left by either run logs in
    for name in ("v0", "v149"):
        env = login_with(site, tmp_path, name, out / f"{name}.toml")
        assert site.ptt(name, "group", "list", env=env).returncode == 0
