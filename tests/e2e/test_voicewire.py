"""Every voice path in encrypted groups, against a real `ptt server` with the real CLI.

- `ptt record` of an encrypted group opens the frames with its member's key and stores playable
  Ogg Opus holding the speech (a plain group beside it is recorded as it was sent).
- `ptt replay` into an encrypted group, as a temporary user: it is keyed in, seals what it sends
  (the members' recorder gets the very packets of the source, bit for bit), and is keyed out.
- The server makes no tokens: a wire user.add without credentials is refused in one line.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from ptt.audio.samples import make_speech_wav
from ptt.audio.wav import WavSource, read_wav
from ptt.client.connection import Connection
from ptt.client.keys import VoiceKeys, add_user, rekey
from ptt.client.recorder import GroupRecorder
from ptt.client.voice import Talker
from ptt.config import write_credentials
from ptt.errors import PttError
from ptt.protocol.client import Participation
from ptt.record.catalog import Session, load
from ptt.record.export import export_wav
from ptt.wire.voice import VoiceFlags, decode_voice
from tests.e2e.audiocheck import aligned_correlation
from tests.e2e.serverproc import PTT, ServerProcess

FRAME = 0.02
SECRET, OPEN = "ops", "lobby"  # an encrypted group (keyed), a plain one
TEXT = "Unit seven, report to gate four."


def cli_env(server: ServerProcess, config: Path) -> dict[str, str]:
    env = server.env()
    env["PTT_CONFIG"] = str(config)
    return env


async def organise(server: ServerProcess) -> dict[str, str]:
    """ann (talker), rec1 and rec2 (recorders), bob; ``ops`` keyed at epoch 1, ``lobby`` plain."""
    cred = server.credentials
    async with Connection(server.address, cred["user"], cred["token"]) as coord:
        tokens = {u: await add_user(coord, u) for u in ("ann", "bob", "rec1", "rec2")}
        await coord.admin("group.create", {"name": SECRET})
        await coord.admin("group.add", {"name": SECRET, "users": ["ann", "bob", "rec1"]})
        assert await rekey(coord, SECRET) == 1
        await coord.admin("group.create", {"name": OPEN, "plain": True})
        await coord.admin("group.add", {"name": OPEN, "users": ["ann", "rec2"]})
    return tokens


async def page(conn: Connection, group: str, wav: Path, wire: list[bytes]) -> int:
    """Ask, send the WAV in real time, release; returns the packets sent (closing one too).
    ``wire`` gets every datagram as it left."""
    send = conn.send_voice

    def tap(datagram: bytes) -> None:
        wire.append(datagram)
        send(datagram)

    conn.send_voice = tap  # type: ignore[method-assign]
    try:
        assert (await conn.request_floor(group)).state is Participation.HAS_PERMISSION
        report = await Talker(conn, group).send(WavSource(wav, realtime=True))
        await conn.release_floor(group)
    finally:
        conn.send_voice = send  # type: ignore[method-assign]
    assert report.reason == "source ended"
    return report.frames + 1


def check_burst(session: Session, packets: int, original: bytes, tmp: Path) -> None:
    """One complete burst of ann's of ``packets`` packets, valid Ogg Opus holding the speech."""
    assert session.all_problems() == [] and session.complete
    (burst,) = session.bursts
    assert burst.talker == "ann"
    assert len(burst.stream.packets) == packets
    assert abs(burst.duration - packets * FRAME) <= FRAME, (burst.duration, packets)
    opusinfo = shutil.which("opusinfo")
    if opusinfo is not None:  # an independent parser as well, where opus-tools is installed
        info = subprocess.run([opusinfo, burst.path], capture_output=True, text=True,
                              check=False)
        assert info.returncode == 0 and "WARNING" not in info.stdout, info.stdout
    out = tmp / f"{burst.path.stem}.wav"
    result = export_wav(burst.path, out)
    assert result.problems == []
    with wave.open(str(out)) as w:
        assert abs(w.getnframes() / w.getframerate() - packets * FRAME) <= FRAME
    assert aligned_correlation(original, read_wav(out)) >= 0.9


