"""A keyed group's packetiser seals as it builds the header: the same bytes as sealing the clear
datagram afterwards, with no decode in between, and the same bitrate figures."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import ptt.client
from ptt.crypto.voice import VoiceKey, VoiceSealer
from ptt.media.sender import Packetizer
from ptt.wire.voice import decode_voice


def frames(n: int) -> list[bytes]:
    return [os.urandom(40 + i % 30) for i in range(n)]


def test_sealing_in_the_packetiser_gives_the_bytes_of_sealing_afterwards() -> None:
    key = VoiceKey(5, 3, os.urandom(32))
    signer = Ed25519PrivateKey.from_private_bytes(os.urandom(32)).sign
    for sign in (None, signer):
        clear = Packetizer(5, 77, 1234, offsets=(1, 2))
        old_way = VoiceSealer(key, sign)  # AES-GCM-SIV and Ed25519 are deterministic
        sealing = Packetizer(5, 77, 1234, offsets=(1, 2), seal=VoiceSealer(key, sign).seal)
        data = frames(30)
        for i, f in enumerate(data):
            last = i == len(data) - 1
            expected = old_way.seal(*decode_voice(clear.packetize(f, last=last)))
            assert sealing.packetize(f, last=last) == expected
        assert sealing.bytes_sent == clear.bytes_sent  # the frame's bytes, as before sealing
        assert (sealing.seq, sealing.timestamp, sealing.ended) == (clear.seq, clear.timestamp, True)


def test_no_talker_decodes_a_datagram_to_seal_it() -> None:
    client = Path(ptt.client.__file__).parent
    for f in sorted(client.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "seal"):
                assert not any(isinstance(a, ast.Starred) and isinstance(a.value, ast.Call)
                               and getattr(a.value.func, "id", "") == "decode_voice"
                               for a in node.args), f"{f.name}:{node.lineno}"
