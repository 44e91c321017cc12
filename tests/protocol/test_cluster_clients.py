"""Which shards of a node's published client list a set of logins and logouts dirties
(``ptt.protocol.cluster_clients``): only those are written to etcd again; who tells whom of a
dead node's clients, and over how long they come back; who of the survivors claims its groups
first."""

from __future__ import annotations

import pytest

from ptt.errors import ConfigError
from ptt.protocol.client import CHECK_WINDOW
from ptt.protocol.cluster_clients import (
    MOVE_RATE,
    NOTICE_REPEATS,
    SHARDS,
    ClientShards,
    decode_clients,
    encode_client,
    move_spread,
    notice_times,
    shard_of,
    survivor_for,
    told_by,
)
from ptt.protocol.server_list import MAX_MOVE_SPREAD, MIN_MOVE_SPREAD, ServerList


def test_a_login_dirties_its_shard_only() -> None:
    shards = ClientShards(8)
    shards.change({3: ("127.0.0.1", 5003), 11: ("127.0.0.1", 5011), 5: ("::1", 5005)}, ())
    assert shards.dirty == {3, 5}  # 3 and 11 share shard 3
    taken = shards.take()
    assert sorted(taken) == [3, 5]
    assert sorted(decode_clients(taken[3])) == [("127.0.0.1", 5003), ("127.0.0.1", 5011)]
    assert decode_clients(taken[5]) == [("::1", 5005)]
    assert shards.dirty == frozenset() and shards.take() == {}


def test_a_logout_dirties_its_shard_and_an_emptied_shard_is_written_empty() -> None:
    shards = ClientShards(8)
    shards.change({3: ("127.0.0.1", 5003), 11: ("127.0.0.1", 5011), 6: ("127.0.0.1", 5006)}, ())
    shards.take()
    shards.change({}, {11, 6})
    assert shards.take() == {3: b"127.0.0.1:5003", 6: b""}  # b"": the node deletes its key


def test_what_does_not_change_the_list_dirties_nothing() -> None:
    shards = ClientShards(8)
    shards.change({3: ("127.0.0.1", 5003)}, ())
    shards.take()
    shards.change({}, {4, 12})  # sessions never listed
    shards.change({3: ("127.0.0.1", 5003)}, ())  # the same address again
    assert shards.dirty == frozenset()
    shards.change({3: ("127.0.0.1", 6003)}, ())  # the session moved: its shard changes
    assert shards.take() == {3: b"127.0.0.1:6003"}


def test_a_session_that_comes_and_goes_between_writes_still_rewrites_its_shard() -> None:
    """Its shard was written with it, or may have been: written again without it."""
    shards = ClientShards(8)
    shards.change({2: ("127.0.0.1", 5002)}, ())
    shards.change({}, {2})
    assert shards.take() == {2: b""}


def test_only_a_client_that_came_or_moved_makes_the_list_urgent() -> None:
    """A client missing from the written list is not told when its node dies; a line left
    for one that went costs a needless notice: departures alone may wait for a later write."""
    shards = ClientShards(8)
    assert not shards.urgent
    shards.change({3: ("127.0.0.1", 5003), 11: ("127.0.0.1", 5011)}, ())
    assert shards.urgent
    shards.take()
    shards.change({}, {11})  # a departure: dirty, not urgent
    assert shards.dirty == {3} and not shards.urgent
    shards.change({5: ("127.0.0.1", 5005)}, ())  # an arrival: both written together
    assert shards.urgent
    assert shards.take() == {3: b"127.0.0.1:5003", 5: b"127.0.0.1:5005"}
    assert not shards.urgent
    shards.change({3: ("127.0.0.1", 6003)}, ())  # a client moved: its new address is urgent
    assert shards.urgent
    failed = shards.take()
    shards.unwritten(failed)  # a failed write: what it held may have been new
    assert shards.urgent


