"""Login challenge-response, sans-I/O: the token never travels.

::

    client                                              server (stores salt, iterations, verifier)
      Hello(user, client_nonce)            ------>
                                           <------      Challenge(server_nonce, salt, iterations)
      verifier = PBKDF2-HMAC-SHA256(token, salt, iterations)
      proof = HMAC-SHA256(verifier, "ptt-login" || client_nonce || server_nonce || user)
      Login(user, client_nonce, server_nonce, proof) ------>
                                                        same HMAC from the stored verifier,
                                                        hmac.compare_digest, server nonce used once

Both nonces are exactly :data:`NONCE_SIZE` bytes, so the concatenation is unambiguous; ``user`` is
the canonical (PRECIS-mapped) name from :func:`ptt.names.user_name`, UTF-8 encoded.

What this protects and what it does not, honestly:

* An eavesdropper never sees the token or the verifier, and a captured ``Login`` cannot be replayed:
  its proof covers the server nonce, which the server issues fresh and accepts once
  (:class:`PendingLogins`).
* The stored **verifier is password-equivalent**: whoever reads the database can compute valid
  proofs and log in as any user without ever learning a token. PBKDF2 only slows down guessing the
  token *from* the verifier, and tokens are 192 random bits anyway. Keep the database private
  (the store creates it in a private directory); a scheme that survives a database leak (SRP/OPAQUE-
  like, or public-key logins) is later work.
* The server is not authenticated to the client, and nothing here encrypts traffic. An active
  attacker who plays the server learns a proof for *its* nonces, worthless elsewhere, but can
  still relay a live login. :func:`session_key` exists for the later encryption that closes this.

No randomness and no clock in here: the caller draws nonces, salts and tokens with ``secrets``
(``secrets.token_bytes(NONCE_SIZE)``, ``secrets.token_bytes(SALT_SIZE)``,
``new_token(secrets.token_bytes(TOKEN_BYTES))``) and passes ``now`` to :class:`PendingLogins`.

Iterations: :data:`DEFAULT_ITERATIONS` = 50,000. Measured on this project's 2-core CI machine one
derivation costs ~7-9 ms of CPU (100,000: ~13 ms; 20,000: ~3 ms). It runs once when a user is created and
once per login *on the client*; the server's per-login work is two HMACs (microseconds), so many
clients logging in at once cost the server nothing extra. With random 192-bit tokens the count is
defence in depth rather than the protection, so it is kept well under a human-noticeable delay.
Benchmarks that log in thousands of simulated clients should derive each verifier once and call
:func:`login_proof` directly.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from ptt.crypto.kdf import hkdf_sha256
from ptt.errors import AuthError, ValidationError
from ptt.protocol.messages import Challenge, Hello, Login

__all__ = [
    "DEFAULT_ITERATIONS",
    "MAX_ITERATIONS",
    "MIN_ITERATIONS",
    "NONCE_SIZE",
    "SALT_SIZE",
    "TOKEN_BYTES",
    "Credentials",
    "PendingLogin",
    "PendingLogins",
    "UsedNonces",
    "answer_challenge",
    "challenge_nonce",
    "challenge_stamp",
    "check_challenge",
    "check_token",
    "decoy_salt",
    "decoy_verifier",
    "derive_verifier",
    "invite_nonce",
    "is_invite",
    "login_proof",
    "make_credentials",
    "new_token",
    "nonce_age",
    "session_key",
    "verify_login",
    "verify_proof",
]

DEFAULT_ITERATIONS = 50_000
MIN_ITERATIONS = 1_000  # below this the verifier is close to a plain hash; tests/benches use it
MAX_ITERATIONS = 5_000_000  # a client refuses more: a hostile server could stall it for minutes
NONCE_SIZE = 16
SALT_SIZE = 16
MIN_SALT_SIZE = 8
MAX_SALT_SIZE = 64
TOKEN_BYTES = 24  # like secrets.token_urlsafe(24): 32 characters, 192 bits
MIN_TOKEN_BYTES = 16
MAX_TOKEN_LEN = 256
VERIFIER_SIZE = 32
SESSION_KEY_SIZE = 32
LOGIN_TTL = 10.0  # seconds a Challenge stays answerable
MAX_PENDING = 4_096
# a stateless server nonce: stamp u32 || MAC truncated to 12 bytes; the stamp's top bit says
# which MAC (a notice's, or a Challenge's), its other 31 the server's clock in seconds
STAMP_SIZE = 4
_INVITE_BIT = 0x8000_0000
_SECONDS = 0x7FFF_FFFF  # wraps every 68 years: the age is taken modulo this
MAX_USED = 65_536  # server nonces of logins that succeeded within LOGIN_TTL, remembered at most

_LOGIN_LABEL = b"ptt-login"
_SESSION_INFO = b"ptt-session-v1"
_DECOY_LABEL = b"ptt-decoy-salt"
_DECOY_VERIFIER_LABEL = b"ptt-decoy-verifier"
_CHALLENGE_LABEL = b"ptt-challenge"
_INVITE_LABEL = b"ptt-invite"


# --- tokens and verifiers ----------------------------------------------------------------------


def new_token(rand_bytes: bytes) -> str:
    """Format random bytes as a token (URL-safe base64, no padding), like ``token_urlsafe``.

    Call with ``secrets.token_bytes(TOKEN_BYTES)``; the result is what ``ptt user add`` prints.
    """
    if len(rand_bytes) < MIN_TOKEN_BYTES:
        raise ValueError(f"a token needs at least {MIN_TOKEN_BYTES} random bytes")
    return base64.urlsafe_b64encode(rand_bytes).rstrip(b"=").decode("ascii")


def check_token(token: object) -> str:
    """A token as typed or pasted, trimmed; ValidationError if it cannot be one."""
    if not isinstance(token, str) or not token.strip():
        raise ValidationError("invalid token: empty")
    token = token.strip()
    if len(token) > MAX_TOKEN_LEN:
        raise ValidationError(f"invalid token: longer than {MAX_TOKEN_LEN} characters")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise ValidationError("invalid token: only printable ASCII without spaces is allowed")
    return token


def _check_params(salt: bytes, iterations: int) -> None:
    if not MIN_SALT_SIZE <= len(salt) <= MAX_SALT_SIZE:
        raise AuthError(
            f"invalid salt: {len(salt)} bytes, expected {MIN_SALT_SIZE}-{MAX_SALT_SIZE}"
        )
    if isinstance(iterations, bool) or not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise AuthError(
            f"invalid iteration count {iterations}: expected {MIN_ITERATIONS}-{MAX_ITERATIONS}"
        )


def derive_verifier(token: str, salt: bytes, iterations: int) -> bytes:
    """PBKDF2-HMAC-SHA256 of the token: what the server stores and the client recomputes.

    Computed by the OpenSSL that ``cryptography`` bundles rather than ``hashlib``'s (the
    system's): the same function and result, at less than half the CPU on this project's
    machines (8.7 ms against 20.8 ms for 50,000 iterations, ``bench/bench_import.py``), which
    is most of what an import of thousands of users costs."""
    _check_params(salt, iterations)
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=VERIFIER_SIZE, salt=salt,
                     iterations=iterations)
    return kdf.derive(token.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the store keeps for one user (the token itself is kept nowhere)."""

    salt: bytes
    iterations: int
    verifier: bytes


