"""HKDF-SHA256 (RFC 5869) on the standard library's HMAC, extract and expand apart.

A login derives its session key and then the channel's two directional keys from it
(``ptt.protocol.auth``, :mod:`ptt.crypto.channel`); a dead node's survivors do that thousands of
times a second. cryptography's ``HKDF`` object costs ~3.3 us a key on this machine (its object,
its algorithm object, two HMACs); the same HMACs through ``hmac.new`` ~1.5 us, and the two
directional keys share one extract: ~4.6 us a login's channel keys, ~6.6 with cryptography's
(``tests/crypto/test_kdf.py`` checks every key against cryptography's).
"""

from __future__ import annotations

import hmac

__all__ = ["HASH_SIZE", "hkdf_expand", "hkdf_extract", "hkdf_sha256"]

HASH_SIZE = 32
_NO_SALT = bytes(HASH_SIZE)  # RFC 5869 2.2: a salt not provided is HashLen zeros


def hkdf_extract(salt: bytes | None, ikm: bytes) -> bytes:
    """The pseudorandom key: HMAC-SHA256(salt, ikm); ``None`` is the RFC's absent salt."""
    return hmac.new(_NO_SALT if salt is None else salt, ikm, "sha256").digest()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """``length`` bytes of output keying material from ``prk`` for ``info`` (1-8160 bytes)."""
    if not 1 <= length <= 255 * HASH_SIZE:
        raise ValueError("HKDF-SHA256 length must be 1-8160 bytes")
    if length <= HASH_SIZE:  # one block: every key this project derives
        return hmac.new(prk, info + b"\x01", "sha256").digest()[:length]
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), "sha256").digest()
        out += block
        counter += 1
    return out[:length]


def hkdf_sha256(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 extract-and-expand."""
    if not 1 <= length <= 255 * HASH_SIZE:
        raise ValueError("HKDF-SHA256 length must be 1-8160 bytes")
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)
