"""Real speech paged through a real `ptt server` process to two listeners over UDP."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ptt.audio.samples import make_speech_wav
from ptt.audio.streams import MemorySink, PacedSink
from ptt.audio.wav import WavSource, read_wav
from ptt.client.connection import Connection
from ptt.client.voice import Listener, Talker
from ptt.protocol.client import Participation
from tests.e2e.audiocheck import aligned_correlation
from tests.e2e.serverproc import ServerProcess
from tests.e2e.test_floor_over_udp import setup_group

TEXT = "Volunteers at gate four, please help the visitors to the east stand. Thank you."


def test_speech_paged_to_two_listeners_correlates_with_the_original(
        server: ServerProcess, tmp_path: Path) -> None:
    wav = tmp_path / "speech.wav"
    make_speech_wav(wav, TEXT)
    original = read_wav(wav)

    async def main() -> tuple[list[bytes], list[int]]:
        tokens = await setup_group(server, ["ann", "bob", "cat"])
        async with Connection(server.address, "ann", tokens["ann"]) as ann, \
                Connection(server.address, "bob", tokens["bob"]) as bob, \
                Connection(server.address, "cat", tokens["cat"]) as cat:
            for c in (ann, bob, cat):
                await c.join("volunteers")
            stop = asyncio.Event()
            sinks = [MemorySink(), MemorySink()]
            listeners = [Listener(c, "volunteers", PacedSink(s)) for c, s in zip((bob, cat), sinks)]
            tasks = [asyncio.create_task(li.run(stop)) for li in listeners]
            assert (await ann.request_floor("volunteers")).state is Participation.HAS_PERMISSION
            report = await Talker(ann, "volunteers").send(WavSource(wav, realtime=True))
            await ann.release_floor("volunteers")
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*tasks)
            assert report.reason == "source ended"
            return [s.pcm() for s in sinks], [li.frames_played for li in listeners]

    outputs, played = asyncio.run(main())
    frames = len(original) // 640
    for pcm, n in zip(outputs, played):
        assert n >= frames - 2, (n, frames)
        assert aligned_correlation(original, pcm) >= 0.9


def test_alignment_forgives_a_dropped_quiet_frame_but_not_damage() -> None:
    import numpy as np
    rng = np.random.default_rng(1)
    t = np.arange(3 * 16000) / 16000
    # gated noise: aperiodic like speech, with pauses where a playout buffer may skip a frame
    sig = (rng.normal(0, 6000, len(t)) * (np.sin(2 * np.pi * 0.7 * t) > 0)).astype("<i2")
    shifted = np.concatenate([sig[:16000], sig[16000 + 320:]])  # one 20 ms frame skipped
    assert aligned_correlation(sig.tobytes(), shifted.tobytes()) > 0.95
    noise = rng.normal(0, 8000, len(sig)).astype("<i2")
    assert aligned_correlation(sig.tobytes(), noise.tobytes()) < 0.2


def test_listeners_hear_the_emergency_alert_when_an_emergency_burst_starts(
        server: ServerProcess) -> None:
    import numpy as np

    from ptt.audio.streams import SilenceSource
    from ptt.audio.tones import ToneSet, emergency
    from ptt.protocol import messages as m

    async def main() -> tuple[int, int, bytes, bytes]:
        tokens = await setup_group(server, ["ann", "bob", "cat"])
        async with Connection(server.address, "ann", tokens["ann"]) as ann, \
                Connection(server.address, "bob", tokens["bob"]) as bob, \
                Connection(server.address, "cat", tokens["cat"]) as cat:
            for c in (ann, bob, cat):
                await c.join("volunteers")
            stop = asyncio.Event()
            alerted, quiet = MemorySink(), MemorySink()
            listeners = [Listener(bob, "volunteers", PacedSink(alerted), ToneSet()),
                         Listener(cat, "volunteers", PacedSink(quiet), ToneSet.none())]
            tasks = [asyncio.create_task(li.run(stop)) for li in listeners]
            got = await ann.request_floor("volunteers", m.Priority.EMERGENCY)
            assert got.state is Participation.HAS_PERMISSION
            await Talker(ann, "volunteers").send(SilenceSource(frames=100))  # 2 s of silence
            await ann.release_floor("volunteers")
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*tasks)
            return listeners[0].alerts, listeners[1].alerts, alerted.pcm(), quiet.pcm()

    n_alerted, n_quiet, alerted_pcm, quiet_pcm = asyncio.run(main())
    assert n_alerted == 1 and n_quiet == 1  # both saw the emergency; one has the tone off

    def energy(pcm: bytes) -> float:
        return float(np.abs(np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2")).sum())

    alert = b"".join(emergency())
    assert energy(alerted_pcm) >= 0.8 * energy(alert)  # the whole alert was played over silence
    assert energy(quiet_pcm) < 0.05 * energy(alert)  # and nothing where it is turned off