def make_credentials(
    token: str, salt: bytes, iterations: int = DEFAULT_ITERATIONS
) -> Credentials:
    """Salt, iterations and verifier for a new user; pass ``secrets.token_bytes(SALT_SIZE)``."""
    return Credentials(salt, iterations, derive_verifier(token, salt, iterations))


def decoy_salt(server_secret: bytes, user: str) -> bytes:
    """A stable fake salt for an unknown user, so a Challenge does not reveal who exists.

    ``server_secret`` is random per server (``secrets.token_bytes(32)``); answer with it and
    :data:`DEFAULT_ITERATIONS`. The Login that follows simply fails like a wrong token.
    """
    return hmac.new(server_secret, _DECOY_LABEL + user.encode("utf-8"), "sha256").digest()[
        :SALT_SIZE
    ]


def decoy_verifier(server_secret: bytes, user: str) -> bytes:
    """A verifier no token derives, checked for an unknown user's Login so that refusing it
    costs what refusing a real user's wrong proof costs (the same HMAC steps)."""
    return hmac.digest(server_secret, _DECOY_VERIFIER_LABEL + user.encode("utf-8"), "sha256")


# --- stateless challenges ------------------------------------------------------------------------


def challenge_nonce(server_secret: bytes, peer: bytes, client_nonce: bytes, user: str,
                    stamp: int) -> bytes:
    """The server nonce of a Challenge, computed rather than stored: ``stamp u32 ||
    HMAC-SHA256(secret, label || stamp || peer || client_nonce || user)[:12]``.

    ``peer`` names the address the Challenge goes to and ``stamp`` is the server's clock in whole
    seconds (mod 2**31; the top bit clear: :func:`is_invite`). The Login carries the nonce back; the server recomputes it, so a
    flood of Hellos costs one HMAC each and no memory, and only a peer that *receives* at
    ``peer`` can answer (a spoofed source never sees the nonce). Refuse nonces older than
    :data:`LOGIN_TTL` (:func:`challenge_stamp`) and, with :class:`UsedNonces`, reuse.
    """
    stamp_bytes = (stamp & _SECONDS).to_bytes(STAMP_SIZE, "big")
    mac = hmac.digest(server_secret, _CHALLENGE_LABEL + stamp_bytes + len(peer).to_bytes(2, "big")
                      + peer + client_nonce + user.encode("utf-8"), "sha256")
    return stamp_bytes + mac[:NONCE_SIZE - STAMP_SIZE]


