"""Which shards of a node's published client list a set of logins and logouts dirties
(``ptt.protocol.cluster_clients``): only those are written to etcd again."""

from __future__ import annotations

import pytest

from ptt.errors import ConfigError
from ptt.protocol.cluster_clients import SHARDS, ClientShards, decode_clients, shard_of


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
