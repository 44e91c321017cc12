"""README's "Setting up an event", run as written: its CSV, its commands in its order, the output
it shows, and a volunteer logging in with the file it made. The example is read from README.md
itself, so the section cannot drift from what the commands do.
"""

from __future__ import annotations

import csv
import io
import json
import re
import stat
import subprocess
from pathlib import Path

from tests.acceptance.harness import COORDINATOR, PTT, Site, clean_env, no_traceback

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("### Setting up an event")
    return text[start:text.index("\n### ", start + 1)]


def _example() -> tuple[str, list[str], list[str]]:
    """The section's CSV, its ``ptt`` commands (comments cut) and the output lines it shows."""
    sec = _section()
    table = re.search(r"```csv\n(.*?)```", sec, re.S)
    shell = re.search(r"```sh\n(.*?)```", sec, re.S)
    assert table is not None and shell is not None, "the section lost its CSV or its commands"
    commands, shown = [], []
    for line in shell.group(1).splitlines():
        if line.startswith("ptt "):
            commands.append(line.split("  #", 1)[0].strip())
        elif line.startswith("#   "):
            shown.append(line[4:].strip())
    return table.group(1), commands, shown


def _run(site: Site, cwd: Path, command: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    args = command.split()[1:]
    proc = subprocess.run([PTT, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=env or site.env(COORDINATOR), stdin=subprocess.DEVNULL)
    no_traceback(proc.stderr)
    return proc


def test_readme_event_setup_from_csv_to_a_volunteer_logged_in(site: Site, tmp_path: Path
                                                              ) -> None:
    table, commands, shown = _example()
    assert [c.split()[:3] for c in commands] == [["ptt", "user", "import"]] * 2 + [
        ["ptt", "user", "export"]]
    (tmp_path / "event.csv").write_text(table, encoding="utf-8")
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(table))}

    check, imported, exported = commands
    proc = _run(site, tmp_path, check)  # checks every row, changes nothing
    assert proc.returncode == 0, proc.stderr
    users = json.loads(site.ptt(COORDINATOR, "user", "list", "--json", check=True).stdout)
    assert [u["name"] for u in users["users"]] == [COORDINATOR]

    proc = _run(site, tmp_path, imported)
    assert proc.returncode == 0, proc.stderr
    printed = [line.strip() for line in proc.stdout.splitlines()]
    assert printed[:len(shown)] == shown, proc.stdout

    creds = tmp_path / "creds"
    files = sorted(p.name for p in creds.glob("*.toml"))
    assert files == sorted(f"{n.lower()}.toml" for n in rows)
    for f in creds.glob("*.toml"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    sheet = (creds / "sheet.txt").read_text(encoding="utf-8")
    for name, row in rows.items():  # name, role, groups, file: one line each
        line = next(x for x in sheet.splitlines() if x.startswith(name.lower() + " "))
        assert (row["role"] or "volunteer") in line and f"{name.lower()}.toml" in line
        for g in row["groups"].split(";"):
            assert g in line

    proc = _run(site, tmp_path, exported)
    assert proc.returncode == 0, proc.stderr
    back = {r["name"]: r for r in
            csv.DictReader(io.StringIO((tmp_path / "event-now.csv").read_text("utf-8")))}
    for name, row in rows.items():
        assert back[name.lower()]["role"] == (row["role"] or "volunteer")
        assert set(back[name.lower()]["groups"].split(";")) == set(row["groups"].split(";"))

    # a volunteer logs in with the file handed over, as the section says, and sees its groups
    login = re.search(r"`(ptt login --credentials (\S+?\.toml))`", _section())
    assert login is not None
    home = tmp_path / "volunteer"
    home.mkdir()
    env = clean_env(home, PTT_CONFIG=str(home / "client.toml"))
    proc = _run(site, creds, login.group(1), env=env)
    assert proc.returncode == 0, proc.stderr
    who = login.group(2).removesuffix(".toml")
    listed = json.loads(_run(site, creds, "ptt group list --json", env=env).stdout)
    assert {g["name"] for g in listed["groups"]} == set(
        next(r for n, r in rows.items() if n.lower() == who)["groups"].split(";"))

    proc = _run(site, tmp_path, imported)  # the same command again: nothing to do
    assert proc.returncode == 0 and proc.stdout.startswith("0 new users"), proc.stdout
