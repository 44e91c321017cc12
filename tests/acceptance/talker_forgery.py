"""A member forging the holder's voice on a multicast LAN, against the real commands: run
inside a network namespace of its own by ``test_talker_signatures.py``.

    python -m tests.acceptance.talker_forgery forge_cli '{"tmp": "/tmp/x"}'   # one JSON line

A real ``ptt server``, ``ptt listen`` (bob) and ``ptt talk --wav`` (ann) as processes, each user
with its own home; eve, a member holding the group key, is a client in this process that sniffs
ann's frames on the group address and multicasts a 1 kHz tone sealed with the group key as ann's,
a few frames ahead of her. Never run outside a namespace: it multicasts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ptt.audio.codec import OpusEncoder
from ptt.audio.samples import make_speech_wav
from ptt.audio.streams import ToneSource
from ptt.audio.wav import read_wav
from ptt.client.connection import Connection
from ptt.client.keys import VoiceKeys
from ptt.media.sender import Packetizer
from ptt.net.multicast import open_sender_socket, resolve_interface
from ptt.wire.voice import decode_voice, peek_route
from tests.acceptance.harness import Site, finish
from tests.e2e.audiocheck import aligned_correlation
from tests.net import scenarios
from tests.net.scenarios import TEXT, scenario

GROUP = "lan"
AHEAD = 3  # eve's sequence numbers run this far ahead of ann's
FORGED = 100


async def _forge(site: Site, wav: Path) -> dict[str, Any]:
    host, port = site.address.rsplit(":", 1)
    eve = Connection((host, int(port)), "eve", site.tokens["eve"])
    await eve.open()
    keys = VoiceKeys.of(eve, signers={})  # whatever coordinator signs: eve is a real member
    sent = 0
    try:
        await eve.join(GROUP)
        path = await eve.wait_voice_path(GROUP)
        state = eve.core.groups[GROUP].state
        assert state is not None and state.mcast_addr is not None
        dest = (state.mcast_addr, state.mcast_port)
        heard: list[bytes] = []
        eve.on_voice = heard.append  # what she sniffs of ann's burst
        bob = site.spawn("bob", "-v", "listen", GROUP, "--out", str(site.root / "bob.wav"),
                         "--bursts", "1", "--duration", "40")
        await asyncio.sleep(3.0)  # bob has joined and chosen his path
        ann = site.spawn("ann", "talk", GROUP, "--wav", str(wav))
        for _ in range(1000):  # until ann's first frames pass by (bounded: 10 s)
            if heard:
                break
            await asyncio.sleep(0.01)
        assert heard, "eve heard nothing of ann"
        gid, sender, burst = peek_route(heard[-1])
        seq = int.from_bytes(heard[-1][16:18], "big")
        tx = open_sender_socket(resolve_interface("127.0.0.1"), 1)
        tone, codec = ToneSource(1000.0, -3.0, realtime=False), OpusEncoder()
        pk = Packetizer(gid, sender, burst, 0)
        for _ in range(seq + 1 + AHEAD):
            pk.packetize(codec.encode(await tone.read()))
        sealer = keys.sealer(GROUP)
        assert sealer is not None
        for _ in range(FORGED):
            tx.sendto(sealer.seal(*decode_voice(pk.packetize(codec.encode(await tone.read())))),
                      dest)
            sent += 1
            await asyncio.sleep(0.02)
        tx.close()
        talk = await asyncio.to_thread(finish, ann, 30.0)
        listen = await asyncio.to_thread(finish, bob, 45.0)
    finally:
        await eve.close()
    return {"eve_path": path, "forged": sent, "talk": talk[0], "listen": listen[0],
            "listen_out": listen[1][-2000:], "listen_err": listen[2][-2000:]}


@scenario
async def forge_cli(args: dict[str, Any]) -> dict[str, Any]:
    site = Site(Path(args["tmp"])).start()
    try:
        site.add_users("ann", "bob", "eve")
        site.group(GROUP, "ann", "bob", "eve", mode="multicast")
        wav = make_speech_wav(site.root / "speech.wav", TEXT)
        r = await _forge(site, wav)
    finally:
        site.stop()
    heard = read_wav(site.root / "bob.wav")
    r["correlation"] = round(aligned_correlation(read_wav(wav), heard), 4)
    r["server_log"] = site.server.output()[-1500:]
    return r


if __name__ == "__main__":
    scenarios.main()
