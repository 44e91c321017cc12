"""``ptt replay`` into a group follows its listeners' link as ``ptt talk`` does: a recording replayed
while the listener's downlink loses 20 % of the voice (``python -m ptt.faults.proxy``) gets more
copies per packet than it started with, says so in ``link:`` lines, and puts them on the wire (the proxy's ``--trace`` of every voice datagram it relays to the listener)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from ptt.audio.samples import make_speech_wav
from ptt.media.sender import OFFSETS, START_REDUNDANCY
from tests.acceptance.harness import (
    Site,
    no_traceback,
    spawn_logged,
    start_proxy,
    stop_logged,
    stop_proxy,
    wait_in_file,
)

TEXT = ("Unit seven, please report to the loading dock at gate four. Emergency crews are standing "
        "by near the north entrance, and the north entrance is now closed.")
LINK = re.compile(r"link: ([0-9.]+)% loss.* -> (no copies|1 copy|(\d) copies)")


def copies(mo: re.Match[str]) -> int:
    return int(mo.group(3)) if mo.group(3) else {"no copies": 0, "1 copy": 1}[mo.group(2)]


@pytest.mark.slow
def test_a_replayed_recording_gets_more_copies_on_a_lossy_listener_link(
        site: Site, tmp_path: Path) -> None:
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    wav = make_speech_wav(tmp_path / "notice.wav", TEXT)
    opus = tmp_path / "notice.opus"
    subprocess.run(["opusenc", "--quiet", str(wav), str(opus)], check=True)
    trace = tmp_path / "trace.txt"
    proxy, addr = start_proxy(site.address, "--loss=down.voice=0.2", "--seed", "5",
                              trace=trace)
    log = tmp_path / "listen.log"
    try:
        listener = spawn_logged(site, "bob", log, "listen", "g", "--out",
                                str(tmp_path / "bob.wav"), "--bursts", "1",
                                env=site.env("bob", PTT_SERVER=addr))
        try:
            wait_in_file(listener, log, "joined g", timeout=30)
            replayed = site.ptt("ann", "replay", str(opus), "--group", "g", timeout=60)
        finally:
            code = stop_logged(listener, bound=15)
    finally:
        stop_proxy(proxy)
    assert replayed.returncode == 0, replayed.stderr
    no_traceback(replayed.stderr)
    assert "done: 1 of 1 bursts sent" in replayed.stdout, replayed.stdout
    assert code == 0, log.read_text()

    links = [mo for mo in map(LINK.search, replayed.stdout.splitlines()) if mo]
    assert links, replayed.stdout
    start = len(OFFSETS[START_REDUNDANCY])
    assert copies(links[-1]) > start, replayed.stdout  # more than the replay started with
    # the listener's voice at the proxy: the burst's first datagram, the first after the rise
    rows = [(float(t), int(n)) for t, way, n in
            (line.split() for line in trace.read_text().splitlines()) if way == "down"]
    t0 = rows[0][0]
    early = [n for t, n in rows if t - t0 < 0.4]
    late = [n for t, n in rows if 3.0 <= t - t0 < 7.0]
    assert early and late, rows[:5]
    # a copy more on every packet: a frame's worth more bytes per datagram
    assert sum(late) / len(late) > 1.1 * sum(early) / len(early), (early, late)
    text = log.read_text()
    assert re.search(r"received [0-9.]+% \(\d+ of \d+ frames lost", text), text