def test_a_failed_write_is_written_again_with_the_content_of_then() -> None:
    shards = ClientShards(8)
    shards.change({1: ("127.0.0.1", 5001), 2: ("127.0.0.1", 5002)}, ())
    failed = shards.take()
    shards.change({9: ("127.0.0.1", 5009)}, ())
    shards.unwritten(failed)
    taken = shards.take()
    assert sorted(taken) == [1, 2]
    assert sorted(decode_clients(taken[1])) == [("127.0.0.1", 5001), ("127.0.0.1", 5009)]


def test_a_burst_of_logins_dirties_at_most_one_shard_each_and_the_union_is_everyone() -> None:
    shards = ClientShards()
    sessions = {(sid * 2654435761) % 2**32: ("127.0.0.1", 10_000 + sid) for sid in range(1, 301)}
    shards.change(sessions, ())
    dirty = shards.dirty
    assert dirty == {shard_of(s) for s in sessions} and len(dirty) <= len(sessions)
    taken = shards.take()
    assert sorted(a for data in taken.values() for a in decode_clients(data)) == sorted(
        sessions.values())
    assert len(shards) == 300 and len(taken) <= SHARDS


def test_a_damaged_line_is_skipped() -> None:
    assert decode_clients(b"127.0.0.1:5001\nnot an address\n[::1]:5002") == [
        ("127.0.0.1", 5001), ("::1", 5002)]


def test_no_shards_is_refused() -> None:
    with pytest.raises(ConfigError):
        ClientShards(0)


# --- who tells a dead node's clients (told_by) ------------------------------------------------

DEAD_CLIENTS = [("127.0.0.1", 20000 + i) for i in range(1000)] + [("::1", 40000 + i)
                                                                   for i in range(200)]


def test_each_client_of_a_dead_node_is_told_by_exactly_one_survivor() -> None:
    live = ["a", "c", "d"]  # b died
    shares = {n: told_by(DEAD_CLIENTS, "b", n, live) for n in live}
    told = [addr for share in shares.values() for addr in share]
    assert sorted(told) == sorted(DEAD_CLIENTS)  # everyone, once
    # the survivors share the work: 400 each expected of 1,200
    assert all(300 <= len(share) <= 500 for share in shares.values()), {
        n: len(s) for n, s in shares.items()}


def test_the_share_does_not_depend_on_how_a_survivor_lists_the_live_nodes() -> None:
    """Every survivor ranks alike: the dead node and the survivor itself in the list or not,
    in any order, give the same shares."""
    a = told_by(DEAD_CLIENTS, "b", "a", ["a", "c"])
    assert told_by(DEAD_CLIENTS, "b", "a", ["c", "b", "a"]) == a
    assert told_by(DEAD_CLIENTS, "b", "a", ["c"]) == a
    c = told_by(DEAD_CLIENTS, "b", "c", ["a", "b", "c"])
    assert not set(a) & set(c) and len(a) + len(c) == len(DEAD_CLIENTS)


def test_a_survivor_that_dies_too_leaves_its_share_to_the_others() -> None:
    """Ranked again over the nodes still live: the dead survivor's clients go to the others,
    and nobody else's teller changes (rendezvous hashing)."""
    before = {n: set(told_by(DEAD_CLIENTS, "b", n, ["a", "c", "d"])) for n in "acd"}
    after = {n: set(told_by(DEAD_CLIENTS, "b", n, ["a", "d"])) for n in "ad"}
    assert after["a"] | after["d"] == set(DEAD_CLIENTS)
    assert before["a"] <= after["a"] and before["d"] <= after["d"]
    assert after["a"] - before["a"] | after["d"] - before["d"] == before["c"]


def test_a_lone_survivor_tells_every_client() -> None:
    assert told_by(DEAD_CLIENTS, "b", "a", ["a"]) == DEAD_CLIENTS
    assert told_by(DEAD_CLIENTS, "b", "a", []) == DEAD_CLIENTS
    assert told_by([], "b", "a", ["a", "c"]) == []


