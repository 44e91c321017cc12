"""``ptt listen G1 G2 ...`` as a dispatcher runs it: a real server, the console script in a
subprocess writing a WAV, talkers in encrypted groups driven in-process (real Opus, UDP)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from ptt.audio.codec import SAMPLE_RATE
from ptt.audio.streams import ToneSource
from ptt.audio.wav import read_wav
from ptt.client.connection import Connection
from ptt.client.voice import Talker
from ptt.names import parse_hostport
from ptt.protocol import messages as m
from ptt.protocol.client import Participation
from tests.cli.conftest import PTT, ServerProcess, clean_env, credentials, one_error_line, ptt
from tests.e2e.test_monitor import organise

FRAME = 320  # samples in 20 ms
ANN_HZ, BOB_HZ = 500.0, 1500.0


@pytest.fixture
def crew(home: Path, server: ServerProcess, uniq: str) -> dict[str, str]:
    """Users and two keyed groups on the shared server, under this test's own prefix."""
    cred = credentials(server.credentials)
    address = parse_hostport(server.address)
    return asyncio.run(organise(address, cred["user"], cred["token"], f"{uniq}-"))


def _env(server: ServerProcess, home: Path, user: str, token: str) -> dict[str, str]:
    return clean_env(home, PTT_SERVER=server.address, PTT_USER=user, PTT_TOKEN=token,
                     PTT_MULTICAST="0")


