"""A client's long-term identity: an X25519 key (to receive group keys) and an Ed25519 key (to sign
the group keys a coordinator issues), with fingerprints people can compare and key pinning.

The private half lives only in the client's config directory (``identity.key``, mode 0600, refused
like ssh refuses a key others can read); the public half (64 bytes) is registered with the server,
which hands it to coordinators. Because the server relays public keys, it could substitute its own:
:class:`KeyPins` is the answer (trust on first use, then any change is refused until a person
compares fingerprints), see docs/security.md.

Key generation takes its randomness from the caller (``Identity.from_seed(os.urandom(64))``), like
the rest of ptt's sans-I/O code; only :func:`save_identity` and :func:`load_identity` touch files.

A member's identity is derived from its login token (:func:`identity_from_token`): the token is made
on the coordinator's machine (``ptt.client.keys.add_user``), which can therefore pin the member's
public key before the server ever sees it, and the member needs no key file of its own. The server
holds only the PBKDF2 verifier of the token, from which the identity cannot be derived.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

# keys to and from bytes by the *_bytes_raw() methods: the serialization package imports the SSH,
# RSA, DSA and EC modules, ~9 ms of every ptt process that loads identities
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ptt.errors import AuthError, ConfigError, ProtocolError

__all__ = [
    "IDENTITY_FILE",
    "IDENTITY_SALT",
    "SEED_SIZE",
    "Identity",
    "KeyPins",
    "PinStatus",
    "PublicIdentity",
    "identity_from_token",
    "load_identity",
    "load_pins",
    "save_identity",
    "save_pins",
    "verify_signature",
]

IDENTITY_FILE = "identity.key"
SEED_SIZE = 64  # 32 bytes for each private key
PUBLIC_SIZE = 64
IDENTITY_SALT = b"ptt-identity-v1"  # domain separation from the login verifier's PBKDF2
_FILE_MAGIC = b"ptt-identity-v1\n"
_PINS_MAGIC = b"ptt-pins-v1\n"


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    """What the server stores and coordinators wrap group keys for."""

    x25519: bytes
    ed25519: bytes

    def __post_init__(self) -> None:
        if len(self.x25519) != 32 or len(self.ed25519) != 32:
            raise ProtocolError("public identity keys have 32 bytes each")

    def to_bytes(self) -> bytes:
        return self.x25519 + self.ed25519

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicIdentity:
        """ProtocolError unless ``data`` is exactly 64 bytes."""
        if len(data) != PUBLIC_SIZE:
            raise ProtocolError(f"public identity of {len(data)} bytes, expected {PUBLIC_SIZE}")
        return cls(bytes(data[:32]), bytes(data[32:]))

    @property
    def fingerprint(self) -> str:
        """128 bits of SHA-256 in 8 groups of base32, for people to read to each other."""
        digest = hashlib.sha256(b"ptt-fingerprint-v1" + self.to_bytes()).digest()[:20]
        text = base64.b32encode(digest).decode("ascii").lower()[:32]
        return "-".join(text[i:i + 4] for i in range(0, 32, 4))


class Identity:
    """A private identity. Never log it; :meth:`to_bytes` only for :func:`save_identity`."""

    __slots__ = ("_ed", "_x", "public")

    def __init__(self, x25519: X25519PrivateKey, ed25519: Ed25519PrivateKey) -> None:
        self._x = x25519
        self._ed = ed25519
        self.public = PublicIdentity(
            x25519.public_key().public_bytes_raw(),
            ed25519.public_key().public_bytes_raw(),
        )

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """A new identity from :data:`SEED_SIZE` random bytes (``os.urandom(64)``)."""
        if len(seed) != SEED_SIZE:
            raise ValueError(f"an identity seed has {SEED_SIZE} bytes")
        return cls(X25519PrivateKey.from_private_bytes(seed[:32]),
                   Ed25519PrivateKey.from_private_bytes(seed[32:]))

    def to_bytes(self) -> bytes:
        return self._x.private_bytes_raw() + self._ed.private_bytes_raw()

    def exchange(self, peer_x25519: bytes) -> bytes:
        """X25519 with a peer's public key; AuthError for a low-order (all-zero) result."""
        try:
            return self._x.exchange(X25519PublicKey.from_public_bytes(peer_x25519))
        except ValueError:
            raise AuthError("invalid X25519 public key") from None

    def sign(self, message: bytes) -> bytes:
        return self._ed.sign(message)

    def __repr__(self) -> str:
        return f"Identity(<private>, fingerprint={self.public.fingerprint})"


