"""Per-frame AEAD for group voice, under a per-group key the server never holds.

A sealed voice datagram keeps the 22-byte header of ``ptt.wire.voice`` in the clear, so the
relay and multicast forward it as they do a clear one (``peek_route`` reads group, sender and burst;
nothing is decrypted or re-encrypted on the way)::

    0      1      2      3      4              8              12             16     18            22
    +------+------+------+------+--------------+--------------+--------------+------+--------------+--------------------+
    | 'V'  | ver  |flags |key id| group_id u32 | sender   u32 | burst_id u32 |seq16 | timestamp u32| AES-GCM-SIV(payload) + tag16
    +------+------+------+------+--------------+--------------+--------------+------+--------------+--------------------+

* ``flags`` has ENCRYPTED set; the reserved byte 3 becomes the **key id**, the low 8 bits of the
  key's epoch, so a receiver picks the right key while a rotation is under way.
* The header is the associated data (but for the SIGNED flag, which the talker's signature
  covers): group, sender, burst, seq, timestamp, END_OF_BURST and the key id cannot be changed
  without the frame failing, and a frame cannot be moved to another group (the AEAD key is also
  derived per group id and epoch).
* The nonce is ``epoch u16 || sender u32 || burst_id u32 || seq u16``, unique per frame under one
  key as long as (sender, burst) pairs are not reused and seq does not wrap. Both are promises of
  the *server*, which assigns session and burst ids and which we do not trust; so the AEAD is
  AES-256-GCM-SIV (RFC 8452), whose failure under a repeated nonce is to reveal that two frames
  were identical, not the key stream or the authentication key. :class:`VoiceSealer` refuses
  repeats it can see anyway (a burst id reused, seq going back or wrapping).
* Overhead: 16 bytes per frame (80 signed). Cost: ~5 us to seal or open a 20 ms frame
  (``bench_crypto``); a signature ~130 us to make, ~0.5 ms to check (``bench_voice_auth``).

Replay. A frame replayed inside its burst is refused by a per-burst window; a whole burst replayed
later (a hostile server re-announcing an old burst) is refused because :class:`VoiceOpener`
remembers the bursts that ended, up to :data:`ENDED_MEMORY` of them per group.

Talker signatures. Any member holds the group key and could therefore seal frames that appear to
come from another member. The relay forwards only frames with the holder's session MAC, but
multicast listeners hear members directly; so a talker signs every frame it seals with its own
Ed25519 key (its identity's, ``ptt.crypto.identity``), flag SIGNED, the signature after the
ciphertext::

    header (22, SIGNED set) | AES-GCM-SIV(payload) + tag16 | Ed25519(label || header || ciphertext)

The relay hands its unicast members the frame without the signature (they have the server's
word for the sender: it checked the session MAC), SIGNED cleared, so a talker's uplink carries
the 64 bytes and relay listeners' downlinks do not (``ptt.wire.voice.strip_signature``).

:func:`verify_frame` checks it against the key of the member the floor names; which key that is
comes from a list of the members' keys that the coordinator's grant vouches for
(``ptt.crypto.groupkeys.talkers_digest``). The label keeps frame signatures apart from the grant
signatures the same key makes as a coordinator. Every frame is signed on its own (not a hash
chain signed every Nth frame) so that a lost datagram costs only itself: docs/benchmarks.md
has the costs that decided it.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ptt.crypto.replay import ReplayWindow
from ptt.errors import AuthError, ProtocolError
from ptt.wire.voice import (
    HEADER_SIZE,
    MAX_VOICE_DATAGRAM,
    SIGNATURE_SIZE,
    VoiceFlags,
    VoiceHeader,
    pack_header,
    peek_key_id,
    sealed_body,
    split_signature,
    unpack_header,
    unsigned_header,
)

__all__ = [
    "ENDED_MEMORY",
    "SIGNATURE_SIZE",
    "TAG_SIZE",
    "VoiceCipher",
    "VoiceKey",
    "VoiceOpener",
    "VoiceSealer",
    "sign_frame",
    "verify_frame",
]

TAG_SIZE = 16
GROUP_KEY_SIZE = 32
ENDED_MEMORY = 4_096  # ended bursts remembered per group, against replays of whole bursts
LIVE_BURSTS = 4  # bursts heard at once (a pre-empted burst's late frames overlap the next one)
BURST_WINDOW = 256  # frames of reordering tolerated within a burst (~5 s at 20 ms)
MAX_FRAMES = 1 << 16  # seq is 16 bits and must not wrap under one key within one burst
_NONCE = struct.Struct("!HIIH")
_INFO = b"ptt-voice-v1"
_SIGNED = int(VoiceFlags.SIGNED)
_KNOWN_FLAGS = int(VoiceFlags.END_OF_BURST | VoiceFlags.PROBE | VoiceFlags.ENCRYPTED
                   | VoiceFlags.SIGNED)
TALKER_LABEL = b"ptt-talker-frame-v1\x00"  # never the start of a grant body (a msgpack array)
Signer = Callable[[bytes], bytes]


@dataclass(frozen=True, slots=True)
class VoiceKey:
    """One epoch of one group's key: the 32 secret bytes from a key envelope (``groupkeys``)."""

    group_id: int
    epoch: int
    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != GROUP_KEY_SIZE:
            raise ValueError(f"a group key has {GROUP_KEY_SIZE} bytes")
        if not 0 <= self.epoch < 1 << 32 or not 0 <= self.group_id < 1 << 32:
            raise ValueError("group id and epoch are 32-bit unsigned")

    @property
    def key_id(self) -> int:
        """What the header carries: the epoch's low byte."""
        return self.epoch & 0xFF

    def __repr__(self) -> str:
        return f"VoiceKey(group_id={self.group_id}, epoch={self.epoch}, <secret>)"


