"""The floor participant's states and every move between them, as one table (h11's style).

A client is in one :class:`Participation` state per group (MCPTT's floor participant states).
:data:`TRANSITIONS` ``[state][event]`` is the state that ``event`` leads to; a pair missing
from it is a bug in the caller, and :func:`next_state` raises :class:`~ptt.errors.FloorError`
for it. The client core (:mod:`ptt.protocol.client`) decides *whether* an input is an event
(an answer to a request it still has open, a revoke of the burst it holds, ...) and then asks
this table where it leads; it changes a participant's state nowhere else.

==================  ===============================================================
event               what happened
==================  ===============================================================
REQUEST             ``request_floor()`` (again, or a higher priority while talking)
RELEASE             ``release_floor()``: give the floor back or withdraw from the queue
GRANTED             the floor: the answer to the request, or a grant from the queue
QUEUED              the answer to the request: wait in the queue
DENIED              the answer to the request: no
QUEUE_MOVED         a new place in the queue
RELEASED            the server confirmed the release
REVOKED             the server took the floor back (preempted, too long, removed)
ENDED               the group's news shows the burst over (a newer talker, or idle)
REFUSED             an error answered a floor request or a release
TIMEOUT             a floor request or a release went unanswered
SESSION_LOST        the session is gone (heartbeat timeout, the server forgot it)
RELOGIN             a new session began: nothing held in the old one survives
==================  ===============================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType

from ptt.errors import FloorError

__all__ = ["TRANSITIONS", "FloorInput", "Participation", "next_state"]


class Participation(Enum):
    NO_PERMISSION = "idle"
    PENDING_REQUEST = "requesting"
    QUEUED = "queued"
    HAS_PERMISSION = "talking"
    PENDING_RELEASE = "releasing"


class FloorInput(Enum):
    """What moves a participant (see the module docstring)."""

    REQUEST = "request"
    RELEASE = "release"
    GRANTED = "granted"
    QUEUED = "queued"
    DENIED = "denied"
    QUEUE_MOVED = "queue moved"
    RELEASED = "released"
    REVOKED = "revoked"
    ENDED = "ended"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    SESSION_LOST = "session lost"
    RELOGIN = "relogin"


_NO = Participation.NO_PERMISSION
_REQ = Participation.PENDING_REQUEST
_Q = Participation.QUEUED
_HAS = Participation.HAS_PERMISSION
_REL = Participation.PENDING_RELEASE
_I = FloorInput

TRANSITIONS: Mapping[Participation, Mapping[FloorInput, Participation]] = MappingProxyType({
    _NO: MappingProxyType({
        _I.REQUEST: _REQ,
        _I.REFUSED: _NO,  # a late error to a release whose floor was revoked meanwhile
    }),
    _REQ: MappingProxyType({
        _I.REQUEST: _REQ,  # a higher priority asked while waiting
        _I.GRANTED: _HAS,
        _I.QUEUED: _Q,
        _I.DENIED: _NO,
        _I.RELEASE: _REL,
        _I.REFUSED: _NO,
        _I.TIMEOUT: _NO,
        _I.SESSION_LOST: _NO,  # only once the request is too old to carry to the next login
    }),
    _Q: MappingProxyType({
        _I.REQUEST: _REQ,
        _I.GRANTED: _HAS,
        _I.QUEUE_MOVED: _Q,
        _I.RELEASE: _REL,
        _I.REFUSED: _NO,
        _I.SESSION_LOST: _NO,
        _I.RELOGIN: _NO,
    }),
    _HAS: MappingProxyType({
        _I.REQUEST: _REQ,  # a higher priority (emergency) asked while talking
        _I.RELEASE: _REL,
        _I.REVOKED: _NO,
        _I.ENDED: _NO,
        _I.REFUSED: _NO,
        _I.SESSION_LOST: _NO,
        _I.RELOGIN: _NO,
    }),
    _REL: MappingProxyType({
        _I.REQUEST: _REQ,
        _I.RELEASE: _REL,
        _I.RELEASED: _NO,
        _I.REVOKED: _NO,
        _I.REFUSED: _NO,
        _I.TIMEOUT: _NO,
        _I.SESSION_LOST: _NO,
        _I.RELOGIN: _NO,
    }),
})


def next_state(state: Participation, event: FloorInput) -> Participation:
    """Where ``event`` leads from ``state``; FloorError if the table has no such move."""
    to = TRANSITIONS[state].get(event)
    if to is None:
        raise FloorError(f"no floor participant move on {event.value!r} from "
                         f"{state.name}")
    return to
