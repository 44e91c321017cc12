"""The sealed control plane in the cores: every drop path, the no-amplification rule, rate limits.

A client core and the server core exchange datagrams directly here (no loss), so each test can
capture, alter, replay or forge exactly the datagram it is about.
"""

from __future__ import annotations

import random

import pytest

from ptt.crypto.channel import KEEPALIVE_MAGIC, OVERHEAD, SEALED_MAGIC
from ptt.protocol import auth, limits
from ptt.protocol import messages as m
from ptt.protocol.client import CHECK_WINDOW, ClientCore, ConnState, Participation
from ptt.protocol.messages import encode_message
from ptt.protocol.server import Dropped, ServerCore, ServerCoreConfig

ADDR = ("10.0.0.2", 40000)
EVIL = ("10.0.0.66", 40000)
TOKEN = "token-of-ann-0123456789abcdef"


class Pair:
    """One server core and client cores on fixed addresses; ``pump`` delivers everything."""

    def __init__(self, config: ServerCoreConfig = ServerCoreConfig()) -> None:
        self.rng = random.Random(7)
        self.server = ServerCore(self.rng.randbytes, config)
        self.clients: dict[str, ClientCore] = {}
        self.addrs: dict[str, tuple[str, int]] = {}
        self.to_server: list[tuple[bytes, tuple[str, int]]] = []  # everything the server got
        self.to_client: list[tuple[bytes, tuple[str, int]]] = []
        self.now = 0.0
        self.server.upsert_group("g", 1, 30.0)
        self.server.upsert_group("other", 2, 30.0)

    def add(self, user: str, role: m.Role = m.Role.VOLUNTEER,
            addr: tuple[str, int] | None = None, listen_only: bool = False,
            member: bool = True) -> ClientCore:
        token = TOKEN.replace("ann", user)
        c = auth.make_credentials(token, self.rng.randbytes(16), auth.MIN_ITERATIONS)
        self.server.upsert_user(user, role, c.salt, c.iterations, c.verifier)
        if member:
            self.server.set_member("g", user, listen_only)
        core = ClientCore(user, token, self.rng.randbytes)
        self.clients[user] = core
        self.addrs[user] = addr or ("10.0.0.%d" % (len(self.addrs) + 2), 40000)
        return core

    def pump(self, rounds: int = 20) -> None:
        for _ in range(rounds):  # bounded: a login is 4 datagrams, a request 2
            moved = False
            for u, c in self.clients.items():
                for d in c.datagrams_to_send():
                    self.deliver(d, self.addrs[u])
                    moved = True
            for d, a in self.server.datagrams_to_send():
                self.to_client.append((d, a))
                for u, ad in self.addrs.items():
                    if ad == a:
                        self.clients[u].receive_datagram(d, self.now)
                moved = True
            if not moved:
                return

    def deliver(self, data: bytes, addr: tuple[str, int]) -> list[tuple[bytes, tuple[str, int]]]:
        """One datagram to the server; returns what it answered (also delivered on pump)."""
        self.to_server.append((data, addr))
        before = len(self.server.outbox.datagrams)
        self.server.receive_datagram(data, addr, self.now)
        return list(self.server.outbox.datagrams[before:])

    def login(self, user: str) -> ClientCore:
        c = self.clients[user]
        c.connect(self.now)
        self.pump()
        assert c.conn is ConnState.CONNECTED
        return c

    def drops(self) -> list[str]:
        return [e.reason for e in self.server.events() if isinstance(e, Dropped)]


def sent_by(p: Pair, user: str) -> list[bytes]:
    return [d for d, a in p.to_server if a == p.addrs[user]]


