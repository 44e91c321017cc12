"""Presence news of a large group in batches: members joining together cost O(N) datagrams.

Each member that comes online or goes offline is news to every member in the group. Told one by
one, N members joining within a second cost N*(N-1)/2 datagrams (44,850 for 300); gathered per
group (``server_groups.PRESENCE_INTERVAL``) they cost each member a batch per interval. Every
member must still end with the group's true online set, and see each change once.
"""

from __future__ import annotations

from collections.abc import Callable

from ptt.protocol import messages as m
from ptt.protocol.client import ConnState, PresenceChanged
from ptt.protocol.messages import encode_message
from ptt.protocol.server_groups import PRESENCE_BATCH_BYTES, PRESENCE_INTERVAL
from ptt.wire.control import MAX_DATAGRAM
from tests.protocol.simnet import SimNet

N = 300


def _count_presence(net: SimNet) -> Callable[[], int]:
    """Counts the presence datagrams the server sends (one per member an announcement reaches);
    the server's own ``Outbox.announce`` does the sending."""
    sent = [0]
    announce = net.server.outbox.announce

    def counting(g: object, msg: m.Message, skip: object = None, **kw: object) -> None:
        if type(msg).__name__ in ("Presence", "PresenceBatch"):
            before = len(net.server.outbox.datagrams)
            announce(g, msg, skip, **kw)  # type: ignore[arg-type]
            sent[0] += len(net.server.outbox.datagrams) - before
        else:
            announce(g, msg, skip, **kw)  # type: ignore[arg-type]

    net.server.outbox.announce = counting  # type: ignore[method-assign]
    return lambda: sent[0]


def _big_group(seed: int, n: int = N) -> tuple[SimNet, list[str]]:
    net = SimNet(seed=seed)
    users = [f"member-{i:04d}" for i in range(n)]
    for u in users:
        net.add_user(u)
    net.add_group("big", users, 1)
    for u in users:
        net.clients[u].connect(net.now)
    net.run_until(net.now + 2.0)
    assert all(net.clients[u].conn is ConnState.CONNECTED for u in users)
    return net, users


def _join_within_a_second(net: SimNet, users: list[str]) -> None:
    start = net.now
    for i, u in enumerate(users):
        net.run_until(start + i / len(users))
        net.clients[u].join("big", net.now)


def test_three_hundred_members_joining_within_a_second_cost_linear_presence_datagrams() -> None:
    net, users = _big_group(seed=41)
    presence = _count_presence(net)
    _join_within_a_second(net, users)
    net.run_until(net.now + 2 * PRESENCE_INTERVAL + 1.0)
    # one per join was N*(N-1)/2 = 44,850; batches every PRESENCE_INTERVAL cost at most
    # N per batch: 1 s of joins is 3-4 batches
    assert presence() <= 5 * N, presence()
    everyone = set(users)
    for u in users:
        g = net.clients[u].groups["big"]
        assert g.state is not None and g.online == everyone, u
    # each member saw each other member come online once, and nobody go offline
    for u in users:
        news = [ev for ev in net.client_events[u] if isinstance(ev, PresenceChanged)]
        assert all(ev.online and ev.group == "big" for ev in news), u
        assert len(news) == len({ev.user for ev in news}), u
        assert {ev.user for ev in news} | {mi.user for mi in net.clients[u].groups["big"]
                                           .state.members if mi.online} == everyone  # type: ignore[union-attr]


def test_members_leaving_and_vanishing_together_leave_every_view_true() -> None:
    net, users = _big_group(seed=42, n=150)
    _join_within_a_second(net, users)
    net.run_until(net.now + 2.0)
    presence = _count_presence(net)
    leaving, vanishing = users[:40], users[40:70]
    for i, u in enumerate(leaving):  # a Leave each, within half a second
        net.run_until(net.now + 0.5 / len(leaving))
        net.clients[u].leave("big", net.now)
    gone = set(vanishing)  # their link is cut: the server ends their sessions at its timeout
    send = net._send

    def cut(dest: object, data: bytes) -> None:
        if not (dest in gone or isinstance(dest, tuple) and dest[1] in cut_addrs):
            send(dest, data)

    cut_addrs = {net.addrs[u] for u in gone}

    net._send = cut  # type: ignore[method-assign]
    # nobody talks: the vanished are idle sessions, ended at the idle timeout
    net.run_until(net.now + net.server.config.idle_session_timeout + 3.0)
    stay = set(users[70:])
    assert set(net.server.groups["big"].online) == stay
    for u in users[70:]:
        assert net.clients[u].groups["big"].online == stay, u
    # one by one: a datagram per member still in for each of the 70, about 7,500
    assert presence() <= 1_500, presence()


def test_a_lone_change_is_not_delayed_and_one_that_is_undone_is_no_news() -> None:
    net = SimNet(seed=43)
    for u in ("ann", "bob", "cat"):
        net.add_user(u)
    net.add_group("g", ["ann", "bob", "cat"], 1)
    for u in ("ann", "bob"):
        net.clients[u].connect(net.now)
        net.clients[u].join("g", net.now)
    net.run_until(net.now + 2 * PRESENCE_INTERVAL + 1.0)
    ann = net.clients["ann"]
    assert ann.groups["g"].online == {"ann", "bob"}
    net.clients["cat"].connect(net.now)
    net.run_until(net.now + 0.5)
    t = net.now
    net.clients["cat"].join("g", t)
    net.run_until(t + 0.05)  # the group had no news for a while: this one leaves at once
    assert ann.groups["g"].online == {"ann", "bob", "cat"}
    net.client_events["ann"].clear()
    net.clients["cat"].leave("g", net.now)  # gathered: the group just had news
    net.run_until(net.now + 0.02)
    net.clients["cat"].join("g", net.now)
    net.run_until(net.now + PRESENCE_INTERVAL + 0.2)
    assert ann.groups["g"].online == {"ann", "bob", "cat"}
    assert not [ev for ev in net.client_events["ann"] if isinstance(ev, PresenceChanged)]


