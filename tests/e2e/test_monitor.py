"""A dispatcher monitors two encrypted groups over a real server: both talkers, overlapping in
time, are heard in the one output (real Opus, sealed voice, real UDP on loopback)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from ptt.audio.samples import make_speech_wav
from ptt.audio.streams import MemorySink, PacedSink
from ptt.audio.wav import WavSource, read_wav
from ptt.client.connection import Connection
from ptt.client.keys import VoiceKeys, add_user, rekey
from ptt.client.monitor import Monitor
from ptt.client.voice import Talker
from ptt.protocol.client import Participation
from tests.e2e.audiocheck import aligned_correlation, best_lag
from tests.e2e.serverproc import ServerProcess

ANN_SAYS = "Volunteers at gate four, please help the visitors to the east stand."
BOB_SAYS = "Medic team two, one casualty near the north entrance, walking wounded."
NEVER_SENT = "Drivers, the shuttle bus leaves the depot at half past nine tonight."


async def organise(address: tuple[str, int], root_user: str, root_token: str,
                   prefix: str = "") -> dict[str, str]:
    """Coordinator 'boss' makes ann (volunteers), bob (medics), the dispatcher (both groups) and
    eve (neither), keys both groups; returns the tokens by short name."""
    p = prefix
    async with Connection(address, root_user, root_token) as root:
        tokens = {"boss": await add_user(root, f"{p}boss", "coordinator")}
    async with Connection(address, f"{p}boss", tokens["boss"]) as boss:
        for u, role in (("ann", "volunteer"), ("bob", "volunteer"), ("disp", "dispatcher"),
                        ("eve", "volunteer")):
            tokens[u] = await add_user(boss, f"{p}{u}", role)
        for group, members in (("volunteers", ["ann", "disp"]), ("medics", ["bob", "disp"])):
            await boss.admin("group.create", {"name": f"{p}{group}"})
            await boss.admin("group.add", {"name": f"{p}{group}",
                                           "users": [f"{p}{u}" for u in members]})
            assert await rekey(boss, f"{p}{group}") == 1
    return tokens


async def talk(conn: Connection, group: str, wav: Path, after: float) -> None:
    await asyncio.sleep(after)
    assert (await conn.request_floor(group)).state is Participation.HAS_PERMISSION
    report = await Talker(conn, group).send(WavSource(wav, realtime=True))
    await conn.release_floor(group)
    assert report.reason == "source ended"


def test_overlapping_bursts_in_two_encrypted_groups_are_both_heard(
        server: ServerProcess, tmp_path: Path) -> None:
    wavs = {n: tmp_path / f"{n}.wav" for n in ("ann", "bob", "never")}
    for n, text in (("ann", ANN_SAYS), ("bob", BOB_SAYS), ("never", NEVER_SENT)):
        make_speech_wav(wavs[n], text)
    ann_pcm, bob_pcm = read_wav(wavs["ann"]), read_wav(wavs["bob"])

    async def main() -> None:
        cred = server.credentials
        tokens = await organise(server.address, cred["user"], cred["token"])
        async with Connection(server.address, "ann", tokens["ann"]) as ann, \
                Connection(server.address, "bob", tokens["bob"]) as bob, \
                Connection(server.address, "disp", tokens["disp"]) as disp:
            await ann.join("volunteers")
            await bob.join("medics")
            for g in ("volunteers", "medics"):
                assert (await disp.join(g)).key_epoch == 1
            sink = MemorySink()
            monitor = Monitor(disp, ["volunteers", "medics"], PacedSink(sink))
            stop = asyncio.Event()
            task = asyncio.create_task(monitor.run(stop))
            await asyncio.sleep(0.1)
            # bob keys up 1.2 s into ann's burst: both talk at once for most of it
            await asyncio.gather(talk(ann, "volunteers", wavs["ann"], 0.0),
                                 talk(bob, "medics", wavs["bob"], 1.2))
            await asyncio.sleep(0.5)
            stop.set()
            await task

            keys = VoiceKeys.of(disp)
            assert keys.opened > 0 and monitor.undecryptable == 0 and monitor.malformed == 0
            for g, pcm in (("volunteers", ann_pcm), ("medics", bob_pcm)):
                st = monitor.stats(g)
                assert st.bursts == 1 and st.frames_ducked == 0
                assert st.frames_heard >= len(pcm) // 640 - 2, (g, st)
            out = sink.pcm()
            # each source, aligned on its own, is a large part of the one mixed output; a clip
            # that was never sent is not
            c_ann = aligned_correlation(ann_pcm, out)
            c_bob = aligned_correlation(bob_pcm, out)
            c_never = aligned_correlation(read_wav(wavs["never"]), out)
            assert c_ann >= 0.5 and c_bob >= 0.5, (c_ann, c_bob)
            assert c_never < 0.3, c_never
            # both are heard in the same ticks: the overlap holds voice of both
            start_bob = _offset(bob_pcm, out)
            start_ann = _offset(ann_pcm, out)
            assert 0.9 < (start_bob - start_ann) / 16000 < 1.8
            overlap = out[start_bob * 2: (start_ann + len(ann_pcm) // 2) * 2]
            assert len(overlap) > 16000 * 2  # more than a second of both at once
            # the output is the sum of both near enough to predict it: a least-squares fit of
            # the overlap on the two aligned sources leaves a fraction of the power
            a = np.frombuffer(ann_pcm, "<i2")[start_bob - start_ann:][:len(overlap) // 2]
            b = np.frombuffer(bob_pcm, "<i2")[:len(a)]
            y = np.frombuffer(overlap, "<i2")[:len(a)].astype(float)
            basis = np.stack([a, b], axis=1).astype(float)
            coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
            assert 0.6 < coef[0] < 1.4 and 0.6 < coef[1] < 1.4, coef

    asyncio.run(main())


def _offset(source: bytes, out: bytes) -> int:
    """Sample index of ``source`` inside ``out`` (best cross-correlation)."""
    a = np.frombuffer(source, "<i2").astype(float)
    b = np.frombuffer(out, "<i2").astype(float)
    return best_lag(a, b)