def invite_nonce(server_secret: bytes, peer: bytes, stamp: int) -> bytes:
    """The server nonce a server hands out unasked, in the notice that a client's session is gone
    (``ptt.protocol.server_gate``): ``stamp u32 || HMAC-SHA256(secret, label || stamp || peer)
    [:12]``, a label of its own and the stamp's top bit set (:func:`is_invite`). The client's next Login to that server answers it instead of a
    Challenge's, one round trip fewer; the server takes it like a Challenge's nonce (recomputed,
    at most :data:`LOGIN_TTL` old, once, from ``peer`` only). It names no user: whoever receives
    at ``peer`` could have asked a Challenge for any name anyway."""
    stamp_bytes = (stamp & _SECONDS | _INVITE_BIT).to_bytes(STAMP_SIZE, "big")
    mac = hmac.digest(server_secret, _INVITE_LABEL + stamp_bytes + peer, "sha256")
    return stamp_bytes + mac[:NONCE_SIZE - STAMP_SIZE]


def challenge_stamp(server_nonce: bytes) -> int:
    """The clock stamp (seconds mod 2**31) inside a server nonce made by
    :func:`challenge_nonce` or :func:`invite_nonce`."""
    return int.from_bytes(server_nonce[:STAMP_SIZE], "big") & _SECONDS


def nonce_age(server_nonce: bytes, now: int) -> int:
    """Whole seconds since the stamp of ``server_nonce``, ``now`` being the server's clock."""
    return (now - challenge_stamp(server_nonce)) & _SECONDS


def is_invite(server_nonce: bytes) -> bool:
    """Was ``server_nonce`` (at least a byte) made by :func:`invite_nonce`, not by
    :func:`challenge_nonce`? The bit is inside the MAC'd stamp, so a nonce passed off as the
    other kind fails its check: the server computes the one MAC the bit names, not both."""
    return bool(server_nonce[0] & 0x80)


class UsedNonces:
    """Server nonces that already opened a session, so a captured Login cannot open another.

    Only logins that succeeded are added (a few per user per :data:`LOGIN_TTL`), each for
    ``ttl`` seconds, after which its stamp is too old anyway; insertion order is expiry order, so
    forgetting is O(1) per entry. Full (``max_used`` within one TTL): :meth:`add` says False and
    the login is refused rather than the oldest forgotten early.
    """

    def __init__(self, ttl: float = LOGIN_TTL, max_used: int = MAX_USED) -> None:
        self.ttl = ttl
        self.max_used = max_used
        self._used: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._used)

    def __contains__(self, nonce: object) -> bool:
        return nonce in self._used

    def add(self, nonce: bytes, now: float) -> bool:
        used = self._used
        while used:
            first = next(iter(used))
            if used[first] >= now:
                break
            del used[first]
        if len(used) >= self.max_used:
            return False
        used[nonce] = now + self.ttl
        return True


# --- proofs ------------------------------------------------------------------------------------


def _check_nonce(name: str, nonce: bytes) -> None:
    if len(nonce) != NONCE_SIZE:
        raise AuthError(f"invalid {name}: {len(nonce)} bytes, expected {NONCE_SIZE}")


def login_proof(verifier: bytes, client_nonce: bytes, server_nonce: bytes, user: str) -> bytes:
    """HMAC-SHA256(verifier, "ptt-login" || client_nonce || server_nonce || user)."""
    _check_nonce("client nonce", client_nonce)
    _check_nonce("server nonce", server_nonce)
    msg = _LOGIN_LABEL + client_nonce + server_nonce + user.encode("utf-8")
    return hmac.new(verifier, msg, "sha256").digest()


