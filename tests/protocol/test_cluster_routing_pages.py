"""Text pages across the nodes of a cluster (ClusterSim, one process, the shared store played by
the sim: ids across nodes in commit order): the page to every other live node once, pushed
where its recipients are, at a later login on any node, each device once, and the receipts of
every node in the sender's report and in every node's list."""

from __future__ import annotations

import pytest

from ptt.errors import ProtocolError
from ptt.protocol.client import ClientCore
from ptt.protocol.client_events import PageReceived, PageReported
from ptt.protocol.cluster_routing import PAGE_MARKS_EVERY
from ptt.protocol.server_state import PageEntry
from ptt.wire import cluster as wc
from tests.protocol.clustersim import ClusterSim
from tests.protocol.test_cluster_routing import _second_client


def _sim() -> ClusterSim:
    """ann on A, bob on B, dan on C (not logged in yet), g (ann, bob, dan) homed on C; ann and
    bob show pages (``ptt listen``), each from its own page device."""
    sim = ClusterSim(pinned={"g": "C"})
    for user, node in (("ann", "A"), ("bob", "B"), ("dan", "C")):
        sim.add_user(user, node)
    sim.add_group("g", 1, ["ann", "bob", "dan"])
    for user in ("ann", "bob"):
        c = sim.clients[user]
        c.connect(sim.now)
        c.join("g", sim.now)
        c.subscribe_pages(f"{user}-desk", sim.now)
    sim.run_until(1.0)
    return sim


def _received(sim: ClusterSim, key: str) -> list[int]:
    return [e.page.page_id for e in sim.events[key] if isinstance(e, PageReceived)]


def _pages(log: list[tuple[str, str, object]], kind: type) -> list[tuple[str, str, object]]:
    return [e for e in log if isinstance(e[2], kind)]


def _login(sim: ClusterSim, key: str, device: str) -> ClientCore:
    c = sim.clients[key]
    c.connect(sim.now)
    c.join("g", sim.now)
    c.subscribe_pages(device, sim.now)
    return c


def test_a_page_reaches_members_on_every_node_now_or_at_their_login_once_per_device() -> None:
    sim = _sim()
    ann = sim.clients["ann"]
    mark = len(sim.bus_log)
    ann.send_page("g", "", b"Gate 3 closed", 0, False, sim.now)
    sim.run_until(sim.now + 1.5)
    # one Page to every other live node (not only where members are online: every node keeps
    # the page for its users' later logins), nothing else for the page itself
    sent = sim.sent_since(mark)
    pages = _pages(sent, wc.Page)
    assert sorted((a, b) for a, b, _ in pages) == [("A", "B"), ("A", "C")]
    page = pages[0][2]
    assert isinstance(page, wc.Page)
    assert (page.page_id, page.sender, page.group, page.body) == (1, "ann", "g", b"Gate 3 closed")
    assert sorted(page.recipients) == ["bob", "dan"]
    # bob on B has it once; B tells every other node that bob's device had it
    assert _received(sim, "bob") == [1]
    marks = _pages(sent, wc.PageReceipts)
    assert sorted((a, b) for a, b, _ in marks) == [("B", "A"), ("B", "C")]
    assert all(x.users == ("bob",) and x.devices == ("bob-desk",) and x.read == (0,)  # type: ignore[attr-defined]
               for _, _, x in marks)
    # ann's report counts bob (online on B) as delivered, dan as offline
    (report,) = [e for e in sim.events["ann"] if isinstance(e, PageReported)]
    assert (report.delivered, report.pending, report.offline) == (["bob"], [], ["dan"])
    for node in "ABC":
        assert sim.cores[node].pages[1].delivered == {"bob": {"bob-desk"}}

    # dan, offline when it was sent, logs in on C later and gets it once
    _login(sim, "dan", "dan-desk")
    sim.run_until(sim.now + 1.0)
    assert _received(sim, "dan") == [1]
    for node in "ABC":
        assert sim.cores[node].pages[1].delivered == {"bob": {"bob-desk"}, "dan": {"dan-desk"}}
    # the same device of dan's, logged in on B afterwards, is not given it again; another
    # device of his is
    _second_client(sim, "dan-again", "dan", "B", "dan-laptop")
    _login(sim, "dan-again", "dan-desk")
    sim.run_until(sim.now + 1.0)
    assert _received(sim, "dan-again") == []
    _second_client(sim, "dan-tablet", "dan", "A", "dan-tablet")
    _login(sim, "dan-tablet", "dan-tablet")
    sim.run_until(sim.now + 1.0)
    assert _received(sim, "dan-tablet") == [1]

    # bob reads it on B: the read mark reaches A, where ann lists it (read 1 of 2)
    sim.clients["bob"].page_read(1, sim.now)
    sim.run_until(sim.now + 0.5)
    assert sim.cores["A"].pages[1].read == {"bob": {"bob-desk"}}
    entry = sim.cores["A"].paging._page_entry(sim.cores["A"].pages[1])
    assert (entry["delivered"], entry["read"], entry["devices_delivered"]) == (2, 1, 3)


def test_receipts_of_many_devices_cross_in_few_messages() -> None:
    """A receipt per device per PAGE_MARKS_EVERY at most, in one message to each node."""
    sim = _sim()
    for i in range(3):
        _second_client(sim, f"bob-{i}", "bob", "B", f"bob-phone-{i}")
        _login(sim, f"bob-{i}", f"bob-phone-{i}")
    sim.run_until(sim.now + 1.0)
    mark = len(sim.bus_log)
    sim.clients["ann"].send_page("g", "", b"Gate 5 open", 0, False, sim.now)
    sim.run_until(sim.now + 0.2 + PAGE_MARKS_EVERY)
    marks = [x for a, b, x in _pages(sim.sent_since(mark), wc.PageReceipts) if b == "A"]
    assert sum(len(x.devices) for x in marks) == 4  # type: ignore[attr-defined]
    assert len(marks) <= 2
    assert len(sim.cores["A"].pages[1].delivered["bob"]) == 4