def test_each_dead_node_splits_its_clients_its_own_way() -> None:
    """The ranking includes the dead node: one survivor is not every dead node's teller of
    the same addresses."""
    from_b = told_by(DEAD_CLIENTS, "b", "a", ["a", "c"])
    from_d = told_by(DEAD_CLIENTS, "d", "a", ["a", "c"])
    assert from_b != from_d


def test_a_big_dead_nodes_clients_spread_their_logins_over_their_share_at_the_rate() -> None:
    """A survivor tells its whole share at once; the window it asks for holds the share at
    MOVE_RATE logins a second (never less than MIN_MOVE_SPREAD), and the clients' draws in it
    (ServerList.move) arrive at about that rate."""
    assert move_spread(0) == move_spread(MOVE_RATE // 4) == MIN_MOVE_SPREAD
    assert move_spread(MOVE_RATE // 2) == 0.5 and move_spread(MOVE_RATE) == 1.0
    assert move_spread(2500) == 2500 / MOVE_RATE
    share = 2500
    spread = move_spread(share)
    starts = [ServerList(["b", "a", "c"], k.to_bytes(4, "big")).move(0.0, "a", spread)
              for k in range(share)]
    assert 0.0 <= min(starts) and max(starts) < spread
    per_tenth = [sum(1 for t in starts if k * spread / 10 <= t < (k + 1) * spread / 10)
                 for k in range(10)]
    assert all(0.8 * MOVE_RATE * spread / 10 < n < 1.2 * MOVE_RATE * spread / 10
               for n in per_tenth), per_tenth
    # a forged or mistaken window is capped: a client never waits for nothing for long
    assert ServerList(["b", "a"], b"x").move(0.0, "a", 3600.0) < MAX_MOVE_SPREAD


@pytest.mark.parametrize("share", [1, 700, 2500, 8400])
def test_a_survivor_repeats_its_notice_only_after_every_told_client_has_sent_its_login(
        share: int) -> None:
    """A repeat reaches every client of the share not back on the survivor yet; one the first
    notice reached is waiting for its moment in the window (or past its session check), and has
    no use for it. So the repeats come after the window, and after the check: by then every
    told client has sent its Login, and a repeat goes only to one whose notice was lost (told
    within a second and a half of the window's end, not at its next heartbeat) or whose Login
    is not answered yet."""
    spread = move_spread(share)
    repeats = notice_times(spread)
    assert len(repeats) == len(NOTICE_REPEATS) and list(repeats) == sorted(repeats)
    starts = [ServerList(["b", "a", "c"], k.to_bytes(4, "big")).move(0.0, "a", spread)
              for k in range(min(share, 2500))]
    last_login = max(max(starts), CHECK_WINDOW)
    assert last_login < repeats[0] <= spread + 0.5
    assert repeats[-1] <= min(spread, MAX_MOVE_SPREAD) + 1.5
    # the first notice's window is what the clients draw in, capped as they cap it
    assert notice_times(3600.0)[0] == MAX_MOVE_SPREAD + NOTICE_REPEATS[0]


def test_a_dead_nodes_groups_are_shared_out_by_the_rule_its_clients_are() -> None:
    """``survivor_for`` (which survivor claims a group first, ptt.cluster.ownership) ranks as
    ``told_by`` does: the same node for the same item, whatever the order of the live nodes,
    and every survivor gets a share."""
    live = ["c", "a", "b", "d"]
    for addr in DEAD_CLIENTS[:50]:
        (teller,) = [n for n in "acd" if addr in told_by([addr], "b", n, live)]
        assert survivor_for(encode_client(addr), "b", live) == teller
        assert survivor_for(encode_client(addr), "b", ["d", "a", "c"]) == teller
    groups = [f"g{k:05d}".encode() for k in range(2520)]
    shares = {n: sum(1 for g in groups if survivor_for(g, "b", live) == n) for n in "acd"}
    assert all(700 <= k <= 980 for k in shares.values()), shares
    with pytest.raises(ConfigError, match="no live node"):
        survivor_for(b"g1", "b", ["b"])
