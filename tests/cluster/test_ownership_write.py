"""``Ownership.write`` (a node's client list) over etcd's JSON gateway from the node's loop,
against a real etcd: puts and deletes in one transaction, sent from the loop's own thread (no
thread started for it: a thread's wake-ups per write cost more than the request), a refused
write is an error, and a member that answers nothing fails the write within the request timeout
and is left for the next. ~1 s."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from ptt.cluster import ownership as ownership_mod
from ptt.cluster.engines import Etcd
from ptt.cluster.ownership import Ownership
from ptt.errors import ClusterError


def test_a_write_puts_and_deletes_in_one_transaction_from_the_loop(etcd: Etcd) -> None:
    async def run() -> tuple[bytes | None, bytes | None, bytes | None, set[str]]:
        own = Ownership([etcd.endpoint], "a")
        before = {t.name for t in threading.enumerate()}
        try:
            await own.write({b"/ptt-access/a/000": b"one", b"/ptt-access/a/001": b"two"})
            await own.write({b"/ptt-access/a/000": None, b"/ptt-access/a/002": b"\x00\xff"})
            started = {t.name for t in threading.enumerate()} - before
            return (await own.get(b"/ptt-access/a/000"), await own.get(b"/ptt-access/a/001"),
                    await own.get(b"/ptt-access/a/002"), started)
        finally:
            await own.stop(release=False)

    assert asyncio.run(run()) == (None, b"two", b"\x00\xff", set())


def test_a_write_etcd_refuses_is_an_error(etcd: Etcd) -> None:
    async def run() -> None:
        own = Ownership([etcd.endpoint], "a")
        try:
            # more keys than etcd's --max-txn-ops (128 by default): refused, nothing written
            with pytest.raises(ClusterError, match="refused"):
                await own.write({b"/ptt-access/a/%03x" % k: b"x" for k in range(200)})
            assert await own.get(b"/ptt-access/a/000") is None
        finally:
            await own.stop(release=False)

    asyncio.run(run())


def test_a_member_that_answers_nothing_fails_the_write_in_time_and_is_left(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ownership_mod, "REQUEST_TIMEOUT", 0.3)
    silent = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]  # accept, never read
    members = [s.getsockname()[:2] for s in silent]
    endpoints = ["http://%s:%d" % m for m in members]

    async def run() -> tuple[float, tuple[str, int]]:
        own = Ownership(endpoints, "a")
        try:
            started = time.monotonic()
            with pytest.raises(ClusterError, match="did not answer"):
                await own.write({b"/ptt-access/a/000": b"one"})
            return time.monotonic() - started, own._members.current
        finally:
            await own.stop(release=False)

    try:
        took, member = asyncio.run(run())
    finally:
        for s in silent:
            s.close()
    assert took < 1.0
    assert member == members[1]