def _band_levels(pcm: bytes, freq: float) -> np.ndarray:
    """Per 20 ms frame, the spectral peak near ``freq``."""
    x = np.frombuffer(pcm, "<i2").astype(float)
    frames = x[: len(x) // FRAME * FRAME].reshape(-1, FRAME) * np.hanning(FRAME)
    spec = np.abs(np.fft.rfft(frames, axis=1))
    k = round(freq * FRAME / SAMPLE_RATE)
    return spec[:, k - 1: k + 2].max(axis=1)


async def _run_monitor(server: ServerProcess, home: Path, p: str, tokens: dict[str, str],
                       args: list[str], bob_priority: m.Priority) -> tuple[str, str]:
    """The dispatcher's ``ptt listen``; ann talks 2.4 s in volunteers, bob 0.8 s in medics
    from 0.8 s into ann's burst. Returns the command's stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        PTT, "listen", *args, "--bursts", "2", "--duration", "20",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=_env(server, home, f"{p}disp", tokens["disp"]))
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(15):
            while sum(1 for ln in lines if ln.startswith("joined ")) < 2:
                line = await proc.stdout.readline()
                assert line, (lines, await proc.stderr.read())
                lines.append(line.decode())
        address = parse_hostport(server.address)
        async with Connection(address, f"{p}ann", tokens["ann"]) as ann, \
                Connection(address, f"{p}bob", tokens["bob"]) as bob:
            await ann.join(f"{p}volunteers")
            await bob.join(f"{p}medics")

            async def talk(conn: Connection, group: str, hz: float, frames: int, after: float,
                           priority: m.Priority) -> None:
                await asyncio.sleep(after)
                got = await conn.request_floor(group, priority)
                assert got.state is Participation.HAS_PERMISSION
                await Talker(conn, group).send(ToneSource(hz, -12.0, frames))
                await conn.release_floor(group)

            await asyncio.gather(
                talk(ann, f"{p}volunteers", ANN_HZ, 120, 0.0, m.Priority.NORMAL),
                talk(bob, f"{p}medics", BOB_HZ, 40, 0.8, bob_priority))
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, (out, err)
    return "".join(lines) + out.decode(), err.decode()


def _duck_db(wav: Path) -> tuple[float, float]:
    """ann's level while bob talks against ann alone (dB), and bob's level against ann's alone."""
    pcm = read_wav(wav)
    ann, bob = _band_levels(pcm, ANN_HZ), _band_levels(pcm, BOB_HZ)
    on = ann > 0.2 * ann.max()
    first = int(np.argmax(on))
    bob_on = np.flatnonzero(bob > 0.3 * bob.max())
    assert len(bob_on) >= 35, len(bob_on)  # bob's 0.8 s of voice is in the file
    alone = ann[first + 10: bob_on[0] - 5]
    during = ann[bob_on[0] + 5: bob_on[-1] - 5]
    assert len(alone) >= 20 and len(during) >= 25, (len(alone), len(during))
    return (20 * np.log10(during.mean() / alone.mean()),
            20 * np.log10(bob[bob_on[0] + 5: bob_on[-1] - 5].mean() / alone.mean()))


def test_priority_group_ducks_the_other_and_lines_name_both_groups(
        server: ServerProcess, home: Path, uniq: str, crew: dict[str, str],
        tmp_path: Path) -> None:
    p = f"{uniq}-"
    wav = tmp_path / "monitor.wav"
    out, err = asyncio.run(_run_monitor(
        server, home, p, crew,
        [f"{p}volunteers", f"{p}medics", "--priority", f"{p}medics", "--out", str(wav)],
        m.Priority.NORMAL))
    assert "Traceback" not in err
    assert f"[{p}volunteers] {p}ann talking" in out
    assert f"[{p}medics] {p}bob talking" in out
    assert out.index(f"[{p}volunteers] {p}ann") < out.index(f"[{p}medics] {p}bob")
    assert f"joined {p}volunteers:" in out and f"joined {p}medics:" in out
    assert "heard 2 burst(s)" in out and f"wrote {wav}" in out
    ducked, bob_vs_ann = _duck_db(wav)
    assert -15.0 < ducked < -9.0, ducked  # ann 12 dB down while the priority group talks
    assert abs(bob_vs_ann) < 3.0, bob_vs_ann  # bob at full level (both tones at -12 dBFS)


def test_emergency_burst_line_and_duck_without_priority(
        server: ServerProcess, home: Path, uniq: str, crew: dict[str, str],
        tmp_path: Path) -> None:
    p = f"{uniq}-"
    wav = tmp_path / "monitor.wav"
    out, _ = asyncio.run(_run_monitor(
        server, home, p, crew, [f"{p}volunteers", f"{p}medics", "--out", str(wav)],
        m.Priority.EMERGENCY))
    assert f"[{p}medics] {p}bob: EMERGENCY" in out
    assert f"[{p}volunteers] {p}ann talking" in out
    ducked, _ = _duck_db(wav)
    assert -15.0 < ducked < -9.0, ducked


def test_without_priority_overlapping_groups_are_mixed_at_full_level(
        server: ServerProcess, home: Path, uniq: str, crew: dict[str, str],
        tmp_path: Path) -> None:
    p = f"{uniq}-"
    wav = tmp_path / "monitor.wav"
    asyncio.run(_run_monitor(server, home, p, crew,
                             [f"{p}volunteers", f"{p}medics", "--out", str(wav)],
                             m.Priority.NORMAL))
    level, bob_vs_ann = _duck_db(wav)
    assert abs(level) < 2.0, level
    assert abs(bob_vs_ann) < 3.0, bob_vs_ann


def test_a_group_that_is_not_yours_or_unknown_is_one_error_line(
        server: ServerProcess, home: Path, uniq: str, crew: dict[str, str],
        tmp_path: Path) -> None:
    p = f"{uniq}-"
    eve = _env(server, home, f"{p}eve", crew["eve"])
    proc = ptt("listen", f"{p}volunteers", f"{p}medics", "--out", str(tmp_path / "x.wav"),
               env=eve)
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert line.startswith("error: ") and f"not a member of '{p}volunteers'" in line, line
    assert "your own groups" in line
    assert not (tmp_path / "x.wav").exists()

    disp = _env(server, home, f"{p}disp", crew["disp"])
    proc = ptt("listen", f"{p}volunteers", f"{p}nosuch", env=disp)
    assert proc.returncode == 1
    assert f"unknown group '{p}nosuch'" in one_error_line(proc.stderr)

    proc = ptt("listen", f"{p}volunteers", f"{p}medics", "--priority", f"{p}drivers", env=disp)
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "--priority" in line and f"'{p}drivers' is not one of the groups" in line, line
    assert os.environ.get("PTT_USER") is None  # the subprocesses got their own env


def test_one_group_listens_as_before(server: ServerProcess, home: Path, uniq: str,
                                     crew: dict[str, str], tmp_path: Path) -> None:
    """A single group keeps the single-group listener and its lines (no scan lines)."""
    p = f"{uniq}-"
    wav = tmp_path / "one.wav"

    async def main() -> tuple[str, int]:
        proc = await asyncio.create_subprocess_exec(
            PTT, "listen", f"{p}volunteers", "--out", str(wav), "--bursts", "1",
            "--duration", "15", stdout=asyncio.subprocess.PIPE,
            env=_env(server, home, f"{p}disp", crew["disp"]))
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(10):
                first = (await proc.stdout.readline()).decode()
            assert first.startswith(f"joined {p}volunteers:"), first
            async with Connection(parse_hostport(server.address), f"{p}ann",
                                  crew["ann"]) as ann:
                await ann.join(f"{p}volunteers")
                assert (await ann.request_floor(f"{p}volunteers")).state \
                    is Participation.HAS_PERMISSION
                await Talker(ann, f"{p}volunteers").send(ToneSource(ANN_HZ, -12.0, 40))
                await ann.release_floor(f"{p}volunteers")
            out, _ = await asyncio.wait_for(proc.communicate(), 10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        return first + out.decode(), proc.returncode

    out, code = asyncio.run(main())
    assert code == 0, out
    assert f"{p}volunteers  {p}ann is talking" in out and "[" not in out
    assert "heard 1 burst(s)" in out and f"wrote {wav}" in out
    levels = _band_levels(read_wav(wav), ANN_HZ)
    assert (levels > 0.2 * levels.max()).sum() >= 35  # ann's 0.8 s is in the file
