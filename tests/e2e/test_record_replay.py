"""Recording and replay against a real `ptt server --record` process, with the real CLI.

One live session (two talkers paging real speech) is recorded twice at once: by the server and by
a `ptt record` member. Both are checked with independent tools (opusinfo, ffprobe, opusdec,
ffmpeg), then replayed into another group with `ptt replay` while the server records that too:
the re-recording must hold the same Opus packets bit for bit at the same burst timing.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ptt.audio.samples import make_speech_wav
from ptt.audio.wav import WavSource
from ptt.client.connection import Connection
from ptt.client.keys import add_user
from ptt.client.voice import Talker
from ptt.config import write_credentials
from ptt.protocol.client import Participation
from ptt.record.catalog import Session, load
from tests.e2e.serverproc import PTT, ServerProcess

FRAME = 0.02
TEXTS = ("Unit seven, gate four.", "Copy, moving.")
GAP = 0.6  # seconds of silence between the two bursts


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (opus-tools / ffmpeg)")
    return path


@dataclass
class RecordingServer(ServerProcess):
    """`ptt server` (started with --record DIR), and the CLI environment of a client config."""

    def cli_env(self, config: Path) -> dict[str, str]:
        env = self.env()
        env["PTT_CONFIG"] = str(config)
        return env


async def setup_plain_group(server: ServerProcess, users: list[str],
                            group: str = "volunteers") -> dict[str, str]:
    """Users (tokens made here) in a ``--plain`` group: the only kind whose voice the server
    can hear, hence record."""
    cred = server.credentials
    tokens = {}
    async with Connection(server.address, cred["user"], cred["token"]) as coord:
        for u in users:
            tokens[u] = await add_user(coord, u)
        await coord.admin("group.create", {"name": group, "plain": True})
        await coord.admin("group.add", {"name": group, "users": users})
    return tokens


@pytest.fixture
def rserver(tmp_path: Path) -> Iterator[RecordingServer]:
    s = RecordingServer(tmp_path / "ptt.db", extra_args=["--record", str(tmp_path / "rec")])
    s.start()
    yield s
    s.stop()


def ptt(server: RecordingServer, config: Path, *args: str | Path, timeout: float = 60
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PTT, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=server.cli_env(config), check=False)


def coordinator(server: RecordingServer) -> Path:
    return server.db.parent / "coordinator.toml"


def packets_of(session: Session) -> list[list[bytes]]:
    return [[p.data for p in b.stream.packets] for b in session.bursts]


def offsets_of(session: Session) -> list[float]:
    return [b.offset for b in session.bursts]


def wait_for_files(folder: Path, n: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if folder.is_dir() and len(list(folder.glob("*.opus"))) >= n:
            return
        time.sleep(0.05)


async def page(conn: Connection, group: str, wav: Path) -> int:
    """Ask, send the WAV in real time, release; returns the packets sent (closing one included)."""
    assert (await conn.request_floor(group)).state is Participation.HAS_PERMISSION
    report = await Talker(conn, group).send(WavSource(wav, realtime=True))
    await conn.release_floor(group)
    return report.frames + 1


@pytest.mark.slow
def test_server_and_member_recordings_replay_bit_for_bit(rserver: RecordingServer,
                                                         tmp_path: Path) -> None:
    opusinfo, opusdec, ffprobe, ffmpeg = map(need, ("opusinfo", "opusdec", "ffprobe", "ffmpeg"))
    wavs = [make_speech_wav(tmp_path / f"s{i}.wav", t) for i, t in enumerate(TEXTS)]
    rec, member_dir = tmp_path / "rec", tmp_path / "member"

    async def live_session() -> tuple[list[int], str]:
        tokens = await setup_plain_group(rserver, ["ann", "bob", "rec"])
        cred = rserver.credentials
        async with Connection(rserver.address, cred["user"], cred["token"]) as coord:
            await coord.admin("group.create", {"name": "replayed", "plain": True})
        rec_cfg = write_credentials(tmp_path / "rec.toml", f"127.0.0.1:{rserver.port}", "rec",
                                    tokens["rec"])
        recorder = await asyncio.create_subprocess_exec(
            PTT, "record", "volunteers", "--out", str(member_dir),
            env=rserver.cli_env(rec_cfg), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        async with Connection(rserver.address, "ann", tokens["ann"]) as ann, \
                Connection(rserver.address, "bob", tokens["bob"]) as bob:
            for c in (ann, bob):
                await c.join("volunteers")
            assert recorder.stderr is not None
            line = await asyncio.wait_for(recorder.stderr.readline(), 15)
            assert line.startswith(b"recording volunteers into"), line  # logged in and joined
            sent = [await page(ann, "volunteers", wavs[0])]
            await asyncio.sleep(GAP)
            sent.append(await page(bob, "volunteers", wavs[1]))
            await asyncio.sleep(0.3)
        recorder.send_signal(signal.SIGTERM)
        out, err = await recorder.communicate()
        assert recorder.returncode == 143, err.decode()  # stopped by SIGTERM, files finished
        return sent, out.decode()

    sent, member_out = asyncio.run(live_session())
    assert "recorded 2 bursts" in member_out, member_out

    wait_for_files(rec / "volunteers", 2)
    server_rec = load(rec / "volunteers")
    member_rec = load(member_dir / "volunteers")
    for session in (server_rec, member_rec):
        assert session.all_problems() == [] and session.complete
        assert [b.talker for b in session.bursts] == ["ann", "bob"]
        assert [len(b.stream.packets) for b in session.bursts] == sent
        # independent tools accept and decode every file, talk time within one frame
        for burst, n in zip(session.bursts, sent):
            f, talk = burst.path, n * FRAME
            info = subprocess.run([opusinfo, f], capture_output=True, text=True, check=False)
            assert info.returncode == 0 and "WARNING" not in info.stdout, info.stdout
            probe = subprocess.run([ffprobe, "-v", "error", "-show_entries", "format=duration",
                                    "-of", "csv=p=0", f], capture_output=True, text=True,
                                   check=True)
            assert abs(float(probe.stdout) - talk) <= FRAME, (probe.stdout, talk)
            out = tmp_path / f"{f.stem}.wav"
            subprocess.run([opusdec, "--quiet", "--rate", "16000", f, out], check=True)
            with wave.open(str(out)) as w:
                assert abs(w.getnframes() / w.getframerate() - talk) <= FRAME
            dec = subprocess.run([ffmpeg, "-v", "error", "-i", f, "-f", "null", "-"],
                                 capture_output=True, text=True, check=False)
            assert dec.returncode == 0 and dec.stderr == "", dec.stderr
    # the member heard exactly what the server relayed
    assert packets_of(member_rec) == packets_of(server_rec)
    events = (rec / "volunteers" / "events.jsonl").read_text()
    for kind in ("join", "floor_request", "floor_grant", "floor_release", "floor_idle"):
        assert f'"kind":"{kind}"' in events

    # replay the server's recording into another group, as a temporary user
    result = ptt(rserver, coordinator(rserver), "replay", rec / "volunteers", "--group",
                 "replayed", "--as", "replayer")
    assert result.returncode == 0, result.stderr
    assert "done: 2 of 2 bursts sent" in result.stdout
    wait_for_files(rec / "replayed", 2)
    again = load(rec / "replayed")
    assert again.all_problems() == []
    assert packets_of(again) == packets_of(server_rec)  # bit for bit
    assert [b.talker for b in again.bursts] == ["replayer", "replayer"]
    for a, b in zip(offsets_of(again), offsets_of(server_rec)):
        assert abs(a - b) <= 0.020, (offsets_of(again), offsets_of(server_rec))
    for a, b in zip(again.bursts, server_rec.bursts):
        assert a.span == b.span
    # the temporary user is gone again
    users = ptt(rserver, coordinator(rserver), "user", "list")
    assert "replayer" not in users.stdout

    # ptt sessions and ptt export on the recordings
    listing = ptt(rserver, coordinator(rserver), "sessions", rec)
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert set(rows) == {"volunteers", "replayed"}
    assert re.search(r"\s2\s+ann, bob$", rows["volunteers"])
    wav = tmp_path / "session.wav"
    exported = ptt(rserver, coordinator(rserver), "export", rec / "volunteers", "--wav", wav)
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    assert "ann burst" in lines[0] and "bob burst" in lines[1]
    with wave.open(str(wav)) as w:
        total = w.getnframes() / w.getframerate()
    assert abs(total - server_rec.duration) <= FRAME