def test_login_is_plain_then_everything_is_sealed_both_ways() -> None:
    p = Pair()
    p.add("ann")
    ann = p.login("ann")
    ann.join("g", p.now)
    ann.request_floor("g", p.now)
    p.pump()
    assert ann.participation("g") is Participation.HAS_PERMISSION
    up = sent_by(p, "ann")
    assert [d[0] == SEALED_MAGIC for d in up] == [False, False, True, True]  # Hello, Login, ...
    assert len(up[0]) >= limits.MIN_HELLO_SIZE
    down = [d for d, a in p.to_client]
    # Challenge, Welcome, Joined, the floor's answer and its news to the group (ann included)
    assert [d[0] == SEALED_MAGIC for d in down] == [False, True, True, True, True]
    assert all(b"g" not in d[OVERHEAD // 2:] or d[0] == SEALED_MAGIC for d in down)


def test_client_refuses_a_plain_welcome_and_anything_plain_but_login_errors() -> None:
    p = Pair()
    p.add("ann")
    ann = p.clients["ann"]
    ann.connect(p.now)
    p.deliver(ann.datagrams_to_send()[0], p.addrs["ann"])
    challenge = p.server.datagrams_to_send()[0][0]
    ann.receive_datagram(challenge, p.now)
    login = ann.datagrams_to_send()[0]
    txn = ann._txn
    forged = encode_message(m.Welcome(txn, 1234, m.Role.COORDINATOR, 1000, 5000, ["g"]))
    ann.receive_datagram(forged, p.now)
    assert ann.conn is ConnState.LOGGING_IN and ann.dropped == 1
    for msg in (m.Joined(txn, m.GroupState("g", 1, [])), m.HeartbeatAck(txn),
                m.FloorGranted(txn, "g", 5, 1000, 1000), m.Error(txn, m.ErrorCode.FORBIDDEN, "x")):
        ann.receive_datagram(encode_message(msg), p.now)
    assert ann.dropped == 5 and ann.events() == [] and ann.datagrams_to_send() == []
    p.deliver(login, p.addrs["ann"])
    p.pump()
    assert ann.conn is ConnState.CONNECTED and ann.session_id != 1234


def test_server_drops_sealed_datagrams_that_do_not_open_and_says_why() -> None:
    p = Pair()
    p.add("ann")
    ann = p.login("ann")
    ann.join("g", p.now)
    join = ann.datagrams_to_send()[0]
    p.drops()
    # altered: one bit of the ciphertext, or of the header (the associated data)
    for i in (len(join) - 1, 20, 7):
        bad = bytearray(join)
        bad[i] ^= 1
        assert p.deliver(bytes(bad), p.addrs["ann"]) == []
    assert all("failed authentication" in r for r in p.drops())
    # from another address than the session's, older than what the session sent since: it
    # opens, but moves nothing (only a newer one would: a NAT that rebound the client's port)
    ann.leave("g", p.now)
    leave = ann.datagrams_to_send()[0]
    assert len(p.deliver(leave, p.addrs["ann"])) == 1
    assert p.deliver(join, EVIL) == []
    assert p.drops() == ["sealed datagram from another address than its session's"]
    assert p.server.sessions.by_id[ann.session_id].addr == p.addrs["ann"]
    # accepted once, then a replay of it is refused by the window, from anywhere
    assert len(p.deliver(leave, p.addrs["ann"])) == 0
    assert p.deliver(join, p.addrs["ann"]) == []
    assert p.deliver(leave, EVIL) == []
    assert [r.split(" (")[0] for r in p.drops()] == [
        "sealed datagram replayed: replayed or too old control datagram"] * 3
    # truncated below a tag, and a wrong version byte
    assert p.deliver(join[:OVERHEAD - 1], p.addrs["ann"]) == []
    assert p.deliver(join[:1] + b"\x02" + join[2:], p.addrs["ann"]) == []
    assert len(p.drops()) == 2


def test_unknown_session_gets_at_most_a_no_session_that_fits() -> None:
    p = Pair()
    p.add("ann")
    ann = p.login("ann")
    sid = ann.session_id
    ann.handle_timer(p.now + ann.heartbeat)
    hb = ann.datagrams_to_send()[0]
    p.server.remove_user("ann", p.now)  # the session is gone (like a restarted server)
    p.drops()
    answer = p.deliver(hb, p.addrs["ann"])
    assert len(answer) == 1 and limits.answer_fits(hb, answer[0][0])
    assert answer[0][0][0] != SEALED_MAGIC
    # a hint only: the client checks with a sealed heartbeat, which draws the same answer, and
    # logs in again when no sealed answer came within the check window
    ann.receive_datagram(answer[0][0], p.now)
    check = ann.datagrams_to_send()
    assert len(check) == 1 and ann.conn is ConnState.CONNECTED
    again = p.deliver(check[0], p.addrs["ann"])
    assert [d[0] != SEALED_MAGIC for d, _ in again] == [True]
    ann.receive_datagram(again[0][0], p.now)
    ann.handle_timer(p.now + CHECK_WINDOW)
    assert ann.conn is ConnState.LOGGING_IN
    assert p.drops() == ["sealed datagram for an unknown session"] * 2
    # the smallest sealed datagram: a bare header and tag naming some session
    tiny = bytes([SEALED_MAGIC, 1]) + (sid ^ 1).to_bytes(4, "big") + bytes(8 + 16)
    answer = p.deliver(tiny, EVIL)
    assert all(limits.answer_fits(tiny, d) for d, _ in answer)


def test_every_kind_of_unauthenticated_datagram_is_answered_with_at_most_its_size() -> None:
    p = Pair()
    p.add("ann")
    ann = p.login("ann")
    sid = ann.session_id
    nonce = bytes(auth.NONCE_SIZE)
    cases = {
        "short hello": encode_message(m.Hello(1, "ann", nonce)),
        "padded hello": encode_message(m.Hello(2, "ann", nonce, bytes(100))),
        "hello unknown user": encode_message(m.Hello(3, "nobody-at-all", nonce, bytes(100))),
        "login without hello": encode_message(m.Login(4, "ann", nonce, nonce, bytes(32))),
        "plain heartbeat": encode_message(m.Heartbeat(5, sid)),
        "plain floor request": encode_message(m.FloorRequest(6, sid, "g")),
        "plain admin": encode_message(m.Admin(7, sid, "group.delete", {"name": "g"})),
        "plain ack": encode_message(m.Ack(8, sid)),
        "plain welcome": encode_message(m.Welcome(9, sid, m.Role.VOLUNTEER, 1, 1, [])),
        "garbage": b"\x91\x01",
        "empty": b"",
        "oversized plain": b"\x92" + bytes(limits.MAX_UNAUTH_DATAGRAM),
        "oversized sealed": bytes([SEALED_MAGIC]) + bytes(limits.MAX_SEALED_DATAGRAM),
    }
    answered = {}
    for i, (name, data) in enumerate(cases.items()):
        src = ("10.1.0.%d" % (i + 1), 5000)  # fresh sources: the rate limit is not the point
        out = p.deliver(data, src)
        assert all(limits.answer_fits(data, d) for d, _ in out), name
        answered[name] = [d[:3] for d, _ in out]
    assert answered["short hello"] == [] and answered["empty"] == []
    assert len(answered["padded hello"]) == len(answered["hello unknown user"]) == 1
    assert answered["plain heartbeat"] == []  # 5 bytes: NO_SESSION would not fit
    assert answered["plain floor request"] == []  # 12 bytes: NO_SESSION (30) would not fit
    assert answered["plain admin"] == [encode_message(m.Error(7, m.ErrorCode.NO_SESSION, ""))[:3]]
    assert p.server.floors.floor("g").holder is None
    assert "g" in p.server.groups
    fuzz = random.Random(3)
    for i in range(3000):  # random bytes and mutations of the cases: never amplified
        base = fuzz.choice(list(cases.values())) or b"\x90"
        data = bytearray(base[:600])
        for _ in range(fuzz.randint(0, 4)):
            data[fuzz.randrange(len(data))] = fuzz.randrange(256)
        data = bytes(data) if fuzz.random() < 0.8 else fuzz.randbytes(fuzz.randint(1, 300))
        for d, _ in p.deliver(data, ("10.2.%d.%d" % (i // 250, i % 250), 6000)):
            assert limits.answer_fits(data, d)


def test_plain_floor_request_with_a_valid_session_id_gets_no_floor() -> None:
    p = Pair()
    p.add("ann")
    ann = p.login("ann")
    ann.join("g", p.now)
    p.pump()
    forged = encode_message(m.FloorRequest(99, ann.session_id, "g", m.Priority.EMERGENCY))
    for src in (p.addrs["ann"], EVIL):  # even from the member's own address
        assert p.deliver(forged, src) == []  # NO_SESSION would be larger: silence
    assert p.drops() == ["no answer: Error larger than its request",
                         "plain FloorRequest: session messages are sealed"] * 2
    assert p.server.floors.floor("g").holder is None
    assert ann.conn is ConnState.CONNECTED


def test_sealed_login_messages_and_foreign_session_ids_are_dropped() -> None:
    p = Pair()
    p.add("ann")
    p.add("bob")
    ann, bob = p.login("ann"), p.login("bob")
    bob.join("g", p.now)
    p.pump()
    p.drops()
    # ann seals a request that names bob's session: it opens (it is ann's) but is refused
    ann._emit(encode_message(m.FloorRequest(77, bob.session_id, "g")))
    ann._emit(encode_message(m.Hello(78, "ann", bytes(16))))
    for d in ann.datagrams_to_send():
        assert p.deliver(d, p.addrs["ann"]) == []
    assert p.drops() == ["sealed message names another session",
                         "unexpected sealed Hello from a client"]
    assert p.server.floors.floor("g").holder is None


def test_heartbeats_are_sealed_both_ways_and_replays_refused() -> None:
    p = Pair()
    p.add("ann")
    ann = p.login("ann")
    ann.handle_timer(p.now + ann.heartbeat)
    hb = ann.datagrams_to_send()[0]
    assert hb[0] == KEEPALIVE_MAGIC  # sealed, marked as a keepalive in the clear
    p.now = 3.0
    (ack, _), = p.deliver(hb, p.addrs["ann"])
    assert ack[0] == KEEPALIVE_MAGIC
    assert p.server.sessions.by_id[ann.session_id].last_seen == 3.0
    p.now = 4.0
    assert p.deliver(hb, p.addrs["ann"]) == []  # replayed: no ack, not even freshness
    assert p.server.sessions.by_id[ann.session_id].last_seen == 3.0
    dropped = ann.dropped
    ann.receive_datagram(ack, p.now)
    ann.receive_datagram(ack, p.now)  # the client refuses the replayed ack
    assert ann.dropped == dropped + 1


def test_reliable_pushes_and_request_resends_are_sealed_anew() -> None:
    p = Pair()
    p.add("ann")
    ann = p.login("ann")
    ann.join("g", p.now)
    first = ann.datagrams_to_send()[0]
    ann.handle_timer(p.now + 0.15)  # the Join was "lost": resent with a new sequence number
    again = ann.datagrams_to_send()[0]
    assert first != again and first[:6] == again[:6]
    p.deliver(again, p.addrs["ann"])
    p.pump()
    assert "g" in ann.groups and ann.groups["g"].state is not None
    p.server.set_group_key("g", 1, {"ann": b"grant"}, p.now)
    (push, _), = p.server.datagrams_to_send()  # "lost"
    p.server.handle_timer(p.now + 0.15)
    (resend, _), = p.server.datagrams_to_send()
    assert push != resend
    ann.receive_datagram(push, p.now)  # the first copy arrives late after all
    ann.receive_datagram(resend, p.now)  # the resend still opens; it is acked, not re-emitted
    assert [type(e).__name__ for e in ann.events()].count("KeyGrantReceived") == 1
    for d in ann.datagrams_to_send():
        p.deliver(d, p.addrs["ann"])
    assert len(p.server.outbox.reliable) == 0


def test_rate_limit_per_source_address_and_in_aggregate() -> None:
    p = Pair()
    hello = encode_message(m.Hello(1, "ann", bytes(16), bytes(100)))
    got = [len(p.deliver(hello, EVIL)) for _ in range(20)]
    burst = int(limits.RateLimits().burst)
    assert got == [1] * burst + [0] * (20 - burst)
    assert p.drops().count("rate limit for datagrams without a session") == 20 - burst
    assert len(p.deliver(hello, (EVIL[0], EVIL[1] + 1))) == 1  # another port: its own bucket
    p.now = 1.0
    assert len(p.deliver(hello, EVIL)) == 1  # refilled at 2 per second
    tight = Pair(ServerCoreConfig(rate_limits=limits.RateLimits(global_rate=1.0,
                                                                global_burst=5.0)))
    got = [len(tight.deliver(hello, ("127.0.0.1", 10_000 + i))) for i in range(10)]
    assert got == [1] * 5 + [0] * 5  # the aggregate bucket bounds many sources


@pytest.mark.parametrize("listen_only", [True, False])
def test_listen_only_and_non_members_are_denied_with_their_cause(listen_only: bool) -> None:
    p = Pair()
    p.add("lou", listen_only=listen_only, member=listen_only)
    lou = p.login("lou")
    lou.request_floor("g", p.now)
    p.pump()
    ev = [e for e in lou.events() if getattr(e, "deny_cause", None)]
    want = m.DenyCause.LISTEN_ONLY if listen_only else m.DenyCause.NOT_MEMBER
    assert ev and ev[-1].deny_cause is want
    assert p.server.floors.floor("g").holder is None


def test_only_heartbeats_and_their_acks_travel_marked_as_keepalives() -> None:
    p = Pair()
    p.add("ann")
    ann = p.login("ann")
    channel = ann._channel  # the client's own channel: what a buggy or hostile client could seal
    assert channel is not None
    join = channel.seal(encode_message(m.Join(77, ann.session_id, "g")), keepalive=True)
    assert join[0] == KEEPALIVE_MAGIC
    assert p.deliver(join, p.addrs["ann"]) == []
    assert p.drops() == ["keepalive datagram that is not a heartbeat"]
    # the marker is authenticated: a heartbeat relabelled as a request does not open
    ann.handle_timer(p.now + ann.heartbeat)
    hb = ann.datagrams_to_send()[0]
    relabelled = bytes([SEALED_MAGIC]) + hb[1:]
    assert p.deliver(relabelled, p.addrs["ann"]) == []
    assert p.drops()[-1].startswith("sealed datagram refused")
    # and the client refuses anything but a HeartbeatAck under the marker
    server_channel = p.server.sessions.by_id[ann.session_id].channel
    assert server_channel is not None
    dropped = ann.dropped
    fake = server_channel.seal(encode_message(m.Error(0, m.ErrorCode.NO_SESSION, "x")),
                               keepalive=True)
    ann.receive_datagram(fake, p.now)
    assert ann.dropped == dropped + 1 and ann.conn is ConnState.CONNECTED
