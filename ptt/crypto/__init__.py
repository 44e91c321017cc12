"""Cryptographic building blocks of ptt, sans-I/O like ``ptt.protocol``, which uses them.

* :mod:`ptt.crypto.channel`: the sealed control channel after login (per-direction ChaCha20-
  Poly1305 keys from the login's session key, a 64-bit counter, a replay window).
* :mod:`ptt.crypto.kdf`: HKDF-SHA256 on the standard library's HMAC (the login's keys).
* :mod:`ptt.crypto.replay`: the RFC 4303/6479 sliding replay window.
* :mod:`ptt.crypto.voice`: per-frame AES-256-GCM-SIV for group voice under a per-group key.
* :mod:`ptt.crypto.identity`: a client's X25519 + Ed25519 identity, fingerprints, pinning.
* :mod:`ptt.crypto.groupkeys`: coordinator-issued, per-member wrapped group keys; rotation.

No module here reads a clock, draws randomness or opens a socket: callers pass ``now`` and
``entropy`` (``os.urandom``). The design and threat model are in docs/security.md.
"""
