"""HKDF-SHA256 on stdlib HMAC gives cryptography's keys (RFC 5869 vectors and a sweep)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ptt.crypto.channel import Role, derive_channel_keys
from ptt.crypto.kdf import hkdf_expand, hkdf_extract, hkdf_sha256

# RFC 5869 appendix A, the SHA-256 cases 1-3 (case 3: no salt, no info)
RFC5869 = [
    (bytes([0x0B] * 22), bytes(range(0x0D)), bytes(range(0xF0, 0xFA)), 42,
     "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
     "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"),
    (bytes(range(0x00, 0x50)), bytes(range(0x60, 0xB0)), bytes(range(0xB0, 0x100)), 82,
     "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
     "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09"
     "da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"),
    (bytes([0x0B] * 22), b"", b"", 42,
     "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
     "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "prk", "okm"), RFC5869)
def test_rfc5869_vectors(ikm: bytes, salt: bytes, info: bytes, length: int, prk: str,
                         okm: str) -> None:
    assert hkdf_extract(salt, ikm).hex() == prk
    assert hkdf_expand(bytes.fromhex(prk), info, length).hex() == okm
    assert hkdf_sha256(ikm, salt, info, length).hex() == okm


def test_every_length_and_salt_as_cryptography_derives() -> None:
    # deterministic inputs of many sizes: one block, several, the no-salt form the channel uses
    for n in range(60):
        seed = hashlib.sha256(n.to_bytes(2, "big")).digest()
        ikm, info = seed * (1 + n % 3), seed[: n % 33]
        salt = None if n % 4 == 0 else seed[::-1][: n % 40]
        length = (1, 16, 31, 32, 33, 64, 100, 255)[n % 8]
        want = HKDF(hashes.SHA256(), length, salt, info).derive(ikm)
        assert hkdf_sha256(ikm, salt, info, length) == want, n


def test_channel_keys_are_cryptographys() -> None:
    key = hashlib.sha256(b"a session key").digest()
    for user in ("ann", "zoë", "x" * 64):
        name = user.encode("utf-8")
        c2s = HKDF(hashes.SHA256(), 32, None, b"ptt-control-v1 c2s " + name).derive(key)
        s2c = HKDF(hashes.SHA256(), 32, None, b"ptt-control-v1 s2c " + name).derive(key)
        client = derive_channel_keys(key, user, Role.CLIENT)
        server = derive_channel_keys(key, user, Role.SERVER)
        assert (client.send, client.recv) == (c2s, s2c)
        assert (server.send, server.recv) == (s2c, c2s)


def test_length_out_of_range_is_refused() -> None:
    for length in (0, 255 * 32 + 1):
        with pytest.raises(ValueError, match="1-8160"):
            hkdf_sha256(b"k", None, b"", length)
