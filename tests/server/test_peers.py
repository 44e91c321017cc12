"""Where the clients are, gathered between two saves: what reaches the store."""

from __future__ import annotations

from ptt.protocol.server import SessionEnded, SessionMoved, SessionStarted
from ptt.server.peers import PeerChanges


def test_started_moved_and_ended_sessions_reach_the_store_once_each() -> None:
    p = PeerChanges()
    p.note(SessionStarted("ann", 1, ("10.0.0.1", 4000)))
    p.note(SessionStarted("bob", 2, ("10.0.0.2", 4000)))
    p.note(SessionMoved("ann", 1, ("10.0.0.9", 5000), ("10.0.0.1", 4000)))
    p.note(SessionEnded("bob", 2, "bye"))  # started and ended between two saves: never stored
    p.note(SessionEnded("cat", 3, "expired"))  # started in an earlier save
    assert p.take() == ({1: ("10.0.0.9", 5000)}, {3})
    assert p.take() == ({}, set())


def test_an_ipv6_address_keeps_host_and_port_only() -> None:
    p = PeerChanges()
    p.note(SessionStarted("ann", 7, ("::1", 4000, 0, 0)))  # type: ignore[arg-type]
    assert p.take() == ({7: ("::1", 4000)}, set())
