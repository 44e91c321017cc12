from __future__ import annotations

import ast
import hashlib
import hmac
import re
import secrets
from pathlib import Path

import pytest

from ptt.errors import AuthError, ValidationError
from ptt.protocol import auth
from ptt.protocol.messages import Challenge, Hello, Login, decode_message, encode_message

ITER = auth.MIN_ITERATIONS  # keep the tests fast; DEFAULT_ITERATIONS is covered once below
USER = "alice"


def nonce() -> bytes:
    return secrets.token_bytes(auth.NONCE_SIZE)


class Server:
    """The server's half, as ptt.protocol.server does it: store, pending table, verify."""

    def __init__(self, token: str, now: float = 100.0) -> None:
        self.creds = auth.make_credentials(token, secrets.token_bytes(auth.SALT_SIZE), ITER)
        self.pending = auth.PendingLogins(ttl=10.0)
        self.now = now

    def challenge(self, hello: Hello) -> Challenge:
        server_nonce = nonce()
        self.pending.issue(hello, server_nonce, self.now)
        return Challenge(hello.txn, server_nonce, self.creds.salt, self.creds.iterations)

    def login(self, login: Login) -> bool:
        entry = self.pending.take(login, self.now)
        return entry is not None and auth.verify_login(login, entry, self.creds.verifier)


def wire(msg: Hello | Challenge | Login) -> Hello | Challenge | Login:
    out = decode_message(encode_message(msg))
    assert isinstance(out, type(msg))
    return out


# --- tokens ------------------------------------------------------------------------------------


def test_new_token_looks_like_token_urlsafe() -> None:
    token = auth.new_token(secrets.token_bytes(auth.TOKEN_BYTES))
    assert len(token) == len(secrets.token_urlsafe(auth.TOKEN_BYTES)) == 32
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", token)
    assert auth.new_token(b"\xff" * 24) == "_" * 32
    with pytest.raises(ValueError, match="at least 16"):
        auth.new_token(b"short")


def test_check_token_trims_and_refuses_garbage() -> None:
    assert auth.check_token("  abc-DEF_123\n") == "abc-DEF_123"
    for bad in ("", "   ", "two words", "tab\there", "\x00x", "é" * 10, "x" * 300, None):
        with pytest.raises(ValidationError, match="invalid token"):
            auth.check_token(bad)


# --- the round trip ----------------------------------------------------------------------------


def test_login_round_trip_over_the_wire_format() -> None:
    token = auth.new_token(secrets.token_bytes(auth.TOKEN_BYTES))
    server = Server(token)
    hello = wire(Hello(1, USER, nonce()))
    assert isinstance(hello, Hello)
    challenge = wire(server.challenge(hello))
    assert isinstance(challenge, Challenge)
    login = wire(auth.answer_challenge(2, hello, challenge, token))
    assert isinstance(login, Login)
    assert token.encode() not in encode_message(login)  # the token never travels
    assert server.creds.verifier not in encode_message(login)
    assert server.login(login)
    assert len(server.pending) == 0


def test_verifier_is_pbkdf2_and_proof_is_the_documented_hmac() -> None:
    salt, cn, sn = b"s" * 16, b"c" * 16, b"n" * 16
    verifier = auth.derive_verifier("tok", salt, 2000)
    assert verifier == hashlib.pbkdf2_hmac("sha256", b"tok", salt, 2000)
    expected = hmac.new(verifier, b"ptt-login" + cn + sn + b"alice", "sha256").digest()
    assert auth.login_proof(verifier, cn, sn, "alice") == expected


def test_wrong_token_is_rejected() -> None:
    server = Server("right-token")
    hello = Hello(1, USER, nonce())
    login = auth.answer_challenge(2, hello, server.challenge(hello), "wrong-token")
    assert not server.login(login)


def test_proof_for_another_user_is_rejected() -> None:
    server = Server("tok")
    hello = Hello(1, USER, nonce())
    challenge = server.challenge(hello)
    login = auth.answer_challenge(2, hello, challenge, "tok")
    assert not server.login(Login(2, "mallory", login.client_nonce, login.server_nonce,
                                  login.proof))


def test_wrong_client_nonce_is_rejected() -> None:
    server = Server("tok")
    hello = Hello(1, USER, nonce())
    challenge = server.challenge(hello)
    login = auth.answer_challenge(2, Hello(1, USER, nonce()), challenge, "tok")
    assert not server.login(login)


def test_proof_does_not_verify_with_another_client_nonce() -> None:
    v = auth.derive_verifier("tok", b"s" * 16, ITER)
    cn, sn = nonce(), nonce()
    proof = auth.login_proof(v, cn, sn, USER)
    assert auth.verify_proof(v, cn, sn, USER, proof)
    assert not auth.verify_proof(v, nonce(), sn, USER, proof)
    assert not auth.verify_proof(v, cn, sn, "bob", proof)
    assert not auth.verify_proof(v, cn, sn, USER, proof[:-1] + bytes([proof[-1] ^ 1]))
    assert not auth.verify_proof(v, cn, sn, USER, b"")
    assert not auth.verify_proof(v, cn[:8], sn, USER, proof)  # bad size: False, not an error