def test_ptt_record_stores_the_speech_of_an_encrypted_group_and_of_a_plain_one(
        server: ServerProcess, tmp_path: Path) -> None:
    wav = make_speech_wav(tmp_path / "speech.wav", TEXT)
    original = read_wav(wav)
    out = tmp_path / "member"

    async def main() -> tuple[dict[str, int], list[bytes], list[str]]:
        tokens = await organise(server)
        recorders = []
        for user, group in (("rec1", SECRET), ("rec2", OPEN)):
            cfg = write_credentials(tmp_path / user / "client.toml", f"127.0.0.1:{server.port}",
                                    user, tokens[user])
            recorders.append(await asyncio.create_subprocess_exec(
                PTT, "record", group, "--out", str(out), env=cli_env(server, cfg),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE))
        for r in recorders:
            assert r.stderr is not None
            line = await asyncio.wait_for(r.stderr.readline(), 15)
            assert line.startswith(b"recording "), line  # logged in, joined, holds the key
        sent, wire = {}, {SECRET: [], OPEN: []}
        async with Connection(server.address, "ann", tokens["ann"]) as ann:
            for group in (SECRET, OPEN):
                await ann.join(group)
                sent[group] = await page(ann, group, wav, wire[group])
                await asyncio.sleep(0.3)
        outputs = []
        for r in recorders:
            r.send_signal(signal.SIGTERM)
            stdout, stderr = await asyncio.wait_for(r.communicate(), 15)
            assert r.returncode == 143, stderr.decode()  # stopped by SIGTERM, files finished
            outputs.append(stdout.decode())
        return sent, wire[SECRET] + [b"--"] + wire[OPEN], outputs

    sent, wire, outputs = asyncio.run(main())
    split = wire.index(b"--")
    secret_wire, open_wire = wire[:split], wire[split + 1:]
    # what went over the network: sealed in the encrypted group, in the clear in the plain one
    assert all(decode_voice(d)[0].flags & VoiceFlags.ENCRYPTED for d in secret_wire)
    assert not any(decode_voice(d)[0].flags & VoiceFlags.ENCRYPTED for d in open_wire)
    for text in outputs:
        assert "recorded 1 bursts" in text and "did not open" not in text, text
    # the member's key pinned the coordinator's signing key next to its config
    assert (tmp_path / "rec1" / "coordinator-keys.pins").is_file()
    for group in (SECRET, OPEN):
        check_burst(load(out / group), sent[group], original, tmp_path)


