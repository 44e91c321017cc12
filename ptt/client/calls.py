"""One-to-one calls as every client shows them: which joined group is a call, and with whom.

A call is a private two-member group (``call:a+b``, :func:`ptt.names.call_group_name`) that the
server puts a callee into as soon as it is called, whatever client the callee runs. Listeners
play its bursts next to their own groups; the talking clients make the last call the reply
target for :data:`REPLY_WINDOW` seconds after its last activity, so keying answers the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from ptt.names import call_members, is_call_group_name

REPLY_WINDOW = 20.0  # seconds after the last word in a call during which the talk key answers it


def call_peer(group: str, me: str) -> str | None:
    """The other party of the call group ``group`` for user ``me``, or None (not a call)."""
    if not is_call_group_name(group):
        return None
    a, b = call_members(group)
    return b if a == me else a if b == me else None


@dataclass
class ReplyTarget:
    """The call the talk key answers: the last one that rang or was heard, for a while."""

    group: str | None = None
    peer: str | None = None
    last_activity: float = 0.0

    def note(self, group: str, peer: str, now: float) -> None:
        self.group, self.peer, self.last_activity = group, peer, now

    def active(self, now: float) -> bool:
        return self.group is not None and now - self.last_activity < REPLY_WINDOW

    def seconds_left(self, now: float) -> float:
        return max(0.0, REPLY_WINDOW - (now - self.last_activity)) if self.group else 0.0

    def clear(self) -> None:
        self.group = self.peer = None
