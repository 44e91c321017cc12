"""The real window under Xvfb in encrypted groups: it plays a sealed burst, refuses frames in the
clear, and pins the coordinator's signing key next to its config file, as the CLI does."""

from __future__ import annotations

import asyncio
import tkinter as tk
from pathlib import Path

import numpy as np

from ptt.audio.streams import MemorySink, PacedSink, ToneSource
from ptt.client.connection import Connection
from ptt.client.keys import SIGNER_PINS, VoiceKeys, rekey
from ptt.client.voice import Talker
from ptt.config import load_client_config, write_credentials
from ptt.crypto.identity import identity_from_token, load_pins
from ptt.desktop.engine import AudioFactory
from ptt.desktop.model import TalkState
from ptt.desktop.window import DesktopWindow
from ptt.protocol.client import Participation
from ptt.wire.voice import VoiceFlags, decode_voice
from tests.desktop.conftest import GROUPS, Peer, pump
from tests.e2e.serverproc import ServerProcess
from tests.e2e.test_floor_over_udp import talk

TONE_HZ = 440.0
RATE = 16_000


async def _key_groups(server: ServerProcess) -> None:
    cred = server.credentials
    async with Connection(server.address, cred["user"], cred["token"]) as coord:
        for g in GROUPS:
            assert await rekey(coord, g) == 1


def _dominant_hz(pcm: bytes) -> float:
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * RATE / len(x))


def test_window_plays_a_burst_from_an_encrypted_group(display: str, server: ServerProcess,
                                                      tokens: dict[str, str],
                                                      tmp_path: Path) -> None:
    asyncio.run(_key_groups(server))
    config_path = tmp_path / "ann" / "client.toml"
    write_credentials(config_path, f"127.0.0.1:{server.port}", "ann", tokens["ann"])
    config = load_client_config(config_path)
    speaker = MemorySink()
    audio = AudioFactory(source=lambda: ToneSource(660.0, -12.0, realtime=True),
                         sink=lambda: PacedSink(speaker))
    bob = Peer(server, "bob", tokens["bob"])
    root = tk.Tk()
    root.geometry("+0+0")
    win = DesktopWindow(root, config, audio=audio, config_path=config_path)
    try:
        assert pump(root, 10, lambda: all(r.joined for r in win.model.groups.values())
                    and len(win.model.groups) == 2 and win.view().state is TalkState.IDLE)
        # as the other window tests do: Tk's focus bookkeeping across windows made and
        # destroyed in one process otherwise crashes a later focus -force (Tk 8.6 under Xvfb)
        root.focus_force()
        keys = win.engine.keys
        assert keys is not None
        assert pump(root, 3, lambda: keys.epoch("volunteers") == 1)
        mixer = win.engine.mixer

        # frames in the clear in a keyed group (a forger, or an old client): never played
        assert bob.run(bob.conn.request_floor("volunteers")).state is \
            Participation.HAS_PERMISSION
        bob.run(talk(bob.conn, "volunteers", 0.4))
        bob.run(bob.conn.release_floor("volunteers"))
        assert pump(root, 2, lambda: mixer.undecryptable >= 15), mixer.undecryptable
        assert mixer.stats("volunteers")[0] == 0

        # a sealed burst of a tone: heard, in full
        async def bob_talks() -> list[bytes]:
            sent: list[bytes] = []
            send = bob.conn.send_voice

            def tap(datagram: bytes) -> None:
                sent.append(datagram)
                send(datagram)

            bob.conn.send_voice = tap  # type: ignore[method-assign]
            try:
                got = await bob.conn.request_floor("volunteers")
                assert got.state is Participation.HAS_PERMISSION
                await Talker(bob.conn, "volunteers").send(
                    ToneSource(TONE_HZ, -10.0, frames=75, realtime=True))
                await bob.conn.release_floor("volunteers")
            finally:
                bob.conn.send_voice = send  # type: ignore[method-assign]
            return sent

        start = len(speaker.frames)
        sending = bob.spawn(bob_talks())
        assert pump(root, 6, lambda: sending.done() and mixer.stats("volunteers")[0] >= 70), \
            mixer.stats("volunteers")
        sent = sending.result(1)
        assert len(sent) == 76  # 75 frames and the closing one
        assert all(decode_voice(d)[0].flags & VoiceFlags.ENCRYPTED for d in sent)
        assert VoiceKeys.of(bob.conn).epoch("volunteers") == 1
        pump(root, 0.3)
        played = [f for f in speaker.frames[start:]
                  if np.abs(np.frombuffer(f, "<i2")).max() > 3000]
        assert len(played) >= 70, len(played)
        assert abs(_dominant_hz(b"".join(played)) - TONE_HZ) < 20

        # the grant's signer is pinned next to the config, as 'ptt listen' would have it
        pins = config_path.parent / SIGNER_PINS
        assert pins.is_file()
        cred = server.credentials
        pinned = load_pins(pins).get(cred["user"])
        assert pinned is not None
        assert pinned.ed25519 == identity_from_token(cred["token"], cred["user"]).public.ed25519
    finally:
        if root.winfo_exists():
            win.close()
        bob.close()
