"""The sealed control channel on the real login of ptt.protocol.auth and real ChaCha20-Poly1305."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ptt.crypto.channel import (
    HEADER_SIZE,
    KEEPALIVE_MAGIC,
    MAX_SEALED_DATAGRAM,
    OVERHEAD,
    SEALED_MAGIC,
    Opener,
    Role,
    Sealer,
    SecureChannel,
    derive_channel_keys,
    is_keepalive,
    is_sealed,
    peek_session_id,
)
from ptt.errors import AuthError, ProtocolError
from ptt.protocol import auth
from ptt.protocol import messages as m
from ptt.protocol.messages import decode_message, encode_message
from ptt.wire.voice import VoiceHeader, encode_voice, is_voice

USER = "alice"
TOKEN = "correct-horse-battery-staple-0123"


def login(token: str = TOKEN) -> tuple[bytes, bytes]:
    """Both sides' session keys after one real login (client from ``token``, server stored)."""
    creds = auth.make_credentials(TOKEN, os.urandom(auth.SALT_SIZE), auth.MIN_ITERATIONS)
    cn, sn = os.urandom(auth.NONCE_SIZE), os.urandom(auth.NONCE_SIZE)
    client_verifier = auth.derive_verifier(token, creds.salt, creds.iterations)
    proof = auth.login_proof(client_verifier, cn, sn, USER)
    if not auth.verify_proof(creds.verifier, cn, sn, USER, proof):
        raise AuthError("login failed")
    return (auth.session_key(client_verifier, cn, sn), auth.session_key(creds.verifier, cn, sn))


def pair(sid: int = 0x1234_5678) -> tuple[SecureChannel, SecureChannel]:
    ck, sk = login()
    server = SecureChannel(Role.SERVER, sk, USER, sid)
    client = SecureChannel(Role.CLIENT, ck, USER)
    welcome = encode_message(m.Welcome(1, sid, m.Role.VOLUNTEER, 1000, 5000, ["ops"]))
    assert client.open(server.seal(welcome)) == welcome
    return client, server


# --- the primitives, checked against their RFCs -------------------------------------------------


def test_chacha20_poly1305_rfc8439_section_2_8_2() -> None:
    key = bytes(range(0x80, 0xA0))
    nonce = bytes.fromhex("070000004041424344454647")
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    plaintext = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for"
                 b" the future, sunscreen would be it.")
    expected = bytes.fromhex(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
        "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
        "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
        "3ff4def08e4b7a9de576d26586cec64b6116" "1ae10b594f09e26a7e902ecbd0600691")
    assert ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad) == expected


# --- keys ---------------------------------------------------------------------------------------


def test_directional_keys_mirror_and_differ() -> None:
    ck, sk = login()
    assert ck == sk
    c, s = derive_channel_keys(ck, USER, Role.CLIENT), derive_channel_keys(sk, USER, Role.SERVER)
    assert c.send == s.recv and c.recv == s.send and c.send != c.recv
    assert derive_channel_keys(ck, "bob", Role.CLIENT).send != c.send
    assert "secret" in repr(c) and c.send.hex() not in repr(c)


def test_every_login_gets_new_keys() -> None:
    assert login()[0] != login()[0]


# --- format -------------------------------------------------------------------------------------


def test_magic_is_neither_a_control_message_nor_voice() -> None:
    client, _server = pair()
    sealed = client.seal(encode_message(m.Heartbeat(2, 7)))
    assert is_sealed(sealed) and not is_voice(sealed)
    with pytest.raises(ProtocolError):
        decode_message(sealed)  # the old core drops it as malformed, it does not misread it
    samples = [m.Hello(1, USER, bytes(16)), m.Ack(3), m.Error(4, m.ErrorCode.NO_SESSION, "x"),
               m.FloorRequest(5, 9, "ops"), m.Welcome(1, 2, m.Role.COORDINATOR, 1, 2, [])]
    for msg in samples:
        assert not is_sealed(encode_message(msg))
    assert not is_sealed(encode_voice(VoiceHeader(1, 2, 3, 4, 5), b"x"))
    assert sealed[0] == SEALED_MAGIC == ord("S")
    assert peek_session_id(sealed) == 0x1234_5678
    assert len(sealed) == len(encode_message(m.Heartbeat(2, 7))) + OVERHEAD


def test_keepalive_marker_is_clear_and_authenticated() -> None:
    client, server = pair()
    beat = encode_message(m.Heartbeat(2, 7))
    marked = client.seal(beat, keepalive=True)
    plain = client.seal(beat)
    assert marked[0] == KEEPALIVE_MAGIC == ord("K") and plain[0] == SEALED_MAGIC
    assert is_sealed(marked) and is_keepalive(marked) and not is_keepalive(plain)
    assert not is_voice(marked) and peek_session_id(marked) == 0x1234_5678
    with pytest.raises(ProtocolError):
        decode_message(marked)
    assert len(marked) == len(plain)  # the marker costs nothing on the wire
    # the marker is part of the associated data: relabelled either way, nothing opens
    for forged in (bytes([SEALED_MAGIC]) + marked[1:], bytes([KEEPALIVE_MAGIC]) + plain[1:]):
        with pytest.raises(AuthError):
            server.open(forged)
    assert server.open(marked) == beat and server.open(plain) == beat
    back = server.seal(b"\x93\x01\x06\x02", keepalive=True)
    assert back[0] == KEEPALIVE_MAGIC and client.open(back) == b"\x93\x01\x06\x02"