def test_a_page_that_comes_late_is_still_given_to_a_device_whose_cursor_passed_it() -> None:
    """Two nodes' pages may reach a third in another order than their ids: page 2 from one
    node, then page 1 from another. A device that had page 2 here is still given page 1 at
    its next login here (its cursor is moved back below it)."""
    sim = _sim()
    b = sim.cores["B"]
    first = PageEntry(1, "g", "ann", "", b"one", 0, False, 1, frozenset({"bob", "dan"}))
    second = PageEntry(2, "g", "ann", "", b"two", 0, False, 2, frozenset({"bob", "dan"}))
    b.paging.remote_page(second, sim.now)
    b.paging.remote_receipts([(2, "dan", "dan-desk", False)], sim.now)
    assert b.paging.page_cursor("dan", "dan-desk") == 2
    b.paging.remote_page(first, sim.now)
    assert b.paging.page_cursor("dan", "dan-desk") == 0
    sim.node_of["dan"] = "B"
    _login(sim, "dan", "dan-desk")
    sim.run_until(sim.now + 1.0)
    assert _received(sim, "dan") == [1]
    # bob, online on B, was pushed both as they came
    sim.run_until(sim.now + 0.1)
    assert sorted(_received(sim, "bob")) == [1, 2]


def test_bad_page_messages_are_refused() -> None:
    sim = _sim()
    r = sim.routing["B"]
    page = wc.Page("A", 9, "g", "ann", "", b"x", 0, False, 1, ("bob",))
    for bad in (wc.Page("B", 9, "g", "ann", "", b"x", 0, False, 1, ("bob",)),
                wc.Page("Z", 9, "g", "ann", "", b"x", 0, False, 1, ("bob",)),
                wc.Page("A", 9, "g", "ann", "bob", b"x", 0, False, 1, ("bob",)),
                wc.Page("A", 9, "g", "ann", "", b"x", 0, False, 1, ()),
                wc.PageReceipts("A", (9, 9), ("bob",), ("d",), (0,))):
        with pytest.raises(ProtocolError):
            r.receive(wc.encode(bad), sim.now)
    assert 9 not in sim.cores["B"].pages
    assert wc.decode(wc.encode(page)) == page
    with pytest.raises(ProtocolError, match="must be bytes"):
        wc.decode(wc.encode(page).replace(b"\xc4\x01x", b"\xa1x"))
    # a receipt for a page this node does not have, or a user it was not for: ignored
    r.receive(wc.encode(wc.PageReceipts("A", (9,), ("bob",), ("d",), (0,))), sim.now)
    assert not sim.cores["B"].pages


def test_without_a_shared_store_pages_stay_on_their_node() -> None:
    """A cluster without PostgreSQL (each node its own SQLite: page ids of its own): no page
    and no receipt crosses, and the report counts only the node's own members."""
    sim = _sim()
    for r in sim.routing.values():
        r.shared_pages = False
    mark = len(sim.bus_log)
    sim.clients["ann"].send_page("g", "", b"Gate 3 closed", 0, False, sim.now)
    sim.run_until(sim.now + 1.5)
    assert not _pages(sim.sent_since(mark), (wc.Page, wc.PageReceipts))  # type: ignore[arg-type]
    assert _received(sim, "bob") == []
    (report,) = [e for e in sim.events["ann"] if isinstance(e, PageReported)]
    assert (report.delivered, report.pending, report.offline) == ([], [], ["bob", "dan"])


def test_receipts_whose_message_was_lost_come_from_the_shared_store_at_the_comparison() -> None:
    """B's PageReceipts to A is lost on the bus: A does not know bob had the page, and its list
    counts it pending. At the comparison with the shared store (the adapter's, every
    PAGES_SYNC_EVERY) A finds the store has more receipts of that page than it has, reads them,
    and counts as B does."""
    sim = _sim()
    sim.fate = lambda path, src, dest, msg: (
        None if isinstance(msg, wc.PageReceipts) and dest == "A" else -1.0)
    sim.clients["ann"].send_page("g", "", b"Gate 3 closed", 0, False, sim.now)
    sim.run_until(sim.now + 1.5)
    sim.clients["bob"].page_read(1, sim.now)
    sim.run_until(sim.now + 0.5)
    a, b = sim.cores["A"].paging, sim.cores["B"].paging
    assert _received(sim, "bob") == [1]
    assert a.pages[1].delivered == {} and a.pages[1].read == {}
    # the store holds what each node wrote of its own devices: bob's marks, by B
    stored = b.pages[1]
    counts = {1: (1, 1), 2: (0, 0)}  # page 2: not kept here (the comparison's other half)
    assert b.receipts_short(counts) == []
    assert a.receipts_short(counts) == [1]
    a.stored_receipts([stored], sim.now)
    assert a.receipts_short(counts) == []
    assert a.receipts_short({1: (1, 2)}) == [1]  # a page found whole before, with a mark more
    assert a.pages[1].delivered == {"bob": {"bob-desk"}} and a.pages[1].read == {
        "bob": {"bob-desk"}}
    assert a._page_entry(a.pages[1]) == b._page_entry(b.pages[1])
