"""Requests and answers in parts (ptt.protocol.parts): put back together, and refused when they
break a limit, keeping nothing of what was refused."""

from __future__ import annotations

import pytest

from ptt.errors import ProtocolError
from ptt.protocol import messages as m
from ptt.protocol import parts
from ptt.protocol.messages import encode_message
from ptt.wire.control import MAX_DATAGRAM


def _parts_of(args: dict[str, object], upload: int = 1) -> list[dict[str, object]]:
    data = parts.encode_args(args)
    pieces = parts.split(data)
    return [{"upload": upload, "index": i, "count": len(pieces), "total": len(data), "data": c}
            for i, c in enumerate(pieces)]


GRANTS = {f"u{i:04d}": bytes([i % 256]) * 262 for i in range(5_000)}
ARGS = {"name": "g", "add": sorted(GRANTS), "grants": GRANTS}


def test_five_thousand_grants_round_trip_in_parts_each_one_datagram() -> None:
    up = parts.Uploads()
    msgs = _parts_of(ARGS)
    assert len(msgs) > 20
    for msg in reversed(msgs):  # any order
        assert len(encode_message(m.Admin(1, 2, parts.PART_OP, msg))) < MAX_DATAGRAM  # type: ignore[arg-type]
        up.add("coordinator", msg, 0.0)
    assert parts.decode_args(up.take("coordinator", 1, 0.0)) == ARGS
    assert len(up) == 0 and up.held == 0


def test_incomplete_upload_is_not_run_and_expires() -> None:
    up = parts.Uploads(ttl=10.0)
    msgs = _parts_of(ARGS)
    for msg in msgs[:-1]:
        up.add("c", msg, 0.0)
    with pytest.raises(ProtocolError, match="incomplete"):
        up.take("c", 1, 1.0)
    assert up.held > 0
    up.expire(10.0)  # never completed: forgotten, its memory with it
    assert len(up) == 0 and up.held == 0
    with pytest.raises(ProtocolError, match="no such upload"):
        up.take("c", 1, 10.0)


def test_parts_uploaded_by_one_user_are_not_anothers() -> None:
    up = parts.Uploads()
    for msg in _parts_of({"name": "x" * 900, "users": ["a"] * 60}):
        up.add("mallory", msg, 0.0)
    with pytest.raises(ProtocolError):
        up.take("coordinator", 1, 0.0)


@pytest.mark.parametrize("bad", [
    {"total": parts.MAX_TOTAL + 1},  # oversized total
    {"count": parts.MAX_PARTS + 1},  # too many parts
    {"count": 5},  # count disagrees with the total
    {"index": 29},  # index past the count (5,000 grants make 29 parts)
    {"index": -1},
    {"upload": 0},
    {"data": {"0": b"x" * (parts.CHUNK_BYTES + 1)}},  # chunk too large
    {"data": {str(i): b"x" for i in range(13)}},  # too many chunks
    {"data": {"1": b"x"}},  # chunks not numbered from 0
    {"data": b"raw"},
    {"data": {"0": b"short"}},  # fewer bytes than the part must hold
    {"total": True},
])
def test_malformed_part_refused_and_nothing_kept(bad: dict[str, object]) -> None:
    up = parts.Uploads()
    msg = {**_parts_of(ARGS)[0], **bad}
    with pytest.raises(ProtocolError):
        up.add("c", msg, 0.0)
    assert len(up) == 0 and up.held == 0


def test_flood_of_uploads_is_bounded_in_count_and_bytes() -> None:
    up = parts.Uploads(max_bytes=10 * parts.PART_BYTES)
    first = _parts_of(ARGS, upload=1)[0]
    up.add("m", first, 0.0)
    up.add("m", {**first, "upload": 2}, 0.0)
    with pytest.raises(ProtocolError, match="at most 2"):  # a third at once: refused
        up.add("m", {**first, "upload": 3}, 0.0)
    refused = 0
    for i in range(1_000):  # many users each starting an upload never finished
        try:
            up.add(f"user{i}", {**first, "upload": 1}, 0.0)
        except ProtocolError:
            refused += 1
    assert up.held <= 10 * parts.PART_BYTES and refused == 1_000 - 8
    up.expire(parts.UPLOAD_TTL + 1)
    assert up.held == 0 and len(up) == 0


def test_resent_part_counts_once() -> None:
    up = parts.Uploads()
    msgs = _parts_of(ARGS)
    assert up.add("c", msgs[0], 0.0) == 1
    assert up.add("c", msgs[0], 0.0) == 1
    assert up.held == parts.PART_BYTES


def test_results_kept_for_their_user_only_bounded_and_expiring() -> None:
    res = parts.Results(max_results=3, ttl=5.0)
    data = parts.encode_args({"users": [{"name": f"u{i}"} for i in range(20_000)]})
    told = res.put("c", data, 0.0)
    assert told["count"] == -(-len(data) // parts.PART_BYTES) and told["total"] == len(data)
    got = b"".join(parts.join_chunks(res.get("c", {"id": told[parts.PARTS_KEY], "index": i},
                                             1.0)["data"]) for i in range(told["count"]))
    assert parts.decode_result(got) == {"users": [{"name": f"u{i}"} for i in range(20_000)]}
    with pytest.raises(ProtocolError):
        res.get("mallory", {"id": told[parts.PARTS_KEY], "index": 0}, 1.0)
    with pytest.raises(ProtocolError):
        res.get("c", {"id": told[parts.PARTS_KEY], "index": told["count"]}, 1.0)
    for _ in range(10):
        res.put("c", b"x", 1.0)
    assert len(res) == 3 and res.held == 3
    res.expire(10.0)
    assert len(res) == 0 and res.held == 0
    small = parts.Results(max_bytes=1_000)
    for _ in range(10):
        small.put("c", b"y" * 400, 0.0)
    assert len(small) == 2 and small.held == 800  # bounded in bytes too, oldest gone first
    with pytest.raises(ProtocolError):
        small.put("c", b"z" * 1_001, 0.0)


def test_put_back_together_is_validated_like_a_message() -> None:
    with pytest.raises(ProtocolError):
        parts.decode_args(parts.encode_args({"name": {"nested": {"too": "deep"}}}))  # type: ignore[dict-item]
    with pytest.raises(ProtocolError):
        parts.decode_args(b"\xc1garbage")
