"""Per-frame timing of the real commands: ``ptt talk --wav --timing`` logs when each voice frame
left, ``ptt listen --timing`` when each was played, on the one monotonic clock of the machine, so
that mouth-to-ear delay can be measured through the commands (bench/bench_mouth_to_ear.py)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from ptt.audio.samples import make_speech_wav
from ptt.audio.wav import read_wav
from ptt.client.timing import read_timing
from tests.acceptance.harness import Site, no_traceback, spawn_logged, stop_logged, wait_in_file

TEXT = "Gate two is clear. Send the next bus."
FRAME = 0.020


def test_talk_and_listen_log_when_each_frame_was_sent_and_played(site: Site,
                                                                   tmp_path: Path) -> None:
    site.add_users("ann", "bob")
    site.group("crew", "ann", "bob")
    wav = make_speech_wav(tmp_path / "speech.wav", TEXT)
    frames = -(-len(read_wav(wav)) // 640)  # the last frame padded
    sent_log, played_log = tmp_path / "sent.txt", tmp_path / "played.txt"
    log = tmp_path / "listen.log"
    listener = spawn_logged(site, "bob", log, "listen", "crew", "--out", str(tmp_path / "o.wav"),
                            "--timing", str(played_log), "--duration", "60")
    try:
        wait_in_file(listener, log, "joined crew", timeout=30)
        t0 = time.monotonic()
        talked = site.ptt("ann", "talk", "crew", "--wav", str(wav), "--timing", str(sent_log),
                          timeout=60)
        t1 = time.monotonic()
        assert talked.returncode == 0, talked.stderr
        time.sleep(0.8)  # the listener's buffered tail
    finally:
        code = stop_logged(listener, signal.SIGINT, bound=10)
    assert code == 130, log.read_text()

    sent = read_timing(sent_log)
    assert {e.event for e in sent} == {"sent"}
    (burst,) = {e.burst_id for e in sent}
    # every frame of the file and the closing one, in order, at the talker's 20 ms pace
    assert [e.seq for e in sent] == list(range(frames + 1))
    assert t0 < sent[0].at and sent[-1].at < t1  # monotonic seconds, this machine's clock
    span = sent[-1].at - sent[0].at
    assert abs(span - frames * FRAME) < 0.5, span

    played = read_timing(played_log)
    assert {e.event for e in played} == {"played"} and {e.burst_id for e in played} == {burst}
    heard = [e for e in played if e.source == "received"]
    assert len(heard) >= 0.95 * frames  # a clean path: (nearly) every frame from its packet
    at = {e.seq: e.at for e in sent}
    delays = sorted(e.at - at[e.seq] for e in heard)
    # played after it was sent, and within a jitter buffer's reach of it
    assert delays[0] > 0, delays[:5]
    assert delays[len(delays) // 2] < 0.5, delays[len(delays) // 2]
    gaps = [b.at - a.at for a, b in zip(played, played[1:], strict=False)]
    assert 0.015 < sum(gaps) / len(gaps) < 0.025  # one frame per 20 ms tick


def test_timing_is_refused_where_it_cannot_be_kept(site: Site, tmp_path: Path) -> None:
    site.add_users("ann")
    site.group("crew", "ann")
    site.group("medics", "ann")
    talk = site.ptt("ann", "talk", "crew", "--timing", str(tmp_path / "t.txt"))
    assert talk.returncode == 2 and "--timing needs --wav" in talk.stderr
    no_traceback(talk.stderr)
    listen = site.ptt("ann", "listen", "crew", "medics", "--timing", str(tmp_path / "t.txt"))
    assert listen.returncode == 2 and "--timing works with one group" in listen.stderr
    no_traceback(listen.stderr)
    wav = make_speech_wav(tmp_path / "speech.wav", TEXT)
    bad = site.ptt("ann", "talk", "crew", "--wav", str(wav), "--timing",
                   str(tmp_path / "no" / "such" / "dir" / "t.txt"))
    assert bad.returncode != 0 and "cannot write the timing log" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    no_traceback(bad.stderr)
