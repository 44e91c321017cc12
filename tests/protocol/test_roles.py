"""Who may ask for which priority: HIGH for dispatchers and coordinators, EMERGENCY for the roles
in ``ServerCoreConfig.emergency_roles`` (by default volunteers too)."""

from __future__ import annotations

import pytest

from ptt.protocol import floor as fl
from ptt.protocol import messages as m
from ptt.protocol.client import FloorStateChanged, Participation
from ptt.protocol.server import EMERGENCY_ROLES, FloorEvent, FloorRequested, ServerCoreConfig
from tests.protocol.test_sealed import Pair

STAFF = frozenset({m.Role.DISPATCHER, m.Role.COORDINATOR})


def ask(p: Pair, user: str, priority: m.Priority) -> FloorStateChanged:
    """``user`` logs in, joins "g" and asks for the floor; returns its last floor state."""
    c = p.login(user)
    c.join("g", p.now)
    c.request_floor("g", p.now, priority)
    p.pump()
    states = [e for e in c.events() if isinstance(e, FloorStateChanged)]
    assert states, f"{user} got no answer"
    return states[-1]


def test_by_default_a_volunteer_in_trouble_can_call_an_emergency() -> None:
    assert ServerCoreConfig().emergency_roles == EMERGENCY_ROLES
    assert m.Role.VOLUNTEER in EMERGENCY_ROLES
    p = Pair()
    p.add("vic")
    got = ask(p, "vic", m.Priority.EMERGENCY)
    assert got.state is Participation.HAS_PERMISSION
    assert p.server.floors.floor("g").holder == "vic"


def test_volunteers_outside_the_emergency_roles_are_refused_and_dispatchers_granted() -> None:
    p = Pair(ServerCoreConfig(emergency_roles=STAFF))
    p.add("vic")
    p.add("dan", m.Role.DISPATCHER)
    denied = ask(p, "vic", m.Priority.EMERGENCY)
    assert denied.state is Participation.NO_PERMISSION
    assert denied.deny_cause is m.DenyCause.NOT_ALLOWED
    assert p.server.floors.floor("g").holder is None
    events = p.server.events()
    # reported like any denial: the request with its priority, then the refusal
    assert FloorRequested("g", "vic", m.Priority.EMERGENCY) in events
    assert FloorEvent(fl.Denied("g", "vic", m.DenyCause.NOT_ALLOWED)) in events

    granted = ask(p, "dan", m.Priority.EMERGENCY)
    assert granted.state is Participation.HAS_PERMISSION
    assert p.server.floors.floor("g").holder == "dan"
    assert p.server.floors.floor("g").holder_priority is m.Priority.EMERGENCY


def test_a_refused_emergency_leaves_the_volunteers_normal_talk_alone() -> None:
    p = Pair(ServerCoreConfig(emergency_roles=STAFF))
    p.add("vic")
    assert ask(p, "vic", m.Priority.NORMAL).state is Participation.HAS_PERMISSION
    vic = p.clients["vic"]
    vic.release_floor("g", p.now)
    p.pump()
    vic.request_floor("g", p.now, m.Priority.EMERGENCY)
    p.pump()
    last = [e for e in vic.events() if isinstance(e, FloorStateChanged)][-1]
    assert last.deny_cause is m.DenyCause.NOT_ALLOWED
    assert p.server.floors.floor("g").holder is None


@pytest.mark.parametrize("role", [m.Role.VOLUNTEER, m.Role.DISPATCHER, m.Role.COORDINATOR])
def test_an_empty_set_takes_emergency_from_every_role(role: m.Role) -> None:
    p = Pair(ServerCoreConfig(emergency_roles=frozenset()))
    p.add("who", role)
    got = ask(p, "who", m.Priority.EMERGENCY)
    assert (got.state, got.deny_cause) == (Participation.NO_PERMISSION, m.DenyCause.NOT_ALLOWED)


def test_high_priority_stays_with_dispatchers_and_coordinators() -> None:
    p = Pair(ServerCoreConfig(emergency_roles=frozenset({m.Role.VOLUNTEER})))
    p.add("vic")
    got = ask(p, "vic", m.Priority.HIGH)
    assert got.deny_cause is m.DenyCause.NOT_ALLOWED
    vic = p.clients["vic"]
    vic.request_floor("g", p.now, m.Priority.EMERGENCY)
    p.pump()
    assert vic.participation("g") is Participation.HAS_PERMISSION