class VoiceCipher:
    """Seal and open frames under one :class:`VoiceKey`; stateless apart from the key."""

    __slots__ = ("_aead", "key")

    def __init__(self, key: VoiceKey) -> None:
        self.key = key
        info = _INFO + key.group_id.to_bytes(4, "big") + key.epoch.to_bytes(4, "big")
        aead_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
            key.secret)
        self._aead = AESGCMSIV(aead_key)

    def _nonce(self, sender: int, burst_id: int, seq: int) -> bytes:
        return _NONCE.pack(self.key.epoch & 0xFFFF, sender, burst_id, seq)

    def seal(self, header: VoiceHeader, payload: bytes) -> bytes:
        """The datagram for ``header`` (ENCRYPTED added, key id set) with ``payload`` sealed."""
        if header.group_id != self.key.group_id:
            raise ValueError("frame for another group than the key's")
        if header.flags & VoiceFlags.PROBE:
            raise ValueError("probes carry no audio and stay in the clear")
        flags = header.flags | VoiceFlags.ENCRYPTED
        seq = header.seq & 0xFFFF
        head = pack_header(VoiceHeader(header.group_id, header.sender, header.burst_id, seq,
                                       header.timestamp, flags), self.key.key_id)
        out = head + self._aead.encrypt(self._nonce(header.sender, header.burst_id, seq),
                                        payload, unsigned_header(head))
        size = len(out) + (SIGNATURE_SIZE if flags & _SIGNED else 0)
        if size > MAX_VOICE_DATAGRAM:
            raise ValueError(f"sealed frame of {size} bytes exceeds {MAX_VOICE_DATAGRAM}")
        return out

    def open(self, datagram: bytes) -> tuple[VoiceHeader, bytes]:
        """Header and plaintext payload; ProtocolError if malformed, AuthError if not authentic."""
        header, key_id = _parse(datagram)
        if header.group_id != self.key.group_id or key_id != self.key.key_id:
            raise AuthError("voice frame under another key")
        try:
            payload = self._aead.decrypt(
                self._nonce(header.sender, header.burst_id, header.seq), sealed_body(datagram),
                unsigned_header(datagram))
        except InvalidTag:
            raise AuthError("voice frame failed authentication") from None
        return header, payload


