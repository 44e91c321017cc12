"""ptt.net.reader on real loopback sockets: requests and voice before keepalives, bounded."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ptt.net.reader import Handler, PriorityReader, urgent

HEARTBEAT = b"K" + bytes(39)  # the first byte is all the reader looks at
REQUEST = b"S" + bytes(60)
VOICE = b"V" + bytes(100)
LOGIN = b"\x96" + bytes(80)  # a plain control message (msgpack array)


def logins(count: int, first: int = 0) -> list[bytes]:
    """``count`` different plain datagrams (a copy of one still waiting is dropped)."""
    return [LOGIN + i.to_bytes(2, "big") for i in range(first, first + count)]


def plain(order: list[bytes]) -> int:
    return sum(1 for d in order if d.startswith(LOGIN))


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.connect(server.getsockname())
    yield server, client
    server.close()
    client.close()


def send(client: socket.socket, datagrams: list[bytes]) -> None:
    for d in datagrams:
        client.send(d)
    time.sleep(0.05)  # loopback delivers at once; give the kernel a moment anyway


def recording(order: list[bytes], then: Callable[[int], bool] = lambda n: True) -> Handler:
    """A handler that notes each datagram, then asks ``then(how many so far)`` to go on."""
    def handle(data: bytes, addr: Any, now: float) -> bool:
        order.append(data)
        return then(len(order))
    return handle


def test_what_counts_as_urgent() -> None:
    assert urgent(REQUEST) and urgent(VOICE)
    assert not urgent(HEARTBEAT) and not urgent(LOGIN) and not urgent(b"")


def test_a_request_behind_five_hundred_keepalives_is_handled_first(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    order: list[bytes] = []
    send(client, [HEARTBEAT] * 250 + [LOGIN, REQUEST, VOICE] + [HEARTBEAT] * 250)
    reader = PriorityReader(server, recording(order), time.monotonic,
                            budget=10.0)
    assert reader.run() is False  # everything done within the budget
    assert len(order) == 503
    assert order[:2] == [REQUEST, VOICE]  # taken off the socket first, handled at once
    # then the sessions' keepalives in arrival order, and plain datagrams only after them: no
    # unauthenticated traffic takes the sessions' turn
    assert order[2:] == [HEARTBEAT] * 500 + [LOGIN]


def test_a_plain_flood_beyond_the_backlog_never_stops_keepalives_being_read(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """Plain datagrams past their backlog are dropped by the reader, which keeps reading: the
    keepalives behind them are taken and handled, none left to the kernel to drop."""
    server, client = pair
    order: list[bytes] = []
    send(client, logins(300) + [HEARTBEAT] * 40 + logins(300, 300) + [HEARTBEAT] * 40)
    reader = PriorityReader(server, recording(order), time.monotonic,
                            drain_max=1024, backlog_max=100, chunk=4, budget=10.0)
    assert reader.run() is False
    assert order.count(HEARTBEAT) == 80
    assert order[:80] == [HEARTBEAT] * 80  # before any plain datagram
    assert plain(order) == 100 and reader.plain_dropped == 500


def test_a_request_arriving_while_the_backlog_is_worked_waits_for_a_chunk_only(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    order: list[bytes] = []

    def request_at_20(n: int) -> bool:
        if n == 20:  # a request comes in while keepalives are being handled
            client.send(REQUEST)
            time.sleep(0.005)
        return True

    send(client, [HEARTBEAT] * 300)
    reader = PriorityReader(server, recording(order, request_at_20), time.monotonic, chunk=8, budget=10.0)
    assert reader.run() is False
    at = order.index(REQUEST)
    assert 20 <= at <= 20 + 8  # the end of the chunk it arrived in, not after 280 keepalives
    assert order.count(HEARTBEAT) == 300


def test_the_budget_hands_the_loop_a_turn_and_the_backlog_is_kept(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    order: list[bytes] = []

    def slow(n: int) -> bool:
        time.sleep(0.001)
        return True

    send(client, [HEARTBEAT] * 100)
    reader = PriorityReader(server, recording(order, slow), time.monotonic, chunk=4, budget=0.01)
    assert reader.run() is True  # budget spent, work left
    first = len(order)
    assert 4 <= first < 100 and len(reader) == 100 - first
    calls = 1
    while reader.run():
        calls += 1
        assert calls < 100
    assert len(order) == 100 and len(reader) == 0


def test_the_backlog_is_bounded_and_the_rest_waits_in_the_kernel(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    order: list[bytes] = []
    send(client, [HEARTBEAT] * 200)
    reader = PriorityReader(server, recording(order), time.monotonic,
                            drain_max=256, backlog_max=50, chunk=10, budget=10.0)
    assert reader.run() is False
    assert len(order) == 200 and reader.most_backlog <= 50


def test_a_closed_server_stops_the_reader_at_once(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    order: list[bytes] = []

    send(client, [REQUEST] * 5 + [HEARTBEAT] * 5)
    reader = PriorityReader(server, recording(order, lambda n: n < 3), time.monotonic, budget=10.0)
    assert reader.run() is False
    assert len(order) == 3


def test_bad_settings_are_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    server, _ = pair
    with pytest.raises(ValueError):
        PriorityReader(server, lambda d, a, n: True, time.monotonic, chunk=0)
    with pytest.raises(ValueError):
        PriorityReader(server, lambda d, a, n: True, time.monotonic, budget=0)


def test_logins_from_known_hosts_go_before_other_plain_datagrams(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.3", 0))
    order: list[bytes] = []
    returning = [b"\x95" + bytes([i]) + bytes(39) for i in range(3)]
    try:
        for data in logins(200):
            stranger.sendto(data, server.getsockname())
        send(client, returning + [HEARTBEAT] * 3)
        known_host = client.getsockname()[0]
        reader = PriorityReader(server, recording(order), time.monotonic, budget=10.0,
                                known=lambda addr: addr[0] == known_host)
        assert reader.run() is False
    finally:
        stranger.close()
    assert order[:6] == [HEARTBEAT] * 3 + returning  # before the 200
    assert order[6:] == logins(200)


def test_plain_datagrams_without_rate_budget_are_dropped_unparsed(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    order: list[bytes] = []
    send(client, logins(50) + [HEARTBEAT] * 5 + [REQUEST])
    budget = iter([True] * 10 + [False] * 100)
    reader = PriorityReader(server, recording(order), time.monotonic, budget=10.0,
                            admit=lambda addr, now: next(budget))
    assert reader.run() is False
    assert plain(order) == 10 and reader.plain_refused == 40
    assert order.count(HEARTBEAT) == 5 and order.count(REQUEST) == 1


def test_a_copy_of_a_plain_datagram_still_waiting_is_dropped(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """A client retransmits its login while it waits: copies of one still in the backlog are
    not queued again (each would be parsed and answered), a different datagram is, and a copy
    that arrives after the first was handled is handled too."""
    server, client = pair
    order: list[bytes] = []
    first, second = logins(2)
    send(client, [first] * 30 + [second] + [first] * 10)
    reader = PriorityReader(server, recording(order), time.monotonic, budget=10.0)
    assert reader.run() is False
    assert order == [first, second] and reader.plain_repeated == 39
    send(client, [first])
    assert reader.run() is False
    assert order == [first, second, first]


def test_a_plain_datagram_that_waited_past_its_senders_patience_is_dropped_unhandled(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """A login that waited plain_max_wait in the backlog was given up by its client (it logs
    in elsewhere): it is dropped when its turn comes, and what arrives later is handled."""
    server, client = pair
    now = [0.0]
    order: list[bytes] = []

    def slow(n: int) -> bool:
        if n == 2:  # the first login (after the keepalive) took long: the rest waited too long
            now[0] += 2.5
        return True

    send(client, logins(5) + [HEARTBEAT])
    reader = PriorityReader(server, recording(order, slow), lambda: now[0], budget=100.0,
                            plain_max_wait=2.0)
    assert reader.run() is False
    assert order == [HEARTBEAT, logins(1)[0]] and reader.plain_stale == 4
    send(client, logins(1, 5))
    assert reader.run() is False
    assert order[-1] == logins(1, 5)[0] and reader.plain_stale == 4


def test_a_login_whose_client_waits_longer_is_served_past_login_try_while_it_resends(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """A Login answering this node's notice (``patient``): its client waits up to twice
    plain_max_wait and resends meanwhile. Past plain_max_wait it is served while a copy came
    within RESEND_WITHIN (dropping it would send its next copy to the back of the backlog);
    one whose copies stopped (its client gave up), one not patient, and one past twice
    plain_max_wait are dropped."""
    server, client = pair
    now = [0.0]
    order: list[bytes] = []
    first, resent, silent, other, late = logins(5)
    patient = {resent, silent, late}

    def slow(n: int) -> bool:
        if order[-1] == first:  # the first login took long; meanwhile two clients resent
            now[0] += 2.5
            send(client, [resent, other])
        elif order[-1] == HEARTBEAT and n > 3:
            now[0] += 4.5  # far past: twice plain_max_wait
            send(client, [late])
        return True

    send(client, [first, resent, silent, other, HEARTBEAT])
    # a look at the socket between any two datagrams: each copy is seen before the next turn
    reader = PriorityReader(server, recording(order, slow), lambda: now[0], budget=100.0,
                            chunk=1, patient=patient.__contains__, plain_max_wait=2.0)
    assert reader.run() is False
    assert order == [HEARTBEAT, first, resent]
    assert (reader.plain_late, reader.plain_stale, reader.plain_repeated) == (1, 2, 2)
    send(client, [late, HEARTBEAT])
    assert reader.run() is False
    assert order[3:] == [HEARTBEAT] and reader.plain_stale == 3 and reader.plain_late == 1
