"""Control-plane protection: every control datagram after login sealed with a per-session AEAD.

Keys. The login (``ptt.protocol.auth``) leaves both sides with ``session_key = HKDF(verifier,
client_nonce || server_nonce)``; both nonces are fresh, so every login gets a new key. From it
HKDF-SHA256 derives one ChaCha20-Poly1305 key per direction (info ``ptt-control-v1 c2s|s2c`` and
the user name), so a datagram reflected back to its sender never opens, and neither side's counter
can collide with the other's.

Wire format of a sealed control datagram::

    0       1       2               6                               14
    +-------+-------+---------------+-------------------------------+-----------------------+
    | 'S'   | ver 1 | session_id u32| seq u64 (per direction)       | AEAD(msgpack) + tag16 |
    +-------+-------+---------------+-------------------------------+-----------------------+

``'S'`` (0x53) is a msgpack positive fixint, so it is never the first byte of a plain control
message (always a msgpack array, 0x90-0x9f or 0xdc/0xdd) nor of a voice datagram (``'V'``): one
socket still carries all three. The 14-byte header is the associated data, the nonce is four zero
bytes then ``seq``: the sender's counter only goes up, so a nonce never repeats under one key.
Overhead: 30 bytes per datagram.

Replay. The receiver keeps a :class:`~ptt.crypto.replay.ReplayWindow` of 1024 and refuses a
sequence number it has accepted or one too old to tell; the window moves only after the tag
verified, so forgeries cost the receiver nothing but one AEAD attempt. Retransmissions keep
working: a request resent after a loss is sealed again with a new number, and the server's
response cache resends the *sealed* bytes, which the client accepts once.

Mutual authentication. The server answers a good Login with a sealed ``Welcome`` (seq 0 of the
server-to-client direction). Only a holder of the user's verifier can derive the key, so a Welcome
that opens proves to the client that it talks to the real server; a client must refuse a plain
Welcome once it supports sealing. The client's first sealed request proves the same to the
server (the Login proof already did). :class:`SecureChannel` learns the session id from it.

Sans-I/O: no clock, no randomness (nonces are counters), no sockets.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ptt.crypto.kdf import hkdf_expand, hkdf_extract
from ptt.crypto.replay import DEFAULT_WINDOW, MAX_SEQ, ReplayWindow
from ptt.errors import AuthError, ProtocolError
from ptt.wire.control import MAX_DATAGRAM

__all__ = [
    "CHANNEL_VERSION",
    "HEADER_SIZE",
    "KEEPALIVE_MAGIC",
    "MAX_SEALED_DATAGRAM",
    "OVERHEAD",
    "REPLAYED",
    "SEALED_MAGIC",
    "SEALED_MAGICS",
    "TAG_SIZE",
    "ChannelKeys",
    "Opener",
    "Role",
    "Sealer",
    "SecureChannel",
    "derive_channel_keys",
    "is_keepalive",
    "is_sealed",
    "peek_session_id",
]

SEALED_MAGIC = 0x53  # "S"
# "K": a sealed Heartbeat or HeartbeatAck. Keepalives are most of a big server's traffic; marked
# in the clear (and authenticated: the header is associated data), the server can answer a floor
# request queued behind thousands of them first. Their size and rhythm told them apart anyway.
KEEPALIVE_MAGIC = 0x4B
SEALED_MAGICS = (SEALED_MAGIC, KEEPALIVE_MAGIC)
CHANNEL_VERSION = 1
HEADER = struct.Struct("!BBIQ")
HEADER_SIZE = HEADER.size  # 14
TAG_SIZE = 16
OVERHEAD = HEADER_SIZE + TAG_SIZE
MAX_SEALED_DATAGRAM = MAX_DATAGRAM + OVERHEAD  # the largest control message, sealed
KEY_SIZE = 32
_INFO = b"ptt-control-v1 "
_C2S = b"c2s"
REPLAYED = "replayed or too old control datagram"  # starts the AuthError of a refused replay
_S2C = b"s2c"


class Role(Enum):
    """Which end of the channel this is: it picks the sending and receiving keys."""

    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class ChannelKeys:
    """The two directional keys of one session, from this end's point of view."""

    send: bytes
    recv: bytes

    def __repr__(self) -> str:  # keys never reach a log by accident
        return "ChannelKeys(<secret>)"


def derive_channel_keys(session_key: bytes, user: str, role: Role) -> ChannelKeys:
    """Directional keys from ``ptt.protocol.auth.session_key(verifier, cn, sn)`` of this login.

    ``user`` is the canonical name the login proved; binding it keeps two users' channels apart
    even if (impossibly) their session keys met.
    """
    if len(session_key) < 32:
        raise ValueError("a session key has at least 32 bytes")
    name = user.encode("utf-8")
    prk = hkdf_extract(None, session_key)  # HKDF with no salt, one extract for both keys
    c2s = hkdf_expand(prk, _INFO + _C2S + b" " + name, KEY_SIZE)
    s2c = hkdf_expand(prk, _INFO + _S2C + b" " + name, KEY_SIZE)
    return ChannelKeys(c2s, s2c) if role is Role.CLIENT else ChannelKeys(s2c, c2s)


def is_sealed(data: bytes) -> bool:
    """True when ``data`` is a sealed control datagram (it may still fail to open)."""
    return len(data) > 0 and data[0] in SEALED_MAGICS


def is_keepalive(data: bytes) -> bool:
    """True when ``data`` is marked as a sealed keepalive (a Heartbeat or its ack)."""
    return len(data) > 0 and data[0] == KEEPALIVE_MAGIC


