"""The text page store on each backend: the embedded SQLite ``PageStore`` and the cluster's
``PgPageStore`` (a real PostgreSQL, the shared engine of tests/cluster/fixtures.py), through
the interface the server uses; and what only the shared one does (several nodes at once)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ptt.protocol.directory import Directory
from ptt.server.pagestore import PageStore
from ptt.server.store import Store
from tests.server.conftest import Opener

SALT = b"s" * 16
VERIFIER = b"v" * 32
PUB = {u: bytes([i]) * 64 for i, u in enumerate(("ann", "bob", "cat"), 1)}
NOW = 1_700_000_000_000


@pytest.fixture
def open_pages(open_directory: Opener) -> Iterator[tuple[Directory, Callable[[], Any]]]:
    """The directory and an opener of the page store beside it (again on each call: a
    restarted server, or another node)."""
    directory = open_directory()
    opened: list[Any] = []

    def open_one() -> Any:
        if isinstance(directory, Store):
            opened.append(PageStore(directory))
        else:
            from ptt.cluster.pagestore import PgPageStore
            opened.append(PgPageStore(directory.dsn))  # type: ignore[attr-defined]
        return opened[-1]
    yield directory, open_one
    for p in opened:
        if not isinstance(p, PageStore):
            p.close()


def _add(pages: Any, body: bytes, expires: int = NOW + 60_000, epoch: int = 0,
         group: str = "ops") -> int:
    return int(pages.add(group, "ann", "", body, epoch, False, NOW, expires,
                         frozenset({"bob", "cat"})))


def test_pages_and_receipts_are_kept_until_they_expire(
        open_pages: tuple[Directory, Callable[[], Any]]) -> None:
    _, open_one = open_pages
    pages = open_one()
    first = _add(pages, b"Gate 3 closed", expires=NOW + 1_000)
    second = _add(pages, "Tor 5 offen \u2713".encode())
    assert second > first
    pages.save_receipts([(first, "bob", "bob-desk"), (first, "bob", "bob-desk"),
                         (second, "cat", "cat-phone"), (999_999, "bob", "x")],
                        [(first, "bob", "bob-desk")], {("bob", "bob-desk"): first})
    # a restarted server (or another node) reads the same
    kept = {p.page_id: p for p in open_one().retained(NOW)}
    assert sorted(kept) == [first, second]
    p = kept[first]
    assert (p.group, p.sender, p.to, p.body, p.urgent, p.sent_ms) == (
        "ops", "ann", "", b"Gate 3 closed", False, NOW)
    assert p.recipients == frozenset({"bob", "cat"})
    assert p.delivered == {"bob": {"bob-desk"}} and p.read == {"bob": {"bob-desk"}}
    assert kept[second].body.decode() == "Tor 5 offen \u2713"
    assert kept[second].delivered == {"cat": {"cat-phone"}} and kept[second].read == {}
    assert pages.expire(NOW + 1_000) == [first]
    assert [p.page_id for p in pages.retained(NOW + 1_000)] == [second]
    assert pages.expire(NOW + 1_000) == []


def test_grants_of_an_old_epoch_stay_while_a_page_sealed_with_it_does(
        open_pages: tuple[Directory, Callable[[], Any]]) -> None:
    directory, open_one = open_pages
    for u, pub in PUB.items():
        directory.add_user(u, "volunteer", SALT, 1000, VERIFIER, pub)
    directory.create_group("ops")
    for u in PUB:
        directory.add_member("ops", u)
    directory.set_group_key("ops", 1, {u: b"g1" + u.encode() for u in PUB})
    pages = open_one()
    sealed = _add(pages, b"\x00" * 40, expires=NOW + 1_000, epoch=1)
    directory.set_group_key("ops", 2, {u: b"g2" + u.encode() for u in PUB})
    assert pages.old_grants({("ops", 1)}) == {("ops", 1): {u: b"g1" + u.encode() for u in PUB}}
    assert pages.expire(NOW) == []
    assert ("ops", 1) in pages.old_grants({("ops", 1)})
    assert pages.expire(NOW + 1_000) == [sealed]
    assert pages.old_grants({("ops", 1)}) == {}  # no retained page needs epoch 1 any more


def test_nodes_share_the_store_ids_unique_and_in_commit_order(postgres: Any) -> None:
    """Two nodes storing at once: every id once, ascending; each reads the other's pages
    (ids and whole pages with their receipts) and keeps no cursor of its own there."""
    from ptt.cluster.directory import PgDirectory
    from ptt.cluster.pagestore import PgPageStore
    from tests.cluster.databases import fresh_database

    dsn = fresh_database(postgres.dsn)
    directory = PgDirectory(dsn)  # the pages live beside it (old grants: its key history)
    a, b = PgPageStore(dsn), PgPageStore(dsn)
    try:
        ids = [_add(store, f"page {i}".encode()) for i in range(10) for store in (a, b)]
        assert ids == list(range(1, 21))
        b.save_receipts([(ids[0], "bob", "bob-desk")], [], {("bob", "bob-desk"): ids[0]})
        counts = a.retained_counts(NOW)
        assert counts == {i: (1 if i == ids[0] else 0, 0) for i in ids}
        (got,) = a.fetch([ids[0], 10_000])
        assert got.delivered == {"bob": {"bob-desk"}} and got.body == b"page 0"
        assert a.cursors() == {}
        # any node may expire: the other's next expiry finds nothing left, its next
        # comparison of ids tells it which went
        assert len(a.expire(NOW + 60_000)) == 20
        assert b.expire(NOW + 60_000) == [] and b.retained_counts(NOW) == {}
    finally:
        a.close()
        b.close()
        directory.close()


def test_a_node_reads_at_its_comparison_the_receipts_whose_message_it_missed(
        postgres: Any, tmp_path: Any) -> None:
    """Node b stores a page, then a device's receipts of it, whose messages node a never got
    (NATS lost them): a's comparison with the store (``PAGES_SYNC_EVERY``) reads the page, and
    at the next one its receipts, since the store has more of them than a."""
    import asyncio
    import time

    from ptt.cluster.directory import PgDirectory
    from ptt.cluster.pagestore import PgPageStore
    from ptt.config import ServerConfig
    from ptt.server.app import PttServer
    from tests.cluster.databases import fresh_database

    dsn = fresh_database(postgres.dsn)

    async def main() -> None:
        shared = PgPageStore(dsn)
        server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / "a.db"),
                           iterations=1000, directory=PgDirectory(dsn), page_store=shared)
        await server.start()
        b = PgPageStore(dsn)
        try:
            live = int(time.time() * 1000)  # the comparison reads the pages kept now
            pid = _add(b, b"Gate 3 closed", expires=live + 60_000)
            assert server._sync_pages(shared, []) == []
            page = server.core.pages[pid]
            assert page.delivered == {} and page.read == {}
            b.save_receipts([(pid, "bob", "bob-desk")], [(pid, "bob", "bob-desk")], {})
            assert server._sync_pages(shared, []) == []
            assert page.delivered == {"bob": {"bob-desk"}} and page.read == {"bob": {"bob-desk"}}
            assert server.core.paging.receipts_short(shared.retained_counts(live)) == []
        finally:
            b.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())
