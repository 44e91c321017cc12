"""Node-to-node messages (ptt.wire.cluster): every field of every message is checked on the way
in, by the types resolved once at import."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import pytest

from ptt.errors import ProtocolError
from ptt.wire import cluster as wc

ONE_OF_EACH: list[Any] = [
    wc.FloorInput(wc.InputKind.REQUEST, "g", "ann", 2, 0, "A", 7),
    wc.FloorNews("g", 3, "C", "A", 7, ((wc.EventKind.GRANTED, "ann", 9, 2, 30.0, False),),
                 "talking", "ann", 9, 2, ("bob",), ("A", "B")),
    wc.Presence("A", ("g", "h"), ("k",), False),
    wc.Members("g", "B", 3, "C", ("bob",), ("cat",), True),
    wc.Receipts("g", 9, "B", ("bob",), (48,), (50,)),
    wc.LinkWindow("g", 9, "B", (1, 2, 3), 2, 100, 3, 1, 0, 2),
    wc.Login("A", ("ann", "bob"), ("phone", "")),
    wc.Peer("A", "127.0.0.1", 7801, 2**62 + 5, 12, 2**55 + 3),
    wc.Call("call:ann+bob", 2**31 + 7, "A", "ann", "bob", "B", 2**62 + 5),
]


@pytest.mark.parametrize("msg", ONE_OF_EACH, ids=lambda m: type(m).__name__)
def test_every_message_survives_the_wire(msg: Any) -> None:
    assert wc.decode(wc.encode(msg)) == msg


@pytest.mark.parametrize("msg", ONE_OF_EACH, ids=lambda m: type(m).__name__)
def test_a_field_of_the_wrong_type_is_refused_by_name_in_every_message(msg: Any) -> None:
    for f in fields(msg):
        # 1.5 is none of a field's types (string, integer, flag, list, kind)
        bad = wc.encode(replace(msg, **{f.name: 1.5}))
        with pytest.raises(ProtocolError, match=f"{type(msg).__name__}.{f.name}"):
            wc.decode(bad)


def test_a_news_order_is_read_from_a_floor_news_alone() -> None:
    news = replace(ONE_OF_EACH[1], life=4, seq=11)
    assert wc.news_order(wc.encode(news)) == ("g", 3, 4, 11)
    for other in ONE_OF_EACH[:1] + ONE_OF_EACH[2:]:
        assert wc.news_order(wc.encode(other)) is None
    for bad in (b"", b"\xc1", wc.encode(replace(news, seq=1.5)),  # type: ignore[arg-type]
                wc.encode(replace(news, group=7))):  # type: ignore[arg-type]
        assert wc.news_order(bad) is None
