"""Text pages sealed end to end with a group's key: the server stores and forwards ciphertext.

The page key is derived from the group key of one epoch (``VoiceKey``), apart from the voice key
by its HKDF label, and a page is ``nonce (12) || ChaCha20-Poly1305(text)`` with the group id, the
epoch, the sender's name and the urgent flag as associated data: a server (or anyone without
the key) can neither read a page nor move it to another group, epoch or sender, nor change its
urgency. The nonce is random (96 bits; a group sends far fewer than 2**32 pages under one key).

Sans-I/O like the rest of ``ptt.crypto``: the caller passes the randomness.
"""

from __future__ import annotations

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ptt.crypto.voice import VoiceKey
from ptt.errors import AuthError, ProtocolError

__all__ = ["MAX_PAGE_BODY", "MAX_PAGE_BYTES", "MAX_PAGE_CHARS", "SEAL_OVERHEAD", "open_page",
           "page_text", "seal_page"]

MAX_PAGE_CHARS = 1_000  # characters (code points) of a page, in any script
MAX_PAGE_BYTES = 4 * MAX_PAGE_CHARS  # its UTF-8 at most
NONCE_SIZE = 12
SEAL_OVERHEAD = NONCE_SIZE + 16  # the nonce and the Poly1305 tag
MAX_PAGE_BODY = MAX_PAGE_BYTES + SEAL_OVERHEAD  # what travels and is stored, sealed or not
_INFO = b"ptt-page-v1"


def _aead(key: VoiceKey) -> ChaCha20Poly1305:
    secret = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                  info=_INFO + key.group_id.to_bytes(4, "big")).derive(key.secret)
    return ChaCha20Poly1305(secret)


def _ad(key: VoiceKey, sender: str, urgent: bool) -> bytes:
    return bytes(msgpack.packb([key.group_id, key.epoch, sender, urgent]))


def page_text(data: bytes) -> str:
    """The text of a page's UTF-8 bytes; ProtocolError when it is too long or not UTF-8. The
    byte count is checked before anything is decoded."""
    if len(data) > MAX_PAGE_BYTES:
        raise ProtocolError(f"page too long: {len(data)} bytes, at most {MAX_PAGE_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("page text is not UTF-8") from None
    if len(text) > MAX_PAGE_CHARS:
        raise ProtocolError(f"page too long: {len(text)} characters, at most {MAX_PAGE_CHARS}")
    if not text.strip():
        raise ProtocolError("empty page")
    return text


def seal_page(key: VoiceKey, sender: str, urgent: bool, text: str,
              entropy: bytes) -> bytes:
    """``text`` sealed for the group of ``key``; ``entropy``: 12 random bytes (the nonce)."""
    if len(entropy) != NONCE_SIZE:
        raise ValueError(f"a page nonce has {NONCE_SIZE} bytes")
    data = text.encode("utf-8")
    page_text(data)  # the same limits as a plain page
    return entropy + _aead(key).encrypt(entropy, data, _ad(key, sender, urgent))


def open_page(key: VoiceKey, sender: str, urgent: bool, body: bytes) -> str:
    """The text of a sealed page; AuthError when it does not open with ``key`` (another key,
    another sender or urgency, altered)."""
    if not SEAL_OVERHEAD < len(body) <= MAX_PAGE_BODY:
        raise ProtocolError(f"sealed page of {len(body)} bytes")
    try:
        data = _aead(key).decrypt(body[:NONCE_SIZE], body[NONCE_SIZE:], _ad(key, sender, urgent))
    except InvalidTag:
        raise AuthError("page does not open with the group key (altered or another key)") from None
    return page_text(data)
