"""etcd's JSON gateway from the loop (``ptt.cluster.gateway``) and Ownership on it, against a real
etcd: a claim's fencing compare fails on a stale number, a watch from a compacted revision says
so, the node's watch follows changes again after the gateway closed its stream, a long answer in
chunks is read whole, a kept connection closed by etcd's end does not fail the next request, and
a member that answers nothing fails a request within its timeout as unreachable. ~1 s."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from ptt.cluster.engines import Etcd
from ptt.cluster.gateway import (
    CompactedError,
    GatewayClient,
    GatewayError,
    created_at,
    delete_op,
    kvs,
    prefix_end,
    put_op,
    revision,
)
from ptt.cluster.ownership import Home, Ownership, home_key, parse_endpoints


def _member(etcd: Etcd) -> tuple[str, int]:
    return parse_endpoints([etcd.endpoint])[0]


def test_a_release_with_a_stale_fencing_number_deletes_nothing(etcd: Etcd) -> None:
    async def run() -> tuple[bytes | None, bytes | None]:
        own = Ownership([etcd.endpoint], "a")
        await own.start()
        try:
            home = await own.claim("fence-g")
            assert home is not None and home.node == "a"
            # the view holds an older claim of the same group (a claim since replaced)
            own.homes["fence-g"] = Home("fence-g", "a", home.fencing - 1)
            await own.release("fence-g")
            kept = await own.get(home_key("fence-g"))
            own.homes["fence-g"] = home
            own.wanted.add("fence-g")
            await own.release("fence-g")  # the number etcd has: deleted
            return kept, await own.get(home_key("fence-g"))
        finally:
            await own.stop()

    assert asyncio.run(run()) == (b"a", None)


def test_a_watch_from_a_compacted_revision_says_so(etcd: Etcd) -> None:
    async def run() -> int:
        client = GatewayClient(_member(etcd))
        try:
            prefix = b"/test-compact/"
            for k in range(3):
                answer = await client.post("/v3/kv/put", put_op(prefix + b"k", b"%d" % k)
                                           ["request_put"], 2.0)
            now = revision(answer)
            await client.post("/v3/kv/compaction", {"revision": str(now)}, 2.0)
            with pytest.raises(CompactedError) as err:
                async for _ in client.watch(prefix, prefix_end(prefix), now - 1, 2.0):
                    pass
            return err.value.compact_revision - now
        finally:
            client.close()

    assert asyncio.run(run()) == 0


def test_the_watch_follows_changes_again_after_the_gateway_closed_it(etcd: Etcd) -> None:
    async def run() -> tuple[str, str]:
        own = Ownership([etcd.endpoint], "a")
        await own.start()
        try:
            await own.put(home_key("watch-g1"), b"b")
            for _ in range(100):
                if "watch-g1" in own.homes:
                    break
                await asyncio.sleep(0.01)
            # the watch's connection is the one busy between requests: etcd's end of it closed
            [stream] = own._client._busy
            assert stream.transport is not None
            stream.transport.close()
            await asyncio.sleep(0.05)
            await own.put(home_key("watch-g2"), b"c")
            for _ in range(200):
                if "watch-g2" in own.homes:
                    break
                await asyncio.sleep(0.01)
            return own.homes["watch-g1"].node, own.homes["watch-g2"].node
        finally:
            await own.delete_prefix(b"/ptt/groups/watch-")
            await own.stop()

    assert asyncio.run(run()) == ("b", "c")


def test_a_long_answer_in_chunks_is_read_whole_on_a_kept_connection(etcd: Etcd) -> None:
    async def run() -> tuple[int, int, bool]:
        client = GatewayClient(_member(etcd))
        prefix = b"/test-chunks/"
        try:
            value = bytes(range(256)) * 4
            await client.post("/v3/kv/txn", {"success": [
                put_op(prefix + b"%03d" % k, value) for k in range(100)]}, 2.0)
            # ~140 kB of JSON: etcd sends it in chunks, not with a length
            status, raw = await client.post_bytes(
                "/v3/kv/range", b'{"key":"%s","range_end":"%s"}' % (
                    put_op(prefix, b"")["request_put"]["key"].encode(),
                    put_op(prefix_end(prefix), b"")["request_put"]["key"].encode()), 2.0)
            assert status == 200
            [kept] = client._idle
            found = kvs(await client.post("/v3/kv/range", {
                "key": put_op(prefix, b"")["request_put"]["key"],
                "range_end": put_op(prefix_end(prefix), b"")["request_put"]["key"]}, 2.0))
            same = client._idle == [kept]
            # the kept connection closed under it: the next request opens another, no failure
            assert kept.transport is not None
            kept.transport.abort()
            await client.post("/v3/kv/txn", {"success": [delete_op(prefix + b"%03d" % k)
                                                          for k in range(100)]}, 2.0)
            assert all(kv.value == value for kv in found)
            return len(raw), len(found), same
        finally:
            client.close()

    size, count, same = asyncio.run(run())
    assert size > 100_000 and count == 100 and same


def test_a_member_that_answers_nothing_fails_a_request_in_time_as_unreachable() -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog), never reads

    async def run() -> tuple[float, bool]:
        client = GatewayClient(silent.getsockname()[:2])
        started = time.monotonic()
        try:
            with pytest.raises(GatewayError) as err:
                await client.post("/v3/kv/txn", {"compare": [created_at(b"k", 0)]}, 0.3)
            return time.monotonic() - started, err.value.unreachable
        finally:
            client.close()

    try:
        took, unreachable = asyncio.run(run())
    finally:
        silent.close()
    assert unreachable and took < 1.0
