"""End-to-end group voice keys against a real `ptt server` process, real sockets, real Opus.

Issue 8's must-shows for voice: members hear speech in an encrypted group; a non-member cannot
decode the relayed ciphertext with any key it can get; a removed member that kept its keys and
still receives the packets cannot decode bursts after the rotation; forged frames are not played.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from ptt.audio.samples import make_speech_wav
from ptt.audio.streams import MemorySink, PacedSink, SilenceSource
from ptt.audio.wav import WavSource, read_wav
from ptt.client.connection import Connection
from ptt.client.keys import VoiceKeys, add_user, change_members, rekey
from ptt.client.voice import Listener, Talker
from ptt.crypto.identity import identity_from_token
from ptt.crypto.voice import VoiceKey, VoiceOpener, VoiceSealer
from ptt.errors import AuthError, ProtocolError, PttError
from ptt.protocol.client import Participation
from ptt.wire.voice import VoiceFlags, decode_voice
from tests.e2e.audiocheck import aligned_correlation
from tests.e2e.serverproc import ServerProcess, add_member_without_key

TEXT = "Volunteers at gate four, please help the visitors to the east stand. Thank you."
GROUP = "ops"


async def organise(server: ServerProcess, members: list[str], others: list[str] = ()
                   ) -> dict[str, str]:
    """The bootstrap coordinator makes coordinator 'boss' (token made on this machine); boss
    makes the users, the encrypted group, adds ``members`` and issues epoch 1."""
    cred = server.credentials
    async with Connection(server.address, cred["user"], cred["token"]) as root:
        tokens = {"boss": await add_user(root, "boss", "coordinator")}
    async with Connection(server.address, "boss", tokens["boss"]) as boss:
        for u in [*members, *others]:
            tokens[u] = await add_user(boss, u)
        await boss.admin("group.create", {"name": GROUP})
        await boss.admin("group.add", {"name": GROUP, "users": members})
        assert await rekey(boss, GROUP) == 1
        if others:  # the others have a key of their own, for another group
            await boss.admin("group.create", {"name": "side"})
            await boss.admin("group.add", {"name": "side", "users": list(others)})
            assert await rekey(boss, "side") == 1
    return tokens


def capture(conn: Connection, into: list[bytes]) -> None:
    """A forwarder: copies every voice datagram this connection receives."""
    previous = conn.on_voice

    def tap(datagram: bytes) -> None:
        into.append(datagram)
        if previous is not None:
            previous(datagram)

    conn.on_voice = tap


def test_members_hear_speech_and_a_non_member_cannot_decode_it(
        server: ServerProcess, tmp_path: Path) -> None:
    wav = tmp_path / "speech.wav"
    make_speech_wav(wav, TEXT)
    original = read_wav(wav)

    async def main() -> None:
        tokens = await organise(server, ["ann", "bob", "cat"], ["eve"])
        async with Connection(server.address, "ann", tokens["ann"]) as ann, \
                Connection(server.address, "bob", tokens["bob"]) as bob, \
                Connection(server.address, "cat", tokens["cat"]) as cat, \
                Connection(server.address, "eve", tokens["eve"]) as eve:
            for c in (ann, bob, cat):
                state = await c.join(GROUP)
                assert state.key_epoch == 1
            stop = asyncio.Event()
            sinks = [MemorySink(), MemorySink()]
            listeners = [Listener(c, GROUP, PacedSink(s)) for c, s in zip((bob, cat), sinks)]
            tasks = [asyncio.create_task(li.run(stop)) for li in listeners]
            await asyncio.sleep(0.05)  # the listeners took over on_voice
            wire: list[bytes] = []
            capture(bob, wire)  # what the relay sent: ciphertext a LAN sniffer would see too
            assert (await ann.request_floor(GROUP)).state is Participation.HAS_PERMISSION
            report = await Talker(ann, GROUP).send(WavSource(wav, realtime=True))
            await ann.release_floor(GROUP)
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*tasks)
            assert report.reason == "source ended"

            frames = len(original) // 640
            for li, sink in zip(listeners, sinks):
                assert li.frames_played >= frames - 2, (li.frames_played, frames)
                assert li.stats.undecryptable == 0
                assert aligned_correlation(original, sink.pcm()) >= 0.9
            assert len(wire) >= frames
            assert all(decode_voice(d)[0].flags & VoiceFlags.ENCRYPTED for d in wire)

            # eve, not a member: the server gives her no grant, and every key she can get
            # (her own group's key, keys made up, bob's grant if she got hold of it) fails
            with pytest.raises(PttError):
                await eve.join(GROUP)
            await eve.join("side")
            eve_keys = VoiceKeys.of(eve)
            assert eve_keys.epoch(GROUP) == 0 and eve.key_grant(GROUP) is None
            side_key = eve_keys.rings["side"].current
            assert side_key is not None and side_key.epoch == 1
            gid = decode_voice(wire[0])[0].group_id
            guesses = VoiceOpener(gid)
            guesses.install(VoiceKey(gid, 1, side_key.secret))  # her real key, relabelled
            guesses.install(VoiceKey(gid, 2, os.urandom(32)))
            eve_id = identity_from_token(tokens["eve"], "eve")
            bob_grant = bob.key_grant(GROUP)
            assert bob_grant is not None
            from ptt.crypto.groupkeys import open_grant, peek_grant
            info = peek_grant(bob_grant[1])
            with pytest.raises(AuthError):  # wrapped for bob's key, not hers
                open_grant(bob_grant[1], eve_id, "bob", {info.signer: info.signer_key},
                           GROUP, gid)
            for d in wire:
                with pytest.raises((AuthError, ProtocolError)):
                    guesses.open(d)
            assert VoiceKeys.of(bob).rings[GROUP].opener.epochs == [1]

    asyncio.run(main())


def test_a_removed_member_cannot_decode_bursts_after_the_rotation(server: ServerProcess) -> None:
    async def main() -> None:
        tokens = await organise(server, ["ann", "bob", "cat"])
        async with Connection(server.address, "ann", tokens["ann"]) as ann, \
                Connection(server.address, "bob", tokens["bob"]) as bob, \
                Connection(server.address, "cat", tokens["cat"]) as cat, \
                Connection(server.address, "boss", tokens["boss"]) as boss:
            for c in (ann, bob, cat):
                await c.join(GROUP)
            cat_keys = VoiceKeys.of(cat)
            cat_ring = cat_keys.rings[GROUP]
            assert cat_ring.current is not None and cat_ring.current.epoch == 1

            async def burst(frames: int) -> list[bytes]:
                wire: list[bytes] = []
                capture(bob, wire)
                assert (await ann.request_floor(GROUP)).state is Participation.HAS_PERMISSION
                await Talker(ann, GROUP).send(SilenceSource(), max_frames=frames)
                await ann.release_floor(GROUP)
                await asyncio.sleep(0.3)
                return wire

            before = await burst(10)
            # cat kept a copy of its opener: it decodes the burst sealed before its removal
            assert sum(1 for d in before if _opens(cat_ring.opener, d)) >= 10

            # the removal carries epoch 2 for the members that remain (one request)
            changed = await change_members(boss, GROUP, remove=["cat"])
            assert (changed["removed"], changed["epoch"]) == (["cat"], 2)
            for _ in range(50):  # the push of epoch 2 reaches the remaining members
                if VoiceKeys.of(ann).epoch(GROUP) == 2 and VoiceKeys.of(bob).epoch(GROUP) == 2:
                    break
                await asyncio.sleep(0.05)
            assert VoiceKeys.of(ann).epoch(GROUP) == 2
            assert cat_keys.epoch(GROUP) == 1  # no grant for cat

            after = await burst(10)
            assert len(after) >= 10  # the forwarder hands cat every packet bob gets
            assert all(d[3] == 2 for d in after)  # key id: sealed under epoch 2
            assert not any(_opens(cat_ring.opener, d) for d in after)
            bob_opener = VoiceKeys.of(bob).rings[GROUP].opener
            assert 2 in bob_opener.epochs

    asyncio.run(main())


def _opens(opener: VoiceOpener, datagram: bytes) -> bool:
    try:
        opener.open(datagram)
    except (AuthError, ProtocolError):
        return False
    return True


def test_forged_and_plain_frames_are_not_played_and_keyless_talk_is_refused(
        server: ServerProcess) -> None:
    async def main() -> None:
        tokens = await organise(server, ["ann", "bob"], ["dan"])
        async with Connection(server.address, "ann", tokens["ann"]) as ann, \
                Connection(server.address, "bob", tokens["bob"]) as bob, \
                Connection(server.address, "boss", tokens["boss"]) as boss:
            for c in (ann, bob):
                await c.join(GROUP)
            stop = asyncio.Event()
            listener = Listener(bob, GROUP, PacedSink(MemorySink()))
            task = asyncio.create_task(listener.run(stop))
            assert (await ann.request_floor(GROUP)).state is Participation.HAS_PERMISSION
            gid, sender, burst_id = ann.core.talk_route(GROUP)
            # frames through the real relay, sealed with a key nobody granted, or in the clear
            forged = VoiceSealer(VoiceKey(gid, 1, os.urandom(32)))
            from ptt.audio.codec import OpusEncoder
            from ptt.media.sender import Packetizer
            enc, pk = OpusEncoder(), Packetizer(gid, sender, burst_id, 0)
            for i in range(40):
                dgram = pk.packetize(enc.encode(b"\x10\x20" * 320))
                ann.send_voice(forged.seal(*decode_voice(dgram)) if i % 2 else dgram)
                await asyncio.sleep(0.01)
            await ann.release_floor(GROUP)
            await asyncio.sleep(0.4)
            stop.set()
            await task
            assert listener.frames_played == 0
            assert listener.stats.undecryptable >= 36, listener.stats
            assert VoiceKeys.of(bob).dropped_plain >= 18
            assert VoiceKeys.of(bob).dropped_sealed >= 18

        # a member without a grant of the current key (what a bare group.add left in the
        # database of a server that still took it): it may not talk in the clear
        server.stop()
        add_member_without_key(server.db, GROUP, "dan")
        server.start()
        async with Connection(server.address, "boss", tokens["boss"]) as boss:
            async with Connection(server.address, "dan", tokens["dan"]) as dan:
                assert (await dan.join(GROUP)).key_epoch == 1
                assert (await dan.request_floor(GROUP)).state is Participation.HAS_PERMISSION
                with pytest.raises(PttError, match="no key"):
                    await Talker(dan, GROUP).send(SilenceSource(), max_frames=2)
                await dan.release_floor(GROUP)
                await rekey(boss, GROUP)  # now dan gets epoch 2
                for _ in range(50):
                    if VoiceKeys.of(dan).epoch(GROUP) == 2:
                        break
                    await asyncio.sleep(0.05)
                assert VoiceKeys.of(dan).epoch(GROUP) == 2

    asyncio.run(main())


def test_keys_survive_a_server_restart_and_a_changed_member_key_is_refused(
        server: ServerProcess) -> None:
    async def first() -> dict[str, str]:
        return await organise(server, ["ann", "bob"])

    tokens = asyncio.run(first())
    server.stop()
    server.start()

    async def second() -> None:
        async with Connection(server.address, "ann", tokens["ann"]) as ann:
            state = await ann.join(GROUP)
            assert state.key_epoch == 1
            assert VoiceKeys.of(ann).epoch(GROUP) == 1  # the grant came with the Join answer
        async with Connection(server.address, "boss", tokens["boss"]) as boss:
            # boss pinned ann's key when it made her token; a server offering another is refused
            await rekey(boss, GROUP)
            from ptt.client import keys as k
            pins = k._member_pins(boss, None)
            real = pins.get("ann")
            assert real is not None
            from ptt.crypto.identity import Identity
            pins.replace("ann", Identity.from_seed(os.urandom(64)).public)
            fake = pins.get("ann")
            with pytest.raises(AuthError, match="another key for 'ann'") as err:
                await rekey(boss, GROUP)
            assert real.fingerprint in str(err.value) and fake.fingerprint in str(err.value)
            info = await boss.admin("group.keys", {"name": GROUP})
            assert info["epoch"] == 2  # the refused rekey issued nothing

    asyncio.run(second())


def test_the_server_refuses_grants_for_another_member_or_an_old_epoch(
        server: ServerProcess) -> None:
    from ptt.crypto.groupkeys import issue_group_key

    async def main() -> None:
        tokens = await organise(server, ["ann", "bob"])
        async with Connection(server.address, "boss", tokens["boss"]) as boss:
            info = await boss.admin("group.keys", {"name": GROUP})
            assert info["epoch"] == 1 and sorted(info["members"]) == ["ann", "bob"]
            assert info["missing"] == []
            me = identity_from_token(tokens["boss"], "boss")
            pubs = {u: identity_from_token(tokens[u], u).public for u in ("ann", "bob")}
            _, grants = issue_group_key(me, "boss", GROUP, info["group_id"], 2, pubs, os.urandom)
            swapped = {"ann": grants["bob"], "bob": grants["ann"]}
            with pytest.raises(PttError, match="another member"):
                await boss.admin("group.set_key", {"name": GROUP, "epoch": 2, "grants": swapped})
            _, old = issue_group_key(me, "boss", GROUP, info["group_id"], 1, pubs, os.urandom)
            with pytest.raises(PttError, match="not newer"):
                await boss.admin("group.set_key", {"name": GROUP, "epoch": 1, "grants": old})
            with pytest.raises(PttError, match="credentials|public"):
                await boss.admin("user.add", {"name": "zoe", "verifier": b"v" * 32,
                                              "salt": b"s" * 16, "iterations": 1000,
                                              "public": b"short"})
            assert (await boss.admin("group.keys", {"name": GROUP}))["epoch"] == 1

    asyncio.run(main())
