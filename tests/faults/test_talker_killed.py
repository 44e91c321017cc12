"""A talker's process killed with SIGKILL in the middle of a burst.

Nothing says goodbye: the server notices the silence (T1 = 1.5 s after the last voice frame), ends
the burst and grants the floor to the next member in the queue. The talker's session is still alive
then (it expires after 5 s), so it is the floor's silence timer, not the session, that frees it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from ptt.audio.wav import write_wav
from ptt.client.connection import Connection
from ptt.protocol import client as cl
from tests.e2e.serverproc import PTT, ServerProcess
from tests.faults.helpers import Stamped, provision

T1 = 1.5  # the floor's silence timer (ptt.protocol.floor)


def _tone(path: Path, seconds: float) -> None:
    t = np.arange(int(16000 * seconds)) / 16000
    pcm = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    write_wav(path, pcm, 16000)


def test_talker_killed_mid_burst_frees_the_floor_within_t1_for_the_queue(
        server: ServerProcess, tmp_path: Path) -> None:
    wav = tmp_path / "long.wav"
    _tone(wav, 20.0)
    out = tmp_path / "talker.out"

    async def main() -> None:
        tokens = await provision(server, {"volunteers": ["ann", "bob", "cat"]})
        env = server.env()
        env.update(PTT_USER="ann", PTT_TOKEN=tokens["ann"], PTT_MULTICAST="off")
        async with Connection(server.address, "bob", tokens["bob"]) as bob, \
                Connection(server.address, "cat", tokens["cat"]) as cat:
            await bob.join("volunteers")
            await cat.join("volunteers")
            heard: list[float] = []
            cat.on_voice = lambda _: heard.append(time.monotonic())
            with open(out, "wb") as f:
                talker = subprocess.Popen(
                    [PTT, "talk", "volunteers", "--wav", str(wav),
                     "--server", f"127.0.0.1:{server.port}"],
                    stdout=f, stderr=subprocess.STDOUT, env=env)
            try:
                deadline = time.monotonic() + 15
                while b"floor granted" not in out.read_bytes():
                    assert talker.poll() is None, out.read_text()
                    assert time.monotonic() < deadline, out.read_text()
                    await asyncio.sleep(0.05)
                queued = await bob.request_floor("volunteers")
                assert (queued.state, queued.position) == (cl.Participation.QUEUED, 1)
                await asyncio.sleep(0.5)
                assert len(heard) >= 15  # mid-burst: ann's voice is flowing to cat
                watch = Stamped(bob)
                os.kill(talker.pid, signal.SIGKILL)
                t_kill = time.monotonic()
                assert talker.wait(5) == -signal.SIGKILL
                granted = await bob.wait_floor("volunteers", timeout=5)
                t_grant = time.monotonic()
            finally:
                if talker.poll() is None:
                    talker.kill()
                    talker.wait(5)
            watch.stop()
            assert granted.state is cl.Participation.HAS_PERMISSION
            last_voice = max(t for t in heard if t <= t_kill + 0.05)
            free_after = t_grant - last_voice
            # the floor is freed by T1 counted from the last frame, plus a loopback round trip
            # and scheduling slack on a busy 2-core machine
            assert T1 - 0.2 < free_after < T1 + 0.5, f"granted {free_after:.3f} s after silence"
            assert t_grant - t_kill < T1 + 0.5
            assert not [t for t in heard if t > t_kill + 0.1]  # nothing from the dead talker
            # cat saw the talker change from ann to bob (its FloorTaken may still be in flight)
            await asyncio.sleep(0.2)
            assert cat.core.groups["volunteers"].talker == "bob"
            assert (await cat.request_floor("volunteers")).state is cl.Participation.QUEUED
            print(f"floor granted to the queue {free_after * 1000:.0f} ms after the last frame, "
                  f"{(t_grant - t_kill) * 1000:.0f} ms after SIGKILL")

    asyncio.run(main())
