"""A burst heard through a lossy path plays no longer than it was spoken: `ptt talk --wav` ->
server -> `python -m ptt.faults.proxy` losing 10 % of the voice datagrams on the way to the
listener -> `ptt listen --out`. The listener's WAV holds exact silence where nothing plays, so
the span from its first to its last audible frame is the burst as heard."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from ptt.audio.samples import make_speech_wav
from ptt.audio.wav import read_wav, write_wav
from ptt.faults.proxy import Impairment
from tests.acceptance.harness import (
    Site,
    spawn_logged,
    start_proxy,
    stop_logged,
    stop_proxy,
    voiced_frames,
    wait_in_file,
)

TEXT = "Crew three, the bridge on Mill Road is open again. Bring the trailer back before dark."
LOSS = 0.10
MAX_STRETCH = 0.100  # seconds a heard burst may be longer than the spoken one
FRAME = 0.020
AUDIBLE = 20  # peak of a frame that counts as heard: concealment fading out is, exact silence not
PATHS = 4  # the proxy draws one generator per (way, kind); the listener's voice downlink last


def _lost_datagrams(seed: int, count: int) -> set[int]:
    """Which of the first ``count`` voice datagrams to a lone client the proxy started with
    ``--seed seed --loss down.voice=LOSS`` drops (the draws of ptt.faults.proxy, replayed)."""
    master = random.Random(seed)
    rngs = [random.Random(master.getrandbits(64)) for _ in range(PATHS)]
    channel = Impairment(loss=LOSS).channel(rngs[-1])
    return {i for i in range(count) if not channel.transmit(0.0)}


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 5 s of speech, cut to its first and last audible frame."""
    d = tmp_path_factory.mktemp("speech")
    pcm = read_wav(make_speech_wav(d / "raw.wav", TEXT))
    first, last = voiced_frames(pcm)
    write_wav(d / "speech.wav", pcm[first * 640 : last * 640])
    return d / "speech.wav"


@pytest.mark.slow
def test_a_burst_through_10_percent_loss_plays_within_100_ms_of_its_length(
        site: Site, speech: Path, tmp_path: Path) -> None:
    site.add_users("ann", "bob")
    site.group("crew", "ann", "bob")
    sent = read_wav(speech)
    frames = len(sent) // 640
    # a seed whose losses include the burst's last datagram (the END_OF_BURST one, after the
    # frames) and others: both ways a listener can stretch a burst are exercised
    seed = next(s for s in range(1, 500) if frames in _lost_datagrams(s, frames + 1))
    lost = _lost_datagrams(seed, frames + 1)
    assert 0.05 * frames < len(lost) < 0.2 * frames
    proxy, addr = start_proxy(site.address, f"--loss=down.voice={LOSS}", "--seed", str(seed))
    out, log = tmp_path / "heard.wav", tmp_path / "listen.log"
    try:
        listener = spawn_logged(site, "bob", log, "listen", "crew", "--out", str(out),
                                env=site.env("bob", PTT_SERVER=addr))
        try:
            wait_in_file(listener, log, "joined crew", timeout=30)
            talked = site.ptt("ann", "talk", "crew", "--wav", str(speech), timeout=60)
            assert talked.returncode == 0, talked.stderr
            time.sleep(1.0)  # the jitter buffer's tail, and more than any stretch
        finally:
            code = stop_logged(listener, 2, bound=10)  # SIGINT: a clean stop, the WAV closed
        assert code == 130, log.read_text()
    finally:
        stop_proxy(proxy)
    s0, s1 = voiced_frames(sent, AUDIBLE)
    h0, h1 = voiced_frames(read_wav(out), AUDIBLE)
    spoken, heard = (s1 - s0) * FRAME, (h1 - h0) * FRAME
    assert heard - spoken <= MAX_STRETCH, (heard, spoken, log.read_text())
    assert heard >= spoken - MAX_STRETCH, (heard, spoken)  # and nothing was cut off