def test_replay_into_an_encrypted_group_is_sealed_and_heard_bit_for_bit(
        server: ServerProcess, tmp_path: Path) -> None:
    wav = make_speech_wav(tmp_path / "speech.wav", TEXT)
    source, heard = tmp_path / "source", tmp_path / "heard"
    coordinator = server.db.parent / "coordinator.toml"

    async def record_source() -> dict[str, str]:
        """A recording of ann's burst made by a member of the plain group."""
        tokens = await organise(server)
        async with Connection(server.address, "rec2", tokens["rec2"]) as rec, \
                Connection(server.address, "ann", tokens["ann"]) as ann:
            recorder = GroupRecorder(rec, OPEN, source)
            await rec.join(OPEN)
            await ann.join(OPEN)
            stop = asyncio.Event()
            task = asyncio.create_task(recorder.run(stop))
            await page(ann, OPEN, wav, [])
            await asyncio.sleep(0.3)
            stop.set()
            assert (await task).bursts == 1
        return tokens

    async def replay(tokens: dict[str, str]) -> tuple[list[bytes], int, int, str]:
        async with Connection(server.address, "bob", tokens["bob"]) as bob:
            await bob.join(SECRET)
            recorder = GroupRecorder(bob, SECRET, heard)
            stop = asyncio.Event()
            task = asyncio.create_task(recorder.run(stop))
            await asyncio.sleep(0.05)  # the recorder took over on_voice
            wire: list[bytes] = []
            opened = bob.on_voice
            assert opened is not None

            def tap(datagram: bytes) -> None:  # what the relay sent bob, then the recorder
                wire.append(datagram)
                opened(datagram)

            bob.on_voice = tap
            proc = await asyncio.create_subprocess_exec(
                PTT, "replay", str(source / OPEN), "--group", SECRET, "--as", "replayer",
                env=cli_env(server, coordinator), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, stderr.decode()
            await asyncio.sleep(0.5)  # the re-key after the temporary user left reaches bob
            stop.set()
            report = await task
            assert report.undecryptable == 0
            return wire, VoiceKeys.of(bob).epoch(SECRET), report.bursts, stdout.decode()

    tokens = asyncio.run(record_source())
    wire, epoch, bursts, out = asyncio.run(replay(tokens))
    assert "done: 1 of 1 bursts sent" in out, out
    assert bursts == 1
    assert wire and all(decode_voice(d)[0].flags & VoiceFlags.ENCRYPTED for d in wire)
    # keyed in when added (epoch 2) and out when removed (epoch 3): the replayer's key is old
    assert epoch == 3
    src, got = load(source / OPEN), load(heard / SECRET)
    assert got.all_problems() == []
    assert [b.talker for b in got.bursts] == ["replayer"]
    assert ([p.data for p in got.bursts[0].stream.packets]
            == [p.data for p in src.bursts[0].stream.packets])  # bit for bit, through the seal
    users = subprocess.run([PTT, "user", "list"], capture_output=True, text=True, timeout=30,
                           env=cli_env(server, coordinator), check=True)
    assert "replayer" not in users.stdout


OLD_CLIENT = """
import sys
from ptt.client import keys

async def add_user(conn, name, role="volunteer", iterations=None, *, pins=None):
    # what a client from before end-to-end keys sent: a name, and the server made the token
    return (await conn.admin("user.add", {"name": name, "role": role}))["token"]

keys.add_user = add_user
from ptt.cli.main import main
main(sys.argv[1:])
"""


def test_the_server_makes_no_token_for_a_wire_user_add(server: ServerProcess) -> None:
    coordinator = server.db.parent / "coordinator.toml"
    old = subprocess.run([sys.executable, "-c", OLD_CLIENT, "user", "add", "zed"],
                         capture_output=True, text=True, timeout=30,
                         env=cli_env(server, coordinator), check=False)
    # the server answers INVALID, which the CLI reports as a refused value (exit code 2)
    assert old.returncode == 2, (old.returncode, old.stderr)
    assert "Traceback" not in old.stderr and old.stdout == ""
    (line,) = old.stderr.splitlines()
    assert line.startswith("error: user.add needs the credentials made by the coordinator's "
                           "client"), line

    async def main() -> list[str]:
        cred = server.credentials
        async with Connection(server.address, cred["user"], cred["token"]) as coord:
            with pytest.raises(PttError, match="needs the credentials"):
                await coord.admin("user.add", {"name": "zoe", "role": "volunteer"})
            token = await add_user(coord, "amy")  # made here: accepted
            assert token
            return [u["name"] for u in (await coord.admin("user.list", {}))["users"]]

    assert sorted(asyncio.run(main())) == ["amy", "coordinator"]
    # and the real CLI makes users
    made = subprocess.run([PTT, "user", "add", "kim"], capture_output=True, text=True,
                          timeout=30, env=cli_env(server, coordinator), check=False)
    assert made.returncode == 0, made.stderr
    assert "Token (shown only this once)" in made.stdout


def test_event_replay_in_an_encrypted_group_sends_sealed_silence(server: ServerProcess) -> None:
    """The simulated users of ``ptt replay --events`` talk as members do: sealed frames."""
    from ptt.client.replay import EventReplayer
    from ptt.record.replay import FloorAction

    async def main() -> None:
        tokens = await organise(server)
        async with Connection(server.address, "ann", tokens["ann"]) as ann, \
                Connection(server.address, "bob", tokens["bob"]) as bob:
            for c in (ann, bob):
                await c.join(SECRET)
            wire: list[bytes] = []
            bob.on_voice = wire.append
            script = [FloorAction(0.0, "ann", "request"), FloorAction(0.6, "ann", "release")]
            outcomes = await EventReplayer({"ann": ann}, SECRET).play(script, tail=0.3)
            assert [what for _, _, what in outcomes] == ["granted"]
            assert len(wire) >= 20
            keys = VoiceKeys.of(bob)
            opened = [keys.open_voice(d) for d in wire]
            assert all(o is not None for o in opened)
            assert all(decode_voice(d)[0].flags & VoiceFlags.ENCRYPTED for d in wire)

    asyncio.run(main())