def _parse(datagram: bytes) -> tuple[VoiceHeader, int]:
    """Header and key id of a sealed frame. Its associated data is the header with SIGNED left
    out (``ptt.wire.voice.unsigned_header``), so that the relay may hand its unicast members the
    frame without the signature and it still opens; the signature itself covers the flag."""
    if not HEADER_SIZE + TAG_SIZE <= len(datagram) <= MAX_VOICE_DATAGRAM:
        raise ProtocolError(f"sealed voice datagram of {len(datagram)} bytes")
    try:
        header, key_id = unpack_header(datagram)
    except ProtocolError:
        raise ProtocolError("not a voice datagram of this version") from None
    flags = int(header.flags)
    if not flags & VoiceFlags.ENCRYPTED or flags & VoiceFlags.PROBE or flags & ~_KNOWN_FLAGS:
        raise ProtocolError("not an encrypted voice frame")
    if flags & _SIGNED and len(datagram) < HEADER_SIZE + TAG_SIZE + SIGNATURE_SIZE:
        raise ProtocolError("signed voice frame too short")
    return header, key_id


def sign_frame(sign: Signer, datagram: bytes) -> bytes:
    """A sealed frame with SIGNED set (before sealing: the flag is in the associated data), and
    the talker's signature ``sign(label || datagram)`` appended."""
    return datagram + sign(TALKER_LABEL + datagram)


def verify_frame(ed25519_public: bytes, datagram: bytes) -> bool:
    """True when ``datagram`` (a sealed frame as the talker made it: no session MAC) carries
    SIGNED and a valid signature of ``ed25519_public``."""
    parts = split_signature(datagram)
    if parts is None:
        return False
    signed, signature = parts
    try:
        Ed25519PublicKey.from_public_bytes(ed25519_public).verify(signature, TALKER_LABEL + signed)
    except (InvalidSignature, ValueError):
        return False
    return True


class VoiceSealer:
    """The talker's side for one group: seals with the newest key and refuses nonce reuse.

    ``install(key)`` whenever a key envelope opens (rotation); ``seal(header, payload)`` for every
    frame. A burst keeps the key it started with, so a rotation never splits a burst between
    keys; the next burst uses the new key. With ``signer`` (the talker identity's ``sign``)
    every frame is also signed (:func:`sign_frame`).
    """

    __slots__ = ("_burst", "_burst_cipher", "_cipher", "_last_seq", "_signer", "_used")

    def __init__(self, key: VoiceKey, signer: Signer | None = None) -> None:
        self._signer = signer
        self._cipher = VoiceCipher(key)
        self._burst: tuple[int, int] | None = None
        self._burst_cipher = self._cipher
        self._last_seq = -1
        self._used: OrderedDict[tuple[int, int, int], None] = OrderedDict()

    @property
    def key(self) -> VoiceKey:
        """The key new bursts are sealed with."""
        return self._cipher.key

    def install(self, key: VoiceKey) -> None:
        """Seal bursts that start from now on with ``key`` (an epoch newer than the current)."""
        if key.group_id != self._cipher.key.group_id:
            raise ValueError("key for another group")
        if key.epoch <= self._cipher.key.epoch:
            raise AuthError(f"key epoch {key.epoch} is not newer than {self._cipher.key.epoch}")
        self._cipher = VoiceCipher(key)

    def seal(self, header: VoiceHeader, payload: bytes) -> bytes:
        """One sealed frame. AuthError if it would repeat a nonce: seq going back or wrapping
        within a burst, or a burst id this sealer already finished under the same key."""
        burst = (header.sender, header.burst_id)
        if burst != self._burst:
            used = (self._cipher.key.epoch, *burst)
            if used in self._used:
                raise AuthError(f"burst {header.burst_id} already sealed under this key")
            self._used[used] = None
            if len(self._used) > ENDED_MEMORY:
                self._used.popitem(last=False)
            self._burst, self._burst_cipher, self._last_seq = burst, self._cipher, -1
        if not self._last_seq < header.seq < MAX_FRAMES:
            raise AuthError(f"seq {header.seq} after {self._last_seq}: the nonce would repeat")
        self._last_seq = header.seq
        if self._signer is None:
            return self._burst_cipher.seal(header, payload)
        signed = VoiceHeader(header.group_id, header.sender, header.burst_id, header.seq,
                             header.timestamp, header.flags | VoiceFlags.SIGNED)
        return sign_frame(self._signer, self._burst_cipher.seal(signed, payload))


