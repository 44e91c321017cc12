"""Group key lifecycle: issued and signed by a coordinator's client, wrapped for each member's
public key, stored and handed out by a server that never sees a key in the clear.

::

    coordinator client                       server                         member client
      secret = entropy(32), epoch = e+1
      for each member m (keys pinned):
        grant_m = sign(wrap(secret, m.x25519))
                        --- grants ------->  stores grant_m per (group, m)
                                             sends grant_m on Join and  --->  open_grant: signer
                                             when a new epoch arrives          trusted? for me?
                                                                              epoch newer? unwrap

A **grant** is self-contained and small (~250 bytes), so each member receives only its own, in one
datagram. Its body, signed with the coordinator's Ed25519 key, names the group, group id, epoch,
the recipient and its X25519 key, the signer, the epoch's ephemeral X25519 key and the wrapped
secret. The wrap is ECIES / sealed-box style: ``kek = HKDF(X25519(eph, recipient), salt =
eph_pub || recipient_pub, info = "ptt-group-key-wrap-v1")``, then ChaCha20-Poly1305 with the
grant's fields as associated data (each kek is used once, so the fixed nonce is safe).

What the server can and cannot do (the full argument is in docs/security.md):

* It cannot unwrap a grant (it has no member's X25519 private key) nor make one members accept
  (it has no coordinator's signing key; members accept only signers they pinned), so it can
  neither hear nor forge group voice.
* It can replay an old grant: members refuse any epoch not newer than the one they hold
  (:class:`GroupKeyring`), so a removed member's old key never comes back.
* It can withhold grants (members then stay silent for lack of a key: denial of service only),
  and it can substitute a member's public key when a coordinator fetches it. A coordinator pins
  member keys on first use (:class:`~ptt.crypto.identity.KeyPins`) and refuses changes until the
  fingerprints were compared; the very first fetch is trust on first use unless compared too.

Rotation: :func:`rotate` issues epoch + 1 with a fresh secret for the remaining members only.

Talker keys. Each grant's signed body also carries :func:`talkers_digest`: a SHA-256 over the
group, epoch and every member's Ed25519 key, as the coordinator pinned them. A member fetches the
list itself from the server (``group.keys``) and uses it only when it hashes to the digest its
grant vouches for; then a frame on the group's multicast address plays only if it verifies under
the floor holder's key in that list (``ptt.crypto.voice.verify_frame``). So the server, which
hands out the list, cannot slip in a key of its own, and one digest per grant (32 bytes) costs
what a list in every grant (n keys in each of n grants) would not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ptt.crypto.identity import Identity, PublicIdentity, verify_signature
from ptt.crypto.voice import GROUP_KEY_SIZE, VoiceKey, VoiceOpener
from ptt.errors import AuthError, ProtocolError

__all__ = [
    "MAX_GRANT_SIZE",
    "ROTATION_GRACE",
    "GrantInfo",
    "GroupKeyring",
    "issue_group_key",
    "open_grant",
    "peek_grant",
    "rotate",
    "talkers_digest",
]

GRANT_VERSION = 1
MAX_GRANT_SIZE = 1_024
ROTATION_GRACE = 60.0  # seconds an old epoch still opens: longer than a burst can last
_LABEL = "ptt-group-key-v1"
_WRAP_INFO = b"ptt-group-key-wrap-v1"
_TALKERS_LABEL = "ptt-group-talkers-v1"
DIGEST_SIZE = 32
_ZERO_NONCE = bytes(12)

Entropy = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class GrantInfo:
    """The clear fields of a grant: what the server may read to file it (unauthenticated)."""

    group: str
    group_id: int
    epoch: int
    recipient: str
    recipient_key: bytes
    signer: str
    signer_key: bytes
    eph_key: bytes
    wrapped: bytes
    talkers: bytes = b""  # talkers_digest of the members at this epoch (b"": an older grant)


def talkers_digest(group: str, group_id: int, epoch: int, talkers: Mapping[str, bytes]) -> bytes:
    """SHA-256 of the members' Ed25519 keys (user -> 32 bytes) at ``epoch``: what a grant
    vouches for, and what a member checks the list it fetched against."""
    rows = sorted([user, bytes(key)] for user, key in talkers.items())
    return hashlib.sha256(_pack([_TALKERS_LABEL, group, group_id, epoch, rows])).digest()


def _body(info: GrantInfo) -> list[Any]:
    return [_LABEL, info.group, info.group_id, info.epoch, info.recipient, info.recipient_key,
            info.signer, info.signer_key, info.eph_key]


def _kek(shared: bytes, eph_pub: bytes, recipient_pub: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=eph_pub + recipient_pub,
                info=_WRAP_INFO).derive(shared)


def _pack(obj: Any) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def _wrap_one(signer: Identity, signer_user: str, group: str, group_id: int, epoch: int,
              secret: bytes, user: str, public: PublicIdentity, eph: X25519PrivateKey,
              eph_pub: bytes, talkers: bytes) -> bytes:
    try:
        shared = eph.exchange(X25519PublicKey.from_public_bytes(public.x25519))
    except ValueError:
        raise AuthError(f"{user}'s public key is invalid") from None
    head = GrantInfo(group, group_id, epoch, user, public.x25519, signer_user,
                     signer.public.ed25519, eph_pub, b"")
    ad = _pack(_body(head))
    wrapped = ChaCha20Poly1305(_kek(shared, eph_pub, public.x25519)).encrypt(
        _ZERO_NONCE, secret, ad)
    body = _pack([*_body(head), wrapped, talkers])
    return _pack([GRANT_VERSION, body, signer.sign(body)])


def issue_group_key(
    signer: Identity,
    signer_user: str,
    group: str,
    group_id: int,
    epoch: int,
    members: Mapping[str, PublicIdentity],
    entropy: Entropy,
) -> tuple[VoiceKey, dict[str, bytes]]:
    """A fresh key for ``group`` at ``epoch`` and one signed grant per member.

    Run by a coordinator's client; ``members`` maps user name to the public identity it pinned
    (never a key fetched and not checked against the pins). ``entropy(n)`` is ``os.urandom``.
    The returned VoiceKey is the coordinator's own copy, for its talking and listening. Every
    grant vouches for the members' talker keys (:func:`talkers_digest` of ``members``).
    """
    if not 0 < epoch < 1 << 32:
        raise ValueError("epochs are 1 .. 2**32-1")
    secret = entropy(GROUP_KEY_SIZE)
    talkers = talkers_digest(group, group_id, epoch,
                             {user: pub.ed25519 for user, pub in members.items()})
    # One ephemeral key for all of the epoch's grants: each member's wrapping key still differs
    # (its own X25519 result, its key in the salt), and re-using the sender's randomness across
    # the recipients of one message is as safe as fresh randomness for each in DH-based
    # encryption (Kurosawa, PKC 2002; Bellare, Boldyreva, Staddon, PKC 2003). It saves a key
    # generation per member: a quarter of a large re-key's CPU.
    eph = X25519PrivateKey.from_private_bytes(entropy(32))
    eph_pub = eph.public_key().public_bytes_raw()
    grants = {user: _wrap_one(signer, signer_user, group, group_id, epoch, secret, user, pub,
                              eph, eph_pub, talkers)
              for user, pub in sorted(members.items())}
    return VoiceKey(group_id, epoch, secret), grants


def rotate(
    signer: Identity,
    signer_user: str,
    current: VoiceKey,
    group: str,
    members: Mapping[str, PublicIdentity],
    entropy: Entropy,
) -> tuple[VoiceKey, dict[str, bytes]]:
    """The next epoch for the members that remain (call it after removing one): a new secret,
    so nothing a removed member knows helps it with bursts sealed under the new key."""
    return issue_group_key(signer, signer_user, group, current.group_id, current.epoch + 1,
                           members, entropy)


def _split(blob: bytes) -> tuple[bytes, bytes, GrantInfo]:
    if not isinstance(blob, (bytes, bytearray)) or len(blob) > MAX_GRANT_SIZE:
        raise ProtocolError("key grant missing or too large")
    try:
        outer = msgpack.unpackb(blob, raw=False, max_bin_len=MAX_GRANT_SIZE,
                                max_str_len=MAX_GRANT_SIZE, max_array_len=16, max_map_len=0,
                                max_ext_len=0)
        version, body, sig = outer
        fields = msgpack.unpackb(body, raw=False, max_bin_len=MAX_GRANT_SIZE,
                                 max_str_len=MAX_GRANT_SIZE, max_array_len=16, max_map_len=0,
                                 max_ext_len=0)
        if len(fields) == 10:  # a grant made before talker keys: it vouches for none
            fields = [*fields, b""]
        label, group, group_id, epoch, recipient, rkey, signer, skey, eph, wrapped, talkers = \
            fields
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError):
        raise ProtocolError("malformed key grant") from None
    if (version != GRANT_VERSION or label != _LABEL or type(body) is not bytes
            or type(sig) is not bytes
            or not all(type(x) is str for x in (group, recipient, signer))
            or not all(type(x) is int for x in (group_id, epoch))
            or not all(type(x) is bytes for x in (rkey, skey, eph, wrapped, talkers))
            or len(talkers) not in (0, DIGEST_SIZE)
            or not 0 <= group_id < 1 << 32 or not 0 < epoch < 1 << 32
            or len(rkey) != 32 or len(skey) != 32 or len(eph) != 32
            or len(wrapped) != GROUP_KEY_SIZE + 16):
        raise ProtocolError("malformed key grant")
    return body, sig, GrantInfo(group, group_id, epoch, recipient, rkey, signer, skey, eph,
                                wrapped, talkers)


def peek_grant(blob: bytes) -> GrantInfo:
    """The clear fields, unverified: for the server to store a grant under (group, recipient,
    epoch), and to refuse an upload for an epoch older than the one it holds."""
    return _split(blob)[2]


def open_grant(
    blob: bytes,
    me: Identity,
    my_user: str,
    trusted_signers: Mapping[str, bytes],
    group: str,
    group_id: int,
) -> VoiceKey:
    """The key in a grant, once everything checked out.

    ``trusted_signers`` maps coordinator names to the Ed25519 keys this member pinned. AuthError
    when the signer is not trusted, the signature is wrong, the grant is for someone else or
    another key of mine, for another group, or does not unwrap; ProtocolError when malformed.
    Epoch order is :class:`GroupKeyring`'s job.
    """
    body, sig, info = _split(blob)
    if trusted_signers.get(info.signer) != info.signer_key:
        raise AuthError(f"key grant signed by '{info.signer}', not a trusted coordinator key")
    if not verify_signature(info.signer_key, sig, body):
        raise AuthError("key grant signature is wrong")
    if info.recipient != my_user or info.recipient_key != me.public.x25519:
        raise AuthError("key grant wrapped for someone else")
    if info.group != group or info.group_id != group_id:
        raise AuthError(f"key grant for group '{info.group}', expected '{group}'")
    shared = me.exchange(info.eph_key)
    ad = _pack(_body(info))
    try:
        secret = ChaCha20Poly1305(_kek(shared, info.eph_key, info.recipient_key)).decrypt(
            _ZERO_NONCE, info.wrapped, ad)
    except InvalidTag:
        raise AuthError("key grant does not unwrap") from None
    return VoiceKey(group_id, info.epoch, secret)


class GroupKeyring:
    """A member's keys for one group: the newest epoch, and the previous one for a grace period.

    :meth:`accept` every grant the server hands over; it refuses an epoch older than the newest
    (a replayed grant: the server cannot bring back a key a removed member knows) and keeps an
    identical re-sent grant harmless. ``sealer_key`` is what bursts start with; :attr:`opener`
    opens frames. Drive :meth:`handle_timer` at :meth:`get_timer` to end the grace period.
    """

    def __init__(self, group: str, group_id: int, grace: float = ROTATION_GRACE) -> None:
        self.group = group
        self.group_id = group_id
        self.grace = grace
        self.opener = VoiceOpener(group_id)
        self.current: VoiceKey | None = None
        self._retire: list[tuple[float, int]] = []  # (when, epoch)

    def accept(self, blob: bytes, me: Identity, my_user: str,
               trusted_signers: Mapping[str, bytes], now: float) -> VoiceKey:
        """Open and install a grant; returns the key now current."""
        key = open_grant(blob, me, my_user, trusted_signers, self.group, self.group_id)
        cur = self.current
        if cur is not None and key.epoch <= cur.epoch:
            if key == cur:
                return cur  # the same grant again (a retransmission)
            raise AuthError(f"key epoch {key.epoch} is not newer than {cur.epoch}")
        if cur is not None:
            self._retire.append((now + self.grace, cur.epoch))
            for when, epoch in list(self._retire):  # only one old epoch stays, whatever the rate
                if epoch != cur.epoch:
                    self.opener.retire(epoch)
                    self._retire.remove((when, epoch))
        self.opener.install(key)
        self.current = key
        return key

    @property
    def sealer_key(self) -> VoiceKey | None:
        return self.current

    def get_timer(self) -> float | None:
        return min((w for w, _ in self._retire), default=None)

    def handle_timer(self, now: float) -> None:
        for when, epoch in list(self._retire):
            if when <= now:
                self.opener.retire(epoch)
                self._retire.remove((when, epoch))
