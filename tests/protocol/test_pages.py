"""Text pages in the server core (sans-I/O): checks, stored before acknowledged, once per device.

The core asks its adapter to store each page (a PageSubmitted event) and acknowledges it only
when told it is stored; :class:`PageNet` plays that adapter, keeping pages in a list.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from ptt.protocol import client as cl
from ptt.protocol import messages as m
from ptt.protocol.client import ClientCore
from ptt.protocol.server import Dropped, PageDelivered, PageSubmitted
from ptt.protocol.server_pages import PAGE_BURST, PAGE_RATE, PAGE_REPORT_WAIT
from tests.protocol.simnet import SimNet

MEMBERS = ["ann", "bob", "cat", "dan"]


@dataclass
class PageNet(SimNet):
    """SimNet whose adapter stores pages (ids from 1) unless ``holding`` them."""

    holding: bool = False
    stored: list[PageSubmitted] = field(default_factory=list)
    held: list[PageSubmitted] = field(default_factory=list)

    def flush_from(self, users: Collection[str]) -> None:
        super().flush_from(users)
        for ev in [e for e in self.server_events if isinstance(e, PageSubmitted)]:
            self.server_events.remove(ev)
            self.held.append(ev)
        while self.held and not self.holding:
            ev = self.held.pop(0)
            self.stored.append(ev)
            self.server.page_stored(ev, len(self.stored), 1_700_000_000_000 + len(self.stored),
                                    self.now)
            super().flush_from(users)

    def events_of(self, user: str, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.client_events[user] if isinstance(e, kind)]


def _site(online: list[str], devices: dict[str, str] | None = None) -> PageNet:
    net = PageNet(seed=7)
    for u in MEMBERS:
        net.add_user(u)
    net.add_group("g", MEMBERS, 1)
    for u in online:
        _online(net, u, (devices or {}).get(u, f"{u}-desk"))
    net.run_until(net.now + 1.0)
    return net


def _online(net: PageNet, user: str, device: str) -> ClientCore:
    c = net.clients[user]
    c.connect(net.now)
    c.join("g", net.now)
    c.subscribe_pages(device, net.now)
    return c


def _page(net: PageNet, text: str, sender: str = "ann", urgent: bool = False) -> int:
    return net.clients[sender].send_page("g", "", text.encode(), 0, urgent, net.now)


def _shown(net: PageNet, user: str) -> list[str]:
    return [e.page.body.decode() for e in net.events_of(user, cl.PageReceived)]


def test_a_page_is_acknowledged_only_once_stored_and_stored_once() -> None:
    net = _site(["ann", "bob"])
    ann = net.clients["ann"]
    ann.connect(net.now)  # ann sends from a session that does not show pages
    net.run_until(net.now + 0.5)
    net.holding = True
    txn = _page(net, "hello")
    net.run_until(net.now + 2.0)  # the request is retransmitted meanwhile
    assert len(net.held) == 1 and not net.stored
    assert not net.events_of("ann", cl.PageAccepted) and not _shown(net, "bob")
    net.holding = False
    net.run_until(net.now + 0.2)
    assert len(net.stored) == 1
    [acc] = net.events_of("ann", cl.PageAccepted)
    assert (acc.txn, acc.page_id, acc.recipients, acc.online) == (txn, 1, 3, 1)
    assert _shown(net, "bob") == ["hello"]


def test_the_sender_is_told_who_has_it_who_did_not_confirm_and_who_is_offline() -> None:
    net = _site(["ann", "bob", "cat"])
    net.loss = 1.0  # from now on nothing arrives anywhere...
    _page(net, "x")
    net.flush()
    net.loss = 0.0  # ...but the request, which went out before
    net.clients["cat"].receive_datagram = lambda data, now: None  # type: ignore[method-assign]
    net.run_until(net.now + PAGE_REPORT_WAIT + 1.0)
    [r] = net.events_of("ann", cl.PageReported)
    assert (r.delivered, r.pending, r.offline) == (["bob"], ["cat"], ["dan"])


def test_each_device_gets_each_page_once_in_order_and_its_cursor_moves() -> None:
    net = _site(["ann", "bob"])
    for text in ("one", "two", "three"):
        _page(net, text)
        net.run_until(net.now + 0.3)
    assert _shown(net, "bob") == ["one", "two", "three"]
    assert net.server.page_cursor("bob", "bob-desk") == 3
    # dan was offline: all three, in order, when it logs in; once, even when it logs in again
    _online(net, "dan", "dan-desk")
    net.run_until(net.now + 1.0)
    assert _shown(net, "dan") == ["one", "two", "three"]
    net.clients["dan"].close(net.now)
    net.run_until(net.now + 0.5)
    net.client_events["dan"].clear()
    dan = net.clients["dan"] = ClientCore("dan", "token-of-dan-0123456789abcdef",
                                          net.rng.randbytes)
    dan.connect(net.now)
    dan.join("g", net.now)
    dan.subscribe_pages("dan-desk", net.now)
    net.run_until(net.now + 1.0)
    assert _shown(net, "dan") == []
    # a second device of dan gets them all, once, and both count as deliveries of dan
    dan.subscribe_pages("dan-phone", net.now)
    net.run_until(net.now + 1.0)
    assert _shown(net, "dan") == ["one", "two", "three"]
    delivered = [(e.user, e.device) for e in net.server_events if isinstance(e, PageDelivered)
                 and e.page_id == 1]
    assert sorted(delivered) == [("bob", "bob-desk"), ("dan", "dan-desk"), ("dan", "dan-phone")]
    page = net.server.pages[1]
    assert page.delivered["dan"] == {"dan-desk", "dan-phone"}


def test_a_session_that_does_not_show_pages_is_given_none() -> None:
    net = _site(["ann"])
    bob = net.clients["bob"]
    bob.connect(net.now)
    bob.join("g", net.now)  # joined (a 'ptt page' or 'ptt talk --wav'), not subscribed
    net.run_until(net.now + 0.5)
    _page(net, "not for a one-shot command")
    net.run_until(net.now + 1.0)
    assert _shown(net, "bob") == []
    assert net.server.page_cursor("bob", "bob-desk") == 0


def test_a_removed_member_is_pushed_nothing_sent_after_its_removal() -> None:
    net = _site(["ann", "bob", "cat"])
    _page(net, "before")
    net.run_until(net.now + 0.3)
    net.server.remove_member("g", "cat", net.now)
    _page(net, "after")
    net.run_until(net.now + 0.5)
    assert _shown(net, "cat") == ["before"]
    assert _shown(net, "bob") == ["before", "after"]
    assert "cat" not in net.server.pages[2].recipients


def test_refusals_members_only_listen_only_size_and_rate() -> None:
    net = _site(["ann", "bob"])
    net.add_user("eve")
    net.server.set_member("g", "bob", listen_only=True)
    eve = net.clients["eve"]
    eve.connect(net.now)
    net.run_until(net.now + 0.5)

    def refusal(user: str, body: bytes, urgent: bool = False) -> str:
        c = net.clients[user]
        txn = c.send_page("g", "", body, 0, urgent, net.now)
        net.run_until(net.now + 0.3)
        failed = [e for e in net.events_of(user, cl.RequestFailed) if e.txn == txn]
        return failed[0].message if failed else ""

    assert refusal("eve", b"hi") == "you are not a member of 'g'"
    assert refusal("bob", b"hi") == "you are a listen-only member of 'g'"
    assert "1001 characters" in refusal("ann", "页".encode() * 1001)
    assert refusal("ann", b"x" * 4029) == "page too long: 4029 bytes"  # before any decoding
    drops = len([e for e in net.server_events if isinstance(e, Dropped)])
    refusal("ann", b"x" * 4097)  # beyond the wire's limit for bytes: dropped unread
    assert len([e for e in net.server_events if isinstance(e, Dropped)]) > drops
    assert "not UTF-8" in refusal("ann", b"\xff\xfe")
    assert not net.stored
    ann = net.clients["ann"]
    txns = [ann.send_page("g", "", f"p{i}".encode(), 0, False, net.now)
            for i in range(PAGE_BURST + 1)]  # at once
    net.run_until(net.now + 0.5)
    failed = {e.txn: e.message for e in net.events_of("ann", cl.RequestFailed)}
    # the network may reorder them: whichever arrives last of the 11 is refused
    assert [failed[t] for t in txns if t in failed] == ["too many pages: wait 2 s"], failed
    net.run_until(net.now + 1 / PAGE_RATE + 0.1)
    assert refusal("ann", b"later") == ""
    assert len(net.stored) == PAGE_BURST + 1


def test_a_push_encoded_once_is_the_same_bytes_as_the_generic_encoding() -> None:
    from ptt.protocol.messages import decode_message, encode_message, encoder_of

    push = m.PagePush(0, 7, "志愿者", "张伟", "", "三号门关闭".encode() * 50, 3, True,
                      1_700_000_000_123, b"")
    encode = encoder_of(push)
    for txn, grant in ((1, b""), (0x7FFFFFFF, b"g" * 250), (300, b"\x00")):
        want = m.PagePush(txn, 7, "志愿者", "张伟", "", push.body, 3, True, 1_700_000_000_123,
                          grant)
        assert encode(txn, grant) == encode_message(want)
        assert decode_message(encode(txn, grant)) == want