def test_captured_proof_replayed_against_a_new_server_nonce_is_rejected() -> None:
    server = Server("tok")
    hello = Hello(1, USER, nonce())
    captured = auth.answer_challenge(2, hello, server.challenge(hello), "tok")
    assert server.login(captured)
    # the attacker starts a new login with the same client nonce and replays the old proof
    fresh = server.challenge(Hello(3, USER, hello.client_nonce))
    assert fresh.server_nonce != captured.server_nonce
    replay = Login(4, USER, hello.client_nonce, fresh.server_nonce, captured.proof)
    assert not server.login(replay)


def test_the_same_login_twice_is_rejected() -> None:
    server = Server("tok")
    hello = Hello(1, USER, nonce())
    login = auth.answer_challenge(2, hello, server.challenge(hello), "tok")
    assert server.login(login)
    assert not server.login(login)  # the server nonce was used up


def test_a_failed_attempt_also_uses_the_challenge_up() -> None:
    server = Server("tok")
    hello = Hello(1, USER, nonce())
    challenge = server.challenge(hello)
    assert not server.login(auth.answer_challenge(2, hello, challenge, "guess"))
    assert not server.login(auth.answer_challenge(3, hello, challenge, "tok"))


# --- the pending table -------------------------------------------------------------------------


def test_pending_challenges_expire() -> None:
    server = Server("tok")
    hello = Hello(1, USER, nonce())
    login = auth.answer_challenge(2, hello, server.challenge(hello), "tok")
    server.now += 10.5
    assert not server.login(login)


def test_pending_table_is_bounded_and_expires_old_entries() -> None:
    table = auth.PendingLogins(ttl=5.0, max_pending=3)
    entries = [table.issue(Hello(i, USER, nonce()), nonce(), now=float(i)) for i in range(5)]
    assert len(table) == 3  # the two oldest were pushed out
    first = entries[0]
    assert table.take(Login(9, USER, first.client_nonce, first.server_nonce, b""), 5.0) is None
    table.expire(now=20.0)
    assert len(table) == 0


def test_pending_table_refuses_bad_nonces() -> None:
    table = auth.PendingLogins()
    with pytest.raises(AuthError, match="client nonce"):
        table.issue(Hello(1, USER, b"short"), nonce(), 0.0)
    with pytest.raises(AuthError, match="server nonce"):
        table.issue(Hello(1, USER, nonce()), b"", 0.0)


# --- the client refuses hostile challenges ------------------------------------------------------


@pytest.mark.parametrize(
    ("salt", "iterations", "server_nonce", "needle"),
    [
        (b"s" * 16, 10**9, b"n" * 16, "iteration count"),  # would stall the client for hours
        (b"s" * 16, 10, b"n" * 16, "iteration count"),
        (b"s" * 16, True, b"n" * 16, "iteration count"),
        (b"s" * 4, ITER, b"n" * 16, "invalid salt"),
        (b"s" * 1000, ITER, b"n" * 16, "invalid salt"),
        (b"s" * 16, ITER, b"n" * 15, "server nonce"),
    ],
)
def test_client_refuses_unreasonable_challenges(
    salt: bytes, iterations: int, server_nonce: bytes, needle: str
) -> None:
    hello = Hello(1, USER, nonce())
    with pytest.raises(AuthError, match=needle):
        auth.answer_challenge(2, hello, Challenge(1, server_nonce, salt, iterations), "tok")


def test_default_iterations_are_accepted_and_reasonably_fast() -> None:
    import time

    start = time.perf_counter()
    auth.make_credentials("tok", b"s" * 16)
    assert time.perf_counter() - start < 1.0  # ~30 ms on CI's machine; generous bound


# --- keys and decoys ---------------------------------------------------------------------------


def test_session_key_agrees_on_both_sides_and_differs_per_login() -> None:
    v = auth.derive_verifier("tok", b"s" * 16, ITER)
    cn, sn = nonce(), nonce()
    k = auth.session_key(v, cn, sn)
    assert len(k) == auth.SESSION_KEY_SIZE
    assert k == auth.session_key(v, cn, sn)
    assert k != auth.session_key(v, cn, nonce())
    assert k != auth.session_key(v, cn, sn, info=b"ptt-voice")
    assert k != auth.login_proof(v, cn, sn, USER)  # the key is not the public proof
    assert len(auth.session_key(v, cn, sn, length=80)) == 80


def test_decoy_salt_is_stable_per_user_and_secret() -> None:
    secret = b"k" * 32
    assert auth.decoy_salt(secret, "ghost") == auth.decoy_salt(secret, "ghost")
    assert len(auth.decoy_salt(secret, "ghost")) == auth.SALT_SIZE
    assert auth.decoy_salt(secret, "ghost") != auth.decoy_salt(secret, "ghost2")
    assert auth.decoy_salt(secret, "ghost") != auth.decoy_salt(b"j" * 32, "ghost")


def test_auth_module_draws_no_randomness_and_reads_no_clock() -> None:
    tree = ast.parse(Path(auth.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"random", "secrets", "time", "socket", "asyncio", "threading", "os"}
