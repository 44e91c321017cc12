"""Replaying files ptt did not make (opusenc) to a listener, and damaged recordings at the CLI."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptt.audio.codec import FRAME_BYTES, OpusEncoder
from ptt.audio.samples import make_speech_wav
from ptt.audio.streams import MemorySink, PacedSink
from ptt.audio.wav import read_wav
from ptt.client.connection import Connection
from ptt.client.voice import Listener
from ptt.config import write_credentials
from ptt.record.catalog import load
from ptt.record.recorder import Recorder
from tests.e2e.audiocheck import aligned_correlation
from tests.e2e.serverproc import PTT
from tests.e2e.test_record_replay import RecordingServer, packets_of, setup_plain_group

T0 = 1_714_564_800.0


@pytest.fixture
def rserver(tmp_path: Path) -> Iterator[RecordingServer]:
    s = RecordingServer(tmp_path / "ptt.db", extra_args=["--record", str(tmp_path / "rec")])
    s.start()
    yield s
    s.stop()


def opusenc(src: Path, out: Path, *extra: str) -> Path:
    tool = shutil.which("opusenc")
    if tool is None:
        pytest.skip("opusenc is not installed (apt-get install opus-tools)")
    subprocess.run([tool, "--quiet", *extra, str(src), str(out)], check=True)
    return out


def test_opusenc_files_replayed_to_a_listener(rserver: RecordingServer, tmp_path: Path) -> None:
    speech = make_speech_wav(tmp_path / "speech.wav", "Gate four is now open.", rate=22_050)
    folder = tmp_path / "foreign"
    folder.mkdir()
    plain = opusenc(speech, folder / "a.opus")  # 20 ms packets: sent as they are
    long = opusenc(speech, folder / "b.opus", "--framesize", "60")  # 60 ms: converted
    original = read_wav(speech)  # at 16 kHz

    async def main() -> tuple[bytes, int, subprocess.CompletedProcess[bytes]]:
        tokens = await setup_plain_group(rserver, ["ann", "bob"])
        ann_cfg = write_credentials(tmp_path / "ann.toml", f"127.0.0.1:{rserver.port}", "ann",
                                    tokens["ann"])
        async with Connection(rserver.address, "bob", tokens["bob"]) as bob:
            await bob.join("volunteers")
            sink = MemorySink()
            listener = Listener(bob, "volunteers", PacedSink(sink))
            stop = asyncio.Event()
            task = asyncio.create_task(listener.run(stop))
            proc = await asyncio.create_subprocess_exec(
                PTT, "replay", str(folder), "--group", "volunteers", "--as", str(ann_cfg),
                env=rserver.cli_env(ann_cfg), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            await asyncio.sleep(0.3)
            stop.set()
            await task
            done = subprocess.CompletedProcess([], proc.returncode or 0, out, err)
            return sink.pcm(), listener.frames_played, done

    heard, played, done = asyncio.run(main())
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert "done: 2 of 2 bursts sent" in lines[-1], lines
    bursts = [x for x in lines if x.startswith("+")]  # not the link and delivery lines
    assert len(bursts) == 2, lines
    assert "converted" not in bursts[0] and "converted" in bursts[1], lines  # a.opus, b.opus
    frames = len(original) // FRAME_BYTES
    assert played >= 2 * frames - 4, (played, frames)  # both bursts heard in full
    assert aligned_correlation(original, heard) >= 0.85
    # the 20 ms file went out byte for byte: the server's recording holds opusenc's packets
    replayed = load(tmp_path / "rec" / "volunteers")
    assert packets_of(replayed)[0] == packets_of(load(plain))[0]
    assert len(packets_of(replayed)[1]) >= 3 * len(packets_of(load(long))[0]) - 1


def make_damaged(folder: Path) -> tuple[Path, Path]:
    """Two bursts of speech from the recorder; one file cut short, one with a corrupted page."""
    pcm = read_wav(make_speech_wav(folder.parent / "d.wav", "Copy, all units stand by."))
    enc = OpusEncoder()
    packets = [enc.encode(pcm[i:i + FRAME_BYTES]) for i in range(0, len(pcm) - FRAME_BYTES,
                                                                    FRAME_BYTES)]
    with Recorder(folder) as rec:
        for n, (talker, t) in enumerate((("ann", T0), ("bob", T0 + 4))):
            rec.burst_started("ops", talker, n + 1, t, first_seq=0)
            for seq, p in enumerate(packets):
                rec.frame("ops", n + 1, seq, p, t + seq * 0.02)
            rec.burst_ended("ops", n + 1, t + len(packets) * 0.02)
    ann, bob = sorted((folder / "ops").glob("*.opus"))
    data = bytearray(ann.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a corrupted byte in the middle: one page fails its CRC
    ann.write_bytes(bytes(data))
    bob.write_bytes(bob.read_bytes()[: bob.stat().st_size * 2 // 3])  # cut short: crash
    return ann, bob


def test_damaged_recording_listed_exported_and_replayed(rserver: RecordingServer,
                                                        tmp_path: Path) -> None:
    rec = tmp_path / "damaged"
    ann, bob = make_damaged(rec)
    tokens = asyncio.run(setup_plain_group(rserver, ["ann"]))
    ann_cfg = write_credentials(tmp_path / "ann.toml", f"127.0.0.1:{rserver.port}", "ann",
                                tokens["ann"])

    def ptt(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PTT, *map(str, args)], capture_output=True, text=True,
                              timeout=60, env=rserver.cli_env(ann_cfg), check=False)

    listed = ptt("sessions", rec, "--bursts")
    assert listed.returncode == 1
    err = listed.stderr.splitlines()
    assert err[-1].startswith("error: damaged recording: ") and "more, above" in err[-1]
    assert any("CRC mismatch" in ln and ann.name in ln for ln in err)
    assert any("truncated" in ln and bob.name in ln for ln in err)
    assert "Traceback" not in listed.stderr
    assert listed.stdout.splitlines()[1].split()[0] == "ops"
    assert "ann, bob" in listed.stdout and "[incomplete]" in listed.stdout

    wav = tmp_path / "out.wav"
    exported = ptt("export", rec / "ops", "--wav", wav)
    assert exported.returncode == 1 and "damaged recording" in exported.stderr
    assert "exported to" in exported.stderr.splitlines()[-1]
    assert "ann burst 1" in exported.stdout and "bob burst 2" in exported.stdout
    with wave.open(str(wav)) as w:
        assert w.getnframes() / w.getframerate() > 4.5  # bob's readable part starts at 4 s

    replayed = ptt("replay", rec / "ops", "--group", "volunteers", "--max-gap", "0.5")
    assert replayed.returncode == 1, replayed.stderr
    assert "done: 2 of 2 bursts sent" in replayed.stdout
    assert "the readable part was replayed" in replayed.stderr
    session = load(rec / "ops")
    heard = load(tmp_path / "rec" / "volunteers")
    assert len(heard.bursts) == 2
    # bob's burst went out up to where the file was cut, packet for packet
    assert packets_of(heard)[1] == packets_of(session)[1]