def test_a_batch_of_long_names_is_split_to_fit_a_datagram() -> None:
    net = SimNet(seed=44)
    watcher = "watcher"
    names = [f"a-rather-long-volunteer-name-{i:05d}-of-the-north-gate-team" for i in range(400)]
    for u in (watcher, *names):
        net.add_user(u)
    net.add_group("g", [watcher, *names], 1)
    net.clients[watcher].connect(net.now)
    net.clients[watcher].join("g", net.now)
    net.run_until(net.now + 1.0)
    out: list[m.PresenceBatch] = []
    announce = net.server.outbox.announce

    def keep(g: object, msg: m.Message, skip: object = None, **kw: object) -> None:
        if isinstance(msg, m.PresenceBatch):
            out.append(msg)
        announce(g, msg, skip, **kw)  # type: ignore[arg-type]

    net.server.outbox.announce = keep  # type: ignore[method-assign]
    gathered = net.server.groups["g"]
    for u in names:  # as though they all joined in one instant (the core needs no datagrams)
        gathered.online[u] = 1
        net.server.directory.presence_changed(gathered, u, net.now + 0.1)
    net.server.handle_timer(net.now + 0.1 + PRESENCE_INTERVAL)
    sizes = [sum(len(c.user.encode()) + 3 for c in b.changes) for b in out]
    assert sum(len(b.changes) for b in out) == len(names)
    assert len(out) >= 2 and max(sizes) <= PRESENCE_BATCH_BYTES
    assert all(len(encode_message(b)) < MAX_DATAGRAM for b in out)


def _batches_per_member(net: SimNet) -> dict[object, list[float]]:
    """The moments each member's address is sent a PresenceBatch."""
    got: dict[object, list[float]] = {}
    announce = net.server.outbox.announce

    def counting(g: object, msg: m.Message, skip: object = None, **kw: object) -> None:
        before = len(net.server.outbox.datagrams)
        announce(g, msg, skip, **kw)  # type: ignore[arg-type]
        if isinstance(msg, m.PresenceBatch):
            for _, addr in net.server.outbox.datagrams[before:]:
                got.setdefault(addr, []).append(net.now)

    net.server.outbox.announce = counting  # type: ignore[method-assign]
    return got


def test_a_member_whose_joined_showed_every_pending_change_gets_no_batch() -> None:
    """A batch is news only to the members that joined before its last change: one that
    joined after it had every change in its Joined (a dead node's clients arriving together
    were sent 2.14 batches each, bench_login_cost). The others still get it, and every member
    ends with the true online set."""
    net, users = _big_group(seed=7, n=4)
    a, b, c, late = users
    got = _batches_per_member(net)
    start = net.now
    net.clients[a].join("big", net.now)  # a batch at once: news to nobody else yet
    net.run_until(start + 0.1)
    net.clients[b].join("big", net.now)  # pending: the next batch, PRESENCE_INTERVAL later
    net.run_until(start + 0.2)
    net.clients[c].join("big", net.now)  # joins after b's change: its Joined shows a, b, c
    net.run_until(start + PRESENCE_INTERVAL + 0.3)
    assert len(got[net.addrs[a]]) == 1  # b and c came online
    assert len(got[net.addrs[b]]) == 1  # c came online
    assert net.addrs[c] not in got  # nothing it did not see in its Joined
    net.clients[late].join("big", net.now)  # a change after c joined: news to c again
    net.run_until(net.now + PRESENCE_INTERVAL + 0.3)
    assert len(got[net.addrs[c]]) == 1
    for u in users:
        assert net.clients[u].groups["big"].online == set(users), u


def test_presence_waits_for_the_end_of_a_notices_window_one_batch_a_member() -> None:
    """A survivor's notice asks a dead node's clients to log in over its window; they arrive
    through it in their groups. Presence news waits for the window's end: one batch for each
    member that arrived before the last change (none to the last), where each got a batch per
    PRESENCE_INTERVAL of the window (1.9 a moved client at 2,500, bench_login_cost). A repeat
    of the notice holds nothing; every member ends with the true online set."""
    window = 2.0
    for repeat in (False, True):
        net, users = _big_group(seed=11, n=8)
        got = _batches_per_member(net)
        start = net.now
        elsewhere = ("10.9.9.9", 4000)  # a moved client's address (its notice is not routed)
        assert net.server.announce_restart([elsewhere], start, window, repeat=repeat) == 1
        assert [a for _, a in net.server.datagrams_to_send()] == [elsewhere]
        for i, u in enumerate(users):  # arriving through the window, as moved clients do
            net.run_until(start + 0.05 + i * (window - 0.2) / len(users))
            net.clients[u].join("big", net.now)
        net.run_until(start + window + PRESENCE_INTERVAL + 0.3)
        for u in users:
            assert net.clients[u].groups["big"].online == set(users), (repeat, u)
        counts = [len(got.get(net.addrs[u], [])) for u in users]
        if repeat:  # no hold: a batch per interval to the early ones
            assert max(counts) >= 3, counts
            continue
        assert counts == [1] * (len(users) - 1) + [0], counts
        assert min(t for ts in got.values() for t in ts) >= start + window