def verify_proof(
    verifier: bytes, client_nonce: bytes, server_nonce: bytes, user: str, proof: bytes
) -> bool:
    """True when ``proof`` is right; constant-time, and False (not an error) for bad sizes."""
    if len(client_nonce) != NONCE_SIZE or len(server_nonce) != NONCE_SIZE:
        return False
    expected = login_proof(verifier, client_nonce, server_nonce, user)
    return hmac.compare_digest(expected, proof)


def session_key(
    verifier: bytes,
    client_nonce: bytes,
    server_nonce: bytes,
    *,
    info: bytes = _SESSION_INFO,
    length: int = SESSION_KEY_SIZE,
) -> bytes:
    """A key both sides can derive after a login: HKDF-SHA256 (RFC 5869) with stdlib hmac.

    IKM is the verifier, the salt is ``client_nonce || server_nonce`` (fresh per login, so every
    session gets its own key), ``info`` separates keys for different uses. Anyone holding the
    verifier can derive it too; see the module docstring.
    """
    _check_nonce("client nonce", client_nonce)
    _check_nonce("server nonce", server_nonce)
    return hkdf_sha256(verifier, client_nonce + server_nonce, info, length)


# --- the two sides, on messages ----------------------------------------------------------------


def check_challenge(challenge: Challenge) -> None:
    """Client side: refuse a Challenge whose nonce, salt or iteration count is unreasonable."""
    _check_nonce("server nonce", challenge.server_nonce)
    _check_params(challenge.salt, challenge.iterations)


def answer_challenge(txn: int, hello: Hello, challenge: Challenge, token: str) -> Login:
    """Client side: the Login answering ``challenge`` to our ``hello``.

    Costs one PBKDF2 derivation (see the module docstring). Raises AuthError for a hostile or
    malformed Challenge.
    """
    check_challenge(challenge)
    verifier = derive_verifier(token, challenge.salt, challenge.iterations)
    proof = login_proof(verifier, hello.client_nonce, challenge.server_nonce, hello.user)
    return Login(txn, hello.user, hello.client_nonce, challenge.server_nonce, proof)


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """A Challenge the server sent and has not yet seen answered."""

    user: str
    client_nonce: bytes
    server_nonce: bytes
    expires: float


class PendingLogins:
    """Server side: outstanding challenges, each answerable once and only for ``ttl`` seconds.

    ``issue()`` when sending a Challenge, ``take()`` when a Login arrives (it forgets the entry
    whether or not the proof is then right, so a nonce never serves twice), then
    :func:`verify_login`. The table is bounded: past ``max_pending`` the oldest entry goes, so a
    flood of Hellos costs memory only up to the bound. ``now`` is any monotonic clock in seconds.
    """

    def __init__(self, ttl: float = LOGIN_TTL, max_pending: int = MAX_PENDING) -> None:
        self.ttl = ttl
        self.max_pending = max_pending
        self._pending: dict[bytes, PendingLogin] = {}  # insertion order is issue order

    def __len__(self) -> int:
        return len(self._pending)

    def issue(self, hello: Hello, server_nonce: bytes, now: float) -> PendingLogin:
        """Remember a Challenge with a fresh ``server_nonce`` for ``hello``."""
        _check_nonce("client nonce", hello.client_nonce)
        _check_nonce("server nonce", server_nonce)
        self.expire(now)
        while len(self._pending) >= self.max_pending:
            del self._pending[next(iter(self._pending))]
        entry = PendingLogin(hello.user, hello.client_nonce, server_nonce, now + self.ttl)
        self._pending[server_nonce] = entry
        return entry

    def take(self, login: Login, now: float) -> PendingLogin | None:
        """The pending entry this Login answers, removed; None if unknown, expired or mismatched.

        A retransmitted Login (its Welcome was lost) finds nothing here: answer it from the
        response cache, keyed by txn, rather than by taking again.
        """
        entry = self._pending.pop(login.server_nonce, None)
        if entry is None or entry.expires < now:
            return None
        if entry.user != login.user or not hmac.compare_digest(
            entry.client_nonce, login.client_nonce
        ):
            return None
        return entry

    def expire(self, now: float) -> None:
        """Forget challenges older than the TTL (also done by ``issue``)."""
        while self._pending:
            first = next(iter(self._pending.values()))
            if first.expires >= now:
                break
            del self._pending[first.server_nonce]


def verify_login(login: Login, pending: PendingLogin, verifier: bytes) -> bool:
    """Server side: True when ``login`` proves knowledge of ``verifier`` for ``pending``."""
    return (
        login.user == pending.user
        and login.server_nonce == pending.server_nonce
        and verify_proof(verifier, pending.client_nonce, pending.server_nonce, pending.user,
                         login.proof)
    )
