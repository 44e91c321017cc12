"""A listener's tally of a burst: distinct frames received as primary or redundant copy."""

from __future__ import annotations

from ptt.client.receipts import BurstTally, delivery_text
from ptt.media.sender import Packetizer
from ptt.protocol import client as cl
from ptt.protocol import messages as m
from ptt.wire.voice import decode_voice


def _datagrams(n: int, offsets: tuple[int, ...]) -> list[bytes]:
    pk = Packetizer(1, 2, 3, offsets=offsets)
    return [pk.packetize(bytes([i % 250 + 1]) * 20, last=i == n - 1) for i in range(n)]


def test_a_frame_lost_but_carried_later_counts_as_received() -> None:
    sent = _datagrams(20, (1, 3))
    t = BurstTally(1, 3)
    for i, d in enumerate(sent):
        if i in (5, 6, 12):  # lost; 5 and 6 come back in 7 (offset 1) and 8, 9 (offset 3)
            continue
        t.add(*decode_voice(d))
    # 12 is carried by 13 (offset 1): everything was received
    assert (t.received, t.expected) == (20, 20)


def test_a_run_longer_than_the_copies_is_missing_and_the_last_frames_set_the_count() -> None:
    sent = _datagrams(20, (1,))
    t = BurstTally(1, 3)
    for i, d in enumerate(sent):
        if i in (8, 9, 10):  # 8 and 9 have no copy left (10 would carry 9, 11 carries 10)
            continue
        t.add(*decode_voice(d))
    assert (t.received, t.expected) == (18, 20)


def test_the_report_line_names_heard_silent_and_offline_members() -> None:
    ev = cl.DeliveryReported("g", 1, 100, [m.Receipt("cat", 100, 100),
                                          m.Receipt("coordinator", 98, 100),
                                          m.Receipt("eve", 0, 0)], ["bob"], ["dan"])
    assert delivery_text(ev) == ("heard by 2 of 4 online members (cat 100%, coordinator 98%); "
                                 "heard nothing: eve; not confirmed: bob; offline: dan")
    # the talker sent more than the server saw: its own count is the denominator
    assert delivery_text(ev, sent=200).startswith("heard by 2 of 4 online members (cat 50%, ")
    call = cl.DeliveryReported("call:ann+bob", 1, 50, [m.Receipt("bob", 50, 50)], [], [])
    assert delivery_text(call, peer="bob") == "bob heard it (100%)"
    silent = cl.DeliveryReported("call:ann+bob", 1, 50, [], ["bob"], [])
    assert delivery_text(silent, peer="bob") == "bob did not confirm hearing it"


def test_a_large_groups_report_counts_what_it_does_not_name() -> None:
    named = [m.Receipt(f"v{i:04d}", 90 + i % 10, 100) for i in range(m.REPORT_NAMES)]
    ev = cl.DeliveryReported("north", 1, 100, named, ["s1"], [f"o{i}" for i in range(40)],
                             heard_more=958, silent_more=0, offline_more=956)
    line = delivery_text(ev)
    assert line.startswith("heard by 998 of 999 online members (v0000 90%, ")
    assert ", and 958 more); not confirmed: s1; offline: 996 (o0, o1, " in line
    assert line.endswith(", o39, and 956 more)")
    # every named receipt heard nothing: whether those left out did is not known
    zeros = cl.DeliveryReported("north", 1, 100, [m.Receipt("a", 0, 0)], [], [], heard_more=5)
    assert delivery_text(zeros) == ("heard by 0 of 6 online members; heard nothing: a "
                                    "(5 more receipts not named)")