def peek_session_id(data: bytes) -> int:
    """The session id of a sealed datagram, for the server to find the key; unauthenticated."""
    if len(data) < OVERHEAD or data[0] not in SEALED_MAGICS or data[1] != CHANNEL_VERSION:
        raise ProtocolError("not a sealed control datagram")
    return int.from_bytes(data[2:6], "big")


def _nonce(seq: int) -> bytes:
    return b"\0\0\0\0" + seq.to_bytes(8, "big")


class Sealer:
    """Seals one direction's datagrams under one key with a counter that never repeats."""

    __slots__ = ("_aead", "next_seq", "session_id")

    def __init__(self, key: bytes, session_id: int, first_seq: int = 0) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.session_id = session_id
        self.next_seq = first_seq

    def seal(self, plaintext: bytes, keepalive: bool = False) -> bytes:
        """One sealed datagram carrying ``plaintext`` (an encoded control message); marked as
        a keepalive (KEEPALIVE_MAGIC) when it carries a Heartbeat or HeartbeatAck."""
        if len(plaintext) + OVERHEAD > MAX_SEALED_DATAGRAM:
            raise ProtocolError(f"control message too large to seal ({len(plaintext)} bytes)")
        seq = self.next_seq
        if seq > MAX_SEQ:  # 2**64 datagrams: unreachable, but a repeat would be fatal
            raise AuthError("sequence numbers exhausted: log in again for a new key")
        self.next_seq = seq + 1
        magic = KEEPALIVE_MAGIC if keepalive else SEALED_MAGIC
        header = HEADER.pack(magic, CHANNEL_VERSION, self.session_id, seq)
        return header + self._aead.encrypt(_nonce(seq), plaintext, header)


class Opener:
    """Opens the other direction's datagrams: authenticity, session id, then replay."""

    __slots__ = ("_aead", "session_id", "window")

    def __init__(self, key: bytes, session_id: int | None, window: int = DEFAULT_WINDOW) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.session_id = session_id  # None: learn it from the first datagram that opens
        self.window = ReplayWindow(window)

    def open(self, data: bytes) -> tuple[int, bytes]:
        """``(seq, plaintext)`` of an authentic, fresh datagram.

        ProtocolError for bytes that are not a sealed datagram at all; AuthError for one that
        fails authentication, names another session, or is replayed or too old. Either way
        nothing changed: drop the datagram without answering.
        """
        if len(data) > MAX_SEALED_DATAGRAM:
            raise ProtocolError(f"sealed datagram too large ({len(data)} bytes)")
        if len(data) < OVERHEAD:
            raise ProtocolError(f"sealed datagram too short ({len(data)} bytes)")
        magic, version, session_id, seq = HEADER.unpack_from(data)
        if magic not in SEALED_MAGICS or version != CHANNEL_VERSION:
            raise ProtocolError("not a sealed control datagram of this version")
        if self.session_id is not None and session_id != self.session_id:
            raise AuthError("sealed datagram for another session")
        if not self.window.check(seq):
            raise AuthError(f"{REPLAYED} (seq {seq})")
        header = bytes(data[:HEADER_SIZE])
        try:
            plaintext = self._aead.decrypt(_nonce(seq), bytes(data[HEADER_SIZE:]), header)
        except InvalidTag:
            raise AuthError("control datagram failed authentication") from None
        self.window.commit(seq)
        self.session_id = session_id
        return seq, plaintext


class SecureChannel:
    """Both directions of one session, for one end.

    Server: ``SecureChannel(Role.SERVER, key, user, session_id)`` right after a good Login, then
    ``seal(encode_message(Welcome))``. Client: ``SecureChannel(Role.CLIENT, key, user)`` as soon
    as it sent its Login (it can derive the key then); :meth:`open` of the Welcome authenticates
    the server and teaches the channel the session id; from then on :meth:`seal` every request.
    """

    __slots__ = ("_opener", "_sealer", "role", "user")

    def __init__(
        self,
        role: Role,
        session_key: bytes,
        user: str,
        session_id: int | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        if role is Role.SERVER and session_id is None:
            raise ValueError("the server assigns the session id, so it must pass it")
        keys = derive_channel_keys(session_key, user, role)
        self.role = role
        self.user = user
        self._sealer = Sealer(keys.send, session_id or 0)
        self._opener = Opener(keys.recv, session_id, window)

    @property
    def session_id(self) -> int | None:
        """The session id, once assigned (server) or learnt from the Welcome (client)."""
        return self._opener.session_id

    @property
    def authenticated(self) -> bool:
        """True once a datagram from the peer opened: the peer holds the key."""
        return self._opener.window.top >= 0

    @property
    def received_top(self) -> int:
        """The highest sequence number opened from the peer (-1: none yet)."""
        return self._opener.window.top

    def seal(self, plaintext: bytes, keepalive: bool = False) -> bytes:
        """One sealed datagram to the peer (``keepalive``: a Heartbeat or HeartbeatAck, marked
        KEEPALIVE_MAGIC). A client must first have opened the Welcome."""
        sid = self._opener.session_id
        if sid is None:
            raise AuthError("no session yet: the server's Welcome has not been opened")
        self._sealer.session_id = sid
        return self._sealer.seal(plaintext, keepalive)

    def open(self, data: bytes) -> bytes:
        """The plaintext of an authentic, fresh datagram from the peer; see :meth:`Opener.open`."""
        return self._opener.open(data)[1]

    @staticmethod
    def peek_seq(data: bytes) -> int:
        """The sequence number in a sealed datagram's header (unauthenticated until opened)."""
        return int(HEADER.unpack_from(data)[3])