class VoiceOpener:
    """A listener's side for one group: the live keys by key id, and replay memory.

    ``install(key)`` for every envelope opened (the keyring in ``groupkeys`` decides which keys
    stay live and calls :meth:`retire`); ``open(datagram)`` for every frame with ENCRYPTED set.
    A frame with ENCRYPTED clear must not be played in a group that has a key.
    """

    __slots__ = ("_ciphers", "_ended", "_live", "group_id")

    def __init__(self, group_id: int) -> None:
        self.group_id = group_id
        self._ciphers: dict[int, VoiceCipher] = {}
        self._live: OrderedDict[tuple[int, int, int], ReplayWindow] = OrderedDict()
        self._ended: OrderedDict[tuple[int, int, int], None] = OrderedDict()

    def install(self, key: VoiceKey) -> None:
        """Accept frames under ``key`` (replacing an older key with the same id)."""
        if key.group_id != self.group_id:
            raise ValueError("key for another group")
        self._ciphers[key.key_id] = VoiceCipher(key)

    def retire(self, epoch: int) -> None:
        """Stop accepting frames under ``epoch`` (grace after a rotation is over)."""
        c = self._ciphers.get(epoch & 0xFF)
        if c is not None and c.key.epoch == epoch:
            del self._ciphers[epoch & 0xFF]

    @property
    def epochs(self) -> list[int]:
        """The epochs currently accepted."""
        return sorted(c.key.epoch for c in self._ciphers.values())

    def open(self, datagram: bytes) -> tuple[VoiceHeader, bytes]:
        """Header and payload of an authentic, fresh frame.

        ProtocolError: malformed. AuthError: unknown key id, failed authentication, replayed
        frame, or a frame of a burst that ended. Drop either way.
        """
        key_id = peek_key_id(datagram)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise AuthError(f"no key with id {key_id} for this group")
        header, _ = _parse(datagram)
        burst = (cipher.key.epoch, header.sender, header.burst_id)
        if burst in self._ended:
            raise AuthError(f"frame of ended burst {header.burst_id}")
        window = self._live.get(burst)
        if window is not None and not window.check(header.seq):
            raise AuthError(f"replayed voice frame (seq {header.seq})")
        header, payload = cipher.open(datagram)  # nothing below runs for a forgery
        if window is None:
            window = self._live[burst] = ReplayWindow(BURST_WINDOW)
            while len(self._live) > LIVE_BURSTS:
                self._end(next(iter(self._live)))
        # END_OF_BURST does not end the burst here: its late, reordered frames are still welcome,
        # and the window already refuses any frame seen twice
        window.commit(header.seq)
        return header, payload

    def end_burst(self, sender: int, burst_id: int) -> None:
        """The floor says this burst is over (FloorIdle, FloorTaken by another): refuse its frames
        from now on, under every live key."""
        for c in self._ciphers.values():
            self._end((c.key.epoch, sender, burst_id))

    def _end(self, burst: tuple[int, int, int]) -> None:
        self._live.pop(burst, None)
        self._ended[burst] = None
        self._ended.move_to_end(burst)
        while len(self._ended) > ENDED_MEMORY:
            self._ended.popitem(last=False)