def test_round_trip_both_directions_in_order_and_reordered() -> None:
    client, server = pair()
    msgs = [encode_message(m.Join(t, 1, f"g{t}")) for t in range(10)]
    sealed = [client.seal(x) for x in msgs]
    order = [3, 0, 1, 9, 2, 8, 4, 7, 5, 6]
    assert [server.open(sealed[i]) for i in order] == [msgs[i] for i in order]
    back = server.seal(b"\x93\x01\x08\x05")
    assert client.open(back) == b"\x93\x01\x08\x05"


# --- attacks ------------------------------------------------------------------------------------


def test_captured_datagrams_replayed_are_refused() -> None:
    client, server = pair()
    captured = [client.seal(encode_message(m.FloorRequest(t, 1, "ops"))) for t in range(5)]
    for d in captured:
        server.open(d)
    for d in captured:
        with pytest.raises(AuthError, match="replayed"):
            server.open(d)


def test_too_old_datagrams_are_refused() -> None:
    ck, sk = login()
    sealer = Sealer(derive_channel_keys(ck, USER, Role.CLIENT).send, 5)
    opener = Opener(derive_channel_keys(sk, USER, Role.SERVER).recv, 5, window=1024)
    first = sealer.seal(b"old")
    sealer.next_seq = 2000
    opener.open(sealer.seal(b"new"))
    with pytest.raises(AuthError, match="too old"):
        opener.open(first)  # never seen, but 2000 behind: cannot be told from a replay


def test_any_bit_flipped_anywhere_is_refused_and_moves_nothing() -> None:
    client, server = pair()
    good = client.seal(encode_message(m.FloorRequest(9, 1, "ops", m.Priority.EMERGENCY)))
    for i in range(len(good)):
        for bit in (0x01, 0x80):
            bad = bytearray(good)
            bad[i] ^= bit
            with pytest.raises((AuthError, ProtocolError)):
                server.open(bytes(bad))
    assert server.open(good)  # the forgeries did not spend its sequence number


def test_truncated_oversized_and_foreign_bytes_are_protocol_errors() -> None:
    client, server = pair()
    good = client.seal(b"x")
    for bad in (b"", good[:OVERHEAD - 1], b"S" + bytes(MAX_SEALED_DATAGRAM),
                b"\x93\x01\x05\x01" + bytes(40), b"S\x02" + good[2:]):
        with pytest.raises(ProtocolError):
            server.open(bad)


def test_a_reflected_datagram_does_not_open() -> None:
    client, _server = pair()
    to_server = client.seal(b"hello")
    with pytest.raises(AuthError):
        client.open(to_server)  # sent back to its sender: other direction's key


def test_another_session_or_user_cannot_inject() -> None:
    _client, server = pair(sid=1)
    other_client, _ = pair(sid=1)  # another login, even under the same session id
    with pytest.raises(AuthError):
        server.open(other_client.seal(b"take the floor"))
    mallory, _ = pair(sid=2)
    with pytest.raises(AuthError, match="another session"):
        server.open(mallory.seal(b"x"))


def test_an_unauthenticated_client_cannot_produce_an_accepted_datagram() -> None:
    _, server = pair()
    # it knows the format, the session id and the next sequence number, but no key
    guess = SecureChannel(Role.CLIENT, os.urandom(32), USER, None)
    guess._opener.session_id = server.session_id
    with pytest.raises(AuthError):
        server.open(guess.seal(encode_message(m.FloorRequest(1, 1, "ops"))))
    assert not server.authenticated


def test_the_welcome_authenticates_the_server_to_the_client() -> None:
    """Mutual authentication: only a holder of the verifier can seal a Welcome that opens."""
    ck, _ = login()
    client = SecureChannel(Role.CLIENT, ck, USER)
    assert not client.authenticated and client.session_id is None
    with pytest.raises(AuthError):
        client.seal(b"too early")
    # an impostor server saw Hello and Login on the wire but holds no verifier
    impostor = SecureChannel(Role.SERVER, auth.session_key(os.urandom(32), bytes(16), bytes(16)),
                             USER, 42)
    with pytest.raises(AuthError):
        client.open(impostor.seal(encode_message(m.Welcome(1, 42, m.Role.COORDINATOR, 1, 1, []))))
    assert client.session_id is None  # a failed Welcome taught it nothing
    # a login with the wrong token never gets as far
    with pytest.raises(AuthError):
        login("wrong-token-wrong-token-wrong-tok")


def test_the_real_server_welcome_binds_the_session_id() -> None:
    client, _server = pair(sid=777)
    assert client.authenticated and client.session_id == 777
    assert peek_session_id(client.seal(b"x")) == 777


def test_sealing_refuses_oversized_messages() -> None:
    client, _ = pair()
    with pytest.raises(ProtocolError):
        client.seal(bytes(MAX_SEALED_DATAGRAM - OVERHEAD + 1))
    assert len(client.seal(bytes(MAX_SEALED_DATAGRAM - OVERHEAD))) == MAX_SEALED_DATAGRAM


def test_server_must_know_the_session_id() -> None:
    ck, _ = login()
    with pytest.raises(ValueError):
        SecureChannel(Role.SERVER, ck, USER)
    assert HEADER_SIZE == 14
