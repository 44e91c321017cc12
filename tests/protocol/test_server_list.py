"""The client's server list (ptt.protocol.server_list) and a ClientCore moving between two
ServerCores when its node dies: driven on a virtual clock, nothing touches a socket."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ptt.protocol import auth
from ptt.protocol import client as cl
from ptt.protocol import messages as m
from ptt.protocol.client import (
    CHECK_WINDOW,
    RELOGIN_CAP,
    ClientCore,
    Connected,
    ConnState,
    Disconnected,
    GroupJoined,
)
from ptt.protocol.server import ServerCore
from ptt.protocol.server_list import LOGIN_TRY, MOVE_JITTER, ServerList

A, B, C = ("10.0.0.1", 7800), ("10.0.0.2", 7800), ("10.0.0.3", 7800)


def test_a_move_goes_to_another_server_spread_over_the_others_and_the_jitter() -> None:
    to: Counter[tuple[str, int]] = Counter()
    delays = []
    for seed in range(600):
        servers = ServerList([B, A, C], seed.to_bytes(4, "big"))
        assert servers.current == B  # the first configured
        at = servers.move(100.0)
        assert servers.current != B
        to[servers.current] += 1
        delays.append(at - 100.0)
    assert set(to) == {A, C}
    assert 0.4 < to[A] / 600 < 0.6, to  # not all to one survivor
    assert all(0 <= d < MOVE_JITTER for d in delays)
    tenths = Counter(int(d / MOVE_JITTER * 10) for d in delays)
    assert len(tenths) == 10 and max(tenths.values()) < 600 / 10 * 1.6, tenths  # spread, no herd


def test_a_move_goes_to_the_node_that_told_the_client_when_it_is_another_of_the_list() -> None:
    """The survivors split the notices evenly, and a client moves to its teller (a node that
    has just shown it lives); the jitter is drawn as without one. A teller not in the list, or
    the dead node itself, does not count: uniformly among the others then."""
    for seed in range(50):
        told = ServerList([B, A, C], seed.to_bytes(4, "big"))
        free = ServerList([B, A, C], seed.to_bytes(4, "big"))
        at = told.move(100.0, C)
        assert told.current == C and at == free.move(100.0)
    to: Counter[tuple[str, int]] = Counter()
    for seed in range(200):
        servers = ServerList([B, A, C], seed.to_bytes(4, "big"))
        servers.move(0.0, ("10.0.0.99", 7800) if seed % 2 else B)
        to[servers.current] += 1
    assert set(to) == {A, C} and 0.35 < to[A] / 200 < 0.65, to


def test_the_same_seed_makes_the_same_moves() -> None:
    one, two = ServerList([A, B, C], b"seed"), ServerList([A, B, C], b"seed")
    assert [(one.move(0.0), one.current) for _ in range(5)] == [
        (two.move(0.0), two.current) for _ in range(5)]


def test_failed_logins_go_round_the_list_until_every_server_failed() -> None:
    servers = ServerList([A, B, A, C], b"x")  # a repeat counts once
    assert len(servers) == 3 and not servers.exhausted
    servers.login_failed()
    assert servers.current == B and not servers.exhausted
    servers.login_failed()
    assert servers.current == C and not servers.exhausted
    servers.login_failed()
    assert servers.current == A and servers.exhausted
    servers.connected()
    assert not servers.exhausted
    servers.add([C, ("10.0.0.4", 7800)])
    assert servers.servers == (A, B, C, ("10.0.0.4", 7800))
    with pytest.raises(ValueError):
        ServerList([], b"x")


class TwoNodes:
    """Two ServerCores with the same directory, and one client listing both (b first)."""

    def __init__(self, listed: tuple[tuple[str, int], ...] = (B, A), seed: int = 7) -> None:
        rng = random.Random(seed)
        self.now = 0.0
        self.nodes = {A: ServerCore(rng.randbytes), B: ServerCore(rng.randbytes)}
        self.dead: set[tuple[str, int]] = set()
        token = "token-of-ann-0123456789abcdef"
        creds = auth.make_credentials(token, rng.randbytes(16), auth.MIN_ITERATIONS)
        for core in self.nodes.values():
            core.upsert_user("ann", m.Role.VOLUNTEER, creds.salt, creds.iterations,
                             creds.verifier)
            core.upsert_group("g", 1, 30.0)
            core.set_member("g", "ann")
        self.client = ClientCore("ann", token, rng.randbytes, "dev", servers=list(listed))
        self.addr = ("10.0.9.9", 40000)
        self.events: list[object] = []
        self.sent_to: Counter[tuple[str, int]] = Counter()
        self.first_sent: dict[tuple[str, int], float] = {}  # when the client first sent there

    def pump(self) -> None:
        for _ in range(20):
            moved = False
            for data in self.client.datagrams_to_send():
                dest = self.client.server
                assert dest is not None
                self.sent_to[dest] += 1
                self.first_sent.setdefault(dest, self.now)
                if dest not in self.dead:
                    self.nodes[dest].receive_datagram(data, self.addr, self.now)
                moved = True
            for addr, core in self.nodes.items():
                for data, _ in core.datagrams_to_send():
                    if addr not in self.dead:
                        self.client.receive_datagram(data, self.now, source=addr)
                        moved = True
            self.events += self.client.events()
            if not moved:
                return

    def run(self, until: float) -> None:
        while True:
            ts = [t for t in [self.client.get_timer()] + [
                c.get_timer() for a, c in self.nodes.items() if a not in self.dead]
                if t is not None and t <= until]
            if not ts:
                break
            self.now = max(self.now, min(ts))
            self.client.handle_timer(self.now)
            for a, core in self.nodes.items():
                if a not in self.dead:
                    core.handle_timer(self.now)
            self.pump()
        self.now = until

    def start(self) -> None:
        self.client.connect(self.now)
        self.client.join("g", self.now)
        self.pump()
        self.run(0.5)
        assert self.client.conn is ConnState.CONNECTED and self.client.server == B


def notice() -> bytes:
    return m.encode_message(m.Error(0, m.ErrorCode.NO_SESSION, "no session"))


def b_dies_and_a_says_so(net: TwoNodes) -> None:
    """b stops answering; a sends the client the notice: it is on a after the check and the
    jitter."""
    net.dead.add(B)
    net.now = 10.0
    net.client.receive_datagram(notice(), net.now, source=A)
    net.pump()
    net.run(10.0 + CHECK_WINDOW + MOVE_JITTER + 0.5)
    assert net.client.conn is ConnState.CONNECTED and net.client.server == A


def test_a_notice_from_a_surviving_node_moves_the_client_after_its_check() -> None:
    net = TwoNodes()
    net.start()
    b_dies_and_a_says_so(net)
    connected = [e for e in net.events if isinstance(e, Connected)]
    joined = [e for e in net.events if isinstance(e, GroupJoined)]
    assert len(connected) == 2 and len(joined) == 2  # logged in again and rejoined g on a
    assert "g" in net.nodes[A].groups and net.nodes[A].sessions.by_addr


def test_a_client_told_by_a_moves_to_a_of_three() -> None:
    """b dies; c says nothing (c has no share of b's clients), a does: the client goes to a,
    every time, not to c half the time."""
    for seed in range(10):
        net = TwoNodes(listed=(B, C, A), seed=seed)
        net.start()
        net.dead.add(C)  # no core here: whatever the client sends c is counted, and lost
        b_dies_and_a_says_so(net)
        assert net.sent_to[C] == 0


def test_the_jitter_of_a_move_runs_from_the_notice_and_the_check_within_it() -> None:
    """Told at 10.0, a client logs in to a between the end of its check (10.0 + CHECK_WINDOW)
    and 10.0 + MOVE_JITTER, not after the check plus a whole jitter: the check is spent inside
    the window. A draw that fell within the check logs in the moment the check ends."""
    starts = []
    for seed in range(40):
        net = TwoNodes(seed=seed)
        net.start()
        b_dies_and_a_says_so(net)
        starts.append(net.first_sent[A] - 10.0)
    assert all(CHECK_WINDOW - 1e-9 <= t < MOVE_JITTER for t in starts), starts
    at_check = sum(1 for t in starts if t < CHECK_WINDOW + 1e-9)
    assert 3 <= at_check <= 25, starts  # ~30% of the draws fell within the 0.3 s check
    assert max(starts) > CHECK_WINDOW + 0.3  # the rest still spread over the window


def test_a_session_lost_without_a_notice_jitters_from_when_it_was_lost() -> None:
    """No other node said anything: the client gives up its silent node by its heartbeats,
    and the move's jitter runs from then."""
    net = TwoNodes()
    net.start()
    net.dead.add(B)
    net.now = 10.0
    net.pump()
    net.run(80.0)  # its idle heartbeat (every 55 s at most) goes unanswered
    assert net.client.server == A and net.client.conn is ConnState.CONNECTED
    lost = [e for e in net.events if isinstance(e, Disconnected)]
    assert lost and lost[0].reason != cl.LOST_NODE
    assert net.first_sent[A] > 10.0 + CHECK_WINDOW


def test_a_notice_while_the_node_lives_costs_one_check_and_moves_nothing() -> None:
    net = TwoNodes()
    net.start()
    before = net.sent_to[B]
    for _ in range(50):  # a flood of forged hints
        net.client.receive_datagram(notice(), net.now, source=A)
    net.pump()
    net.run(net.now + 3.0)
    assert net.client.server == B and net.client.conn is ConnState.CONNECTED
    assert net.sent_to[B] - before <= 3  # the check's heartbeats, not one per hint
    assert not [e for e in net.events[2:] if isinstance(e, Connected)]


def test_datagrams_from_unknown_addresses_or_other_messages_are_dropped() -> None:
    net = TwoNodes()
    net.start()
    dropped = net.client.dropped
    net.client.receive_datagram(notice(), net.now, source=("10.6.6.6", 7800))
    net.client.receive_datagram(m.encode_message(m.Error(0, m.ErrorCode.AUTH_FAILED, "x")),
                                net.now, source=A)
    assert net.client.dropped == dropped + 2
    net.run(net.now + 2.0)
    assert net.client.server == B and net.client.conn is ConnState.CONNECTED


def test_a_first_login_to_a_dead_server_moves_on_after_login_try() -> None:
    net = TwoNodes()
    net.dead.add(B)
    net.client.connect(0.0)
    net.pump()
    net.run(LOGIN_TRY + 3.0)
    assert net.client.conn is ConnState.CONNECTED and net.client.server == A


def test_a_busy_server_that_answered_the_hello_gets_its_own_window_for_the_welcome() -> None:
    """b answers the Hello just within LOGIN_TRY and the Login 1.5 s later (its backlog): the
    client, shown b lives, waits for the Welcome rather than starting over elsewhere."""
    net = TwoNodes()
    b, client = net.nodes[B], net.client

    def held_until(t: float) -> list[bytes]:
        """The client's datagrams up to ``t`` (its retransmissions): b reads them late."""
        out: list[bytes] = []
        while (at := client.get_timer()) is not None and at <= t:
            client.handle_timer(at)
            out += client.datagrams_to_send()
        return out

    client.connect(0.0)
    hello = client.datagrams_to_send()
    held_until(LOGIN_TRY - 0.5)
    b.receive_datagram(hello[0], net.addr, LOGIN_TRY - 0.5)
    for data, _ in b.datagrams_to_send():
        client.receive_datagram(data, LOGIN_TRY - 0.5, source=B)
    login = client.datagrams_to_send()
    held_until(LOGIN_TRY + 1.0)
    assert client.server == B and client.conn is ConnState.LOGGING_IN
    b.receive_datagram(login[0], net.addr, LOGIN_TRY + 1.0)
    for data, _ in b.datagrams_to_send():
        client.receive_datagram(data, LOGIN_TRY + 1.0, source=B)
    assert client.conn is ConnState.CONNECTED and client.server == B


def test_a_client_configured_with_one_node_learns_the_others_at_login_and_moves() -> None:
    net = TwoNodes(listed=(B,))
    assert not net.client.roaming
    for core in net.nodes.values():
        core.set_access_servers(["10.0.0.1:7800", "10.0.0.2:7800", "not an address"])
    net.start()
    assert net.client.roaming and net.client.servers is not None
    assert net.client.servers.servers == (B, A)  # its own first, a bad entry skipped
    b_dies_and_a_says_so(net)


def test_a_client_of_one_server_logs_in_again_there_at_once() -> None:
    """No list (a lone server): a lost session logs in again at once, no jitter, no move."""
    net = TwoNodes(listed=(B,))
    net.start()
    net.dead.add(B)  # restarting: it answers nothing for now
    net.client.receive_datagram(notice(), net.now, source=None)  # its own server's notice
    net.pump()
    net.run(net.now + CHECK_WINDOW + 0.01)
    assert net.client.server == B and net.client.conn is ConnState.LOGGING_IN


def test_a_first_login_to_a_list_of_dead_servers_ends_once_each_failed() -> None:
    net = TwoNodes()
    net.dead |= {A, B}
    net.client.connect(0.0)
    net.pump()
    net.run(LOGIN_TRY + 0.1)
    assert net.client.servers is not None and not net.client.servers.exhausted  # b failed
    net.run(2 * LOGIN_TRY + RELOGIN_CAP + 0.1)
    assert net.client.servers.exhausted  # and a: the adapter's open() gives up
    assert net.sent_to[A] and net.sent_to[B]