def identity_from_token(token: str, user: str) -> Identity:
    """The identity of ``user`` whose login token is ``token``: HKDF-SHA256(token, salt
    :data:`IDENTITY_SALT`, info = user name) as the seed.

    Tokens carry 192 random bits (``auth.new_token``), so a fast KDF is enough: guessing the
    token is the only way in, and a slow KDF would not make that any harder. The user name is
    bound in, so the same token never gives two users the same keys.
    """
    if not isinstance(token, str) or not token or not isinstance(user, str) or not user:
        raise ValueError("an identity needs a token and a user name")
    seed = HKDF(algorithm=hashes.SHA256(), length=SEED_SIZE, salt=IDENTITY_SALT,
                info=user.encode("utf-8")).derive(token.encode("utf-8"))
    return Identity.from_seed(seed)


def verify_signature(ed25519_public: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is ``ed25519_public``'s over ``message``."""
    try:
        Ed25519PublicKey.from_public_bytes(ed25519_public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- the private key on disk -------------------------------------------------------------------


def save_identity(path: Path, identity: Identity) -> None:
    """Write the private identity to ``path`` with mode 0600, refusing to overwrite one.

    The file is created with its final mode (no window in which others could read it) and
    written completely before it gets its name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        raise ConfigError(f"{path} exists: an identity is never overwritten silently")
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_FILE_MAGIC + base64.b64encode(identity.to_bytes()) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # fails if someone created ``path`` meanwhile
    finally:
        tmp.unlink(missing_ok=True)


def load_identity(path: Path) -> Identity:
    """Read an identity written by :func:`save_identity`; ConfigError if others may read it."""
    path = Path(path)
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read identity {path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"identity {path} is accessible by others: chmod 600 it")
    if not data.startswith(_FILE_MAGIC):
        raise ConfigError(f"{path} is not a ptt identity")
    try:
        seed = base64.b64decode(data[len(_FILE_MAGIC):].strip(), validate=True)
        return Identity.from_seed(seed)
    except ValueError:
        raise ConfigError(f"{path} is damaged") from None


# --- pinning -----------------------------------------------------------------------------------


class PinStatus(Enum):
    NEW = "new"  # never seen: pinned now (trust on first use)
    MATCH = "match"  # the key pinned before
    CHANGED = "changed"  # another key than pinned: refuse until a person confirms


class KeyPins:
    """user -> public identity, as first seen. Persist :meth:`to_dict` in the config directory.

    Coordinators pin members' keys before wrapping group keys for them; members pin coordinators'
    keys before accepting group keys signed by them. A CHANGED key is never used automatically:
    :meth:`replace` is for after the fingerprints were compared out of band.
    """

    def __init__(self, pins: dict[str, bytes] | None = None) -> None:
        self._pins: dict[str, bytes] = dict(pins or {})

    def check(self, user: str, public: PublicIdentity) -> PinStatus:
        """Compare with the pin, pinning a first-seen key."""
        pinned = self._pins.get(user)
        if pinned is None:
            self._pins[user] = public.to_bytes()
            return PinStatus.NEW
        return PinStatus.MATCH if pinned == public.to_bytes() else PinStatus.CHANGED

    def get(self, user: str) -> PublicIdentity | None:
        pinned = self._pins.get(user)
        return PublicIdentity.from_bytes(pinned) if pinned is not None else None

    def replace(self, user: str, public: PublicIdentity) -> None:
        """Pin a new key for ``user`` after a person verified its fingerprint."""
        self._pins[user] = public.to_bytes()

    def to_dict(self) -> dict[str, bytes]:
        return dict(self._pins)


def save_pins(path: Path, pins: KeyPins) -> None:
    """Write ``pins`` to ``path`` (mode 0600), replacing the file atomically.

    Pins are not secret, but whoever can change them can make this client trust a substituted
    key, so the file is kept as private as the identity.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = [_PINS_MAGIC]
    for user, public in sorted(pins.to_dict().items()):
        lines.append(user.encode("utf-8") + b" " + base64.b64encode(public) + b"\n")
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"".join(lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_pins(path: Path) -> KeyPins:
    """The pins saved at ``path`` (empty when there is no file yet); ConfigError when others may
    write or read it, or it is damaged."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return KeyPins()
    except OSError as exc:
        raise ConfigError(f"cannot read key pins {path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"key pins {path} are accessible by others: chmod 600 it")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key pins {path}: {exc.strerror}") from None
    if not data.startswith(_PINS_MAGIC):
        raise ConfigError(f"{path} is not a ptt key pin file")
    pins: dict[str, bytes] = {}
    try:
        for line in data[len(_PINS_MAGIC):].splitlines():
            if not line.strip():
                continue
            user, b64 = line.split(b" ", 1)
            pins[user.decode("utf-8")] = PublicIdentity.from_bytes(
                base64.b64decode(b64.strip(), validate=True)).to_bytes()
    except (ValueError, ProtocolError):
        raise ConfigError(f"{path} is damaged") from None
    return KeyPins(pins)
