"""An event's encrypted group of a thousand volunteers, set up the way a coordinator does it: one
``ptt user import`` of a CSV (users, the group, its memberships and its key in one run), then
paged by one member with ``ptt talk --wav`` and heard by three others running ``ptt listen``
with the credentials files the import wrote; the other members are offline, and the talker's
delivery report says so."""

from __future__ import annotations

import csv
import json
import re
import shutil
import signal
import tomllib
import wave
from pathlib import Path

import numpy as np
import pytest

from ptt.audio.samples import make_speech_wav
from tests.acceptance.harness import (
    COORDINATOR,
    Site,
    _mapped,
    no_traceback,
    spawn_logged,
    stop_logged,
    wait_in_file,
)
from tests.e2e.audiocheck import aligned_correlation

MEMBERS = 1_000
TEXT = "All volunteers of the north gate, the buses arrive in ten minutes."


def pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes())


# the import stretches 1,000 verifiers (~10 s of CPU): minutes on a loaded machine
@pytest.mark.timeout(360)
@pytest.mark.slow
def test_a_thousand_member_group_made_by_import_is_paged_and_heard(site: Site,
                                                                   tmp_path: Path) -> None:
    names = [f"gate{i:04d}" for i in range(MEMBERS)]
    sheet = tmp_path / "north.csv"
    with sheet.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["name", "role", "groups"])
        w.writerows([n, "volunteer", "north"] for n in names)
    out = tmp_path / "creds"
    made = site.ptt(COORDINATOR, "user", "import", str(sheet), "--out", str(out), timeout=300)
    assert made.returncode == 0, made.stderr
    no_traceback(made.stderr)

    talker, *listeners = names[:4]
    for name in names[:4]:  # what each volunteer does with the file handed to it
        creds = out / f"{_mapped(name)}.toml"
        site.tokens[name] = tomllib.loads(creds.read_text(encoding="utf-8"))["token"]
        site.config(name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(creds, site.config(name))
        site.config(name).chmod(0o600)

    shown = json.loads(site.ptt(COORDINATOR, "group", "show", "north", "--json",
                                check=True).stdout)
    assert sorted(m["user"] for m in shown["members"]) == names

    speech = make_speech_wav(tmp_path / "notice.wav", TEXT)
    procs = {}
    try:
        for name in listeners:
            log = tmp_path / f"{name}.log"
            procs[name] = (spawn_logged(site, name, log, "listen", "north", "--out",
                                        str(tmp_path / f"{name}.wav")), log)
        for proc, log in procs.values():
            wait_in_file(proc, log, "joined north", timeout=60)
        talked = site.ptt(talker, "talk", "north", "--wav", str(speech), timeout=120)
    finally:
        codes = {n: stop_logged(p, signal.SIGINT) for n, (p, _) in procs.items()}
    assert talked.returncode == 0, talked.stderr
    line = next(x for x in talked.stdout.splitlines() if x.startswith("heard by"))
    assert line.startswith("heard by 3 of 3 online members ("), line
    # one readable line however large the group: the offline members counted, a few named
    assert re.search(r"; offline: 996 \(gate0004, gate0005, .*, and \d+ more\)$", line), line
    assert len(line) < 1000, line
    for name in listeners:
        assert codes[name] in (0, 130), (tmp_path / f"{name}.log").read_text()
        heard = pcm(tmp_path / f"{name}.wav")
        assert np.abs(np.frombuffer(heard, "<i2")).max(initial=0) > 1000, name
        assert aligned_correlation(pcm(speech), heard) >= 0.9, name
