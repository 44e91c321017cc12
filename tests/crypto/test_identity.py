"""Identities: RFC 7748 / RFC 8032 primitives, the 0600 key file, fingerprints, pinning."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ptt.crypto.identity import (
    Identity,
    KeyPins,
    PinStatus,
    PublicIdentity,
    identity_from_token,
    load_identity,
    load_pins,
    save_identity,
    save_pins,
    verify_signature,
)
from ptt.errors import AuthError, ConfigError, ProtocolError


def test_x25519_rfc7748_section_5_2() -> None:
    scalar = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    u = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    out = X25519PrivateKey.from_private_bytes(scalar).exchange(X25519PublicKey.from_public_bytes(u))
    assert out.hex() == "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"


def test_ed25519_rfc8032_test_1() -> None:
    sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    pub = sk.public_key().public_bytes_raw()
    assert pub.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    sig = sk.sign(b"")
    assert sig.hex() == ("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                         "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
    assert verify_signature(pub, sig, b"") and not verify_signature(pub, sig, b"x")


def test_identity_is_deterministic_from_its_seed_and_exchanges() -> None:
    seed = os.urandom(64)
    a, b = Identity.from_seed(seed), Identity.from_seed(os.urandom(64))
    assert Identity.from_seed(seed).public == a.public
    assert a.exchange(b.public.x25519) == b.exchange(a.public.x25519)
    with pytest.raises(AuthError):
        a.exchange(bytes(32))  # a low-order point: all-zero shared secret
    assert verify_signature(a.public.ed25519, a.sign(b"m"), b"m")
    assert a.public.fingerprint not in repr(a.to_bytes()) and "private" in repr(a)


def test_public_identity_bytes_and_fingerprint() -> None:
    p = Identity.from_seed(os.urandom(64)).public
    assert PublicIdentity.from_bytes(p.to_bytes()) == p
    fp = p.fingerprint
    assert len(fp) == 39 and fp.count("-") == 7
    assert Identity.from_seed(os.urandom(64)).public.fingerprint != fp
    with pytest.raises(ProtocolError):
        PublicIdentity.from_bytes(bytes(63))


def test_private_key_file_is_0600_and_never_overwritten(tmp_path: Path) -> None:
    ident = Identity.from_seed(os.urandom(64))
    path = tmp_path / "cfg" / "identity.key"
    save_identity(path, ident)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_identity(path).public == ident.public
    assert not list(path.parent.glob("*.tmp"))
    with pytest.raises(ConfigError, match="overwritten"):
        save_identity(path, Identity.from_seed(os.urandom(64)))
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_identity(path)
    path.chmod(0o600)
    path.write_bytes(b"ptt-identity-v1\nnot base64!\n")
    with pytest.raises(ConfigError, match="damaged"):
        load_identity(path)
    with pytest.raises(ConfigError):
        load_identity(tmp_path / "missing.key")


def test_pins_trust_on_first_use_then_refuse_changes() -> None:
    pins = KeyPins()
    a, b = Identity.from_seed(os.urandom(64)).public, Identity.from_seed(os.urandom(64)).public
    assert pins.check("ann", a) is PinStatus.NEW
    assert pins.check("ann", a) is PinStatus.MATCH
    assert pins.check("ann", b) is PinStatus.CHANGED
    assert pins.get("ann") == a  # a change is not adopted silently
    pins.replace("ann", b)
    assert KeyPins(pins.to_dict()).check("ann", b) is PinStatus.MATCH


def test_identity_from_token_is_stable_per_user_and_token() -> None:
    token = "x" * 32
    a = identity_from_token(token, "ann")
    assert identity_from_token(token, "ann").public == a.public  # any machine, same keys
    assert identity_from_token(token, "ben").public != a.public  # the user name is bound in
    assert identity_from_token("y" * 32, "ann").public != a.public
    # the seed is HKDF-SHA256(token, salt "ptt-identity-v1", info user), 64 bytes
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    seed = HKDF(algorithm=hashes.SHA256(), length=64, salt=b"ptt-identity-v1",
                info=b"ann").derive(token.encode())
    assert Identity.from_seed(seed).public == a.public
    with pytest.raises(ValueError):
        identity_from_token("", "ann")


def test_pins_file_round_trip_is_private_and_refused_when_readable(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "pins"
    assert load_pins(path).to_dict() == {}  # no file yet: nothing pinned
    pins = KeyPins()
    a = Identity.from_seed(os.urandom(64)).public
    pins.check("ann", a)
    save_pins(path, pins)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_pins(path).get("ann") == a
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_pins(path)
    path.chmod(0o600)
    path.write_bytes(b"ptt-pins-v1\nann notbase64!\n")
    with pytest.raises(ConfigError, match="damaged"):
        load_pins(path)
    path.write_bytes(b"something else")
    with pytest.raises(ConfigError):
        load_pins(path)
