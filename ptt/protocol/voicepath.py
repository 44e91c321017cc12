"""How each of a client's groups carries voice: through the server's relay, or multicast.

Sans-I/O like the client core it works beside (:class:`~ptt.protocol.client.ClientCore`, whose
session, voice key and coordinator requests it uses)::

    paths = VoicePaths(core, enabled=True, entropy=os.urandom)
    dest = paths.joined(state, now)        # a join answered: the address to listen on, or None
    paths.listening(group, now, where)     # listening there: probe it
    paths.unreachable(group, reason)       # cannot listen there: the relay it is
    paths.heard(group_id, data, now)       # a datagram from a group's address: what it is
    paths.holder_notice(data)              # the relay names a burst's holder
    paths.answered(txn, result)            # the coordinator answer to a voice path request
    paths.handle_timer(now)                # when now >= paths.get_timer()
    paths.datagrams_to_send() -> [(bytes, (addr, port))]   # probes, to group addresses
    paths.addresses_to_leave() -> [group_id]               # stop listening there
    paths.events() -> [VoicePathChosen]

A group in ``multicast`` or ``auto`` mode is joined on the relay first (so a member who joins
mid-burst hears the talker at once); then the client listens on the group's multicast address
and probes it: a PROBE datagram to the group that the server, which listens there, echoes back
to the group. When the echo comes back within ``PROBE_TIMEOUT`` the server is asked (member
operation ``VOICE_PATH_OP``) to stop relaying to this member, and voice for the group goes to
the group address; otherwise the group stays on the relay. Either way a :class:`VoicePathChosen`
event says which, and why. In ``multicast`` mode an address the client cannot listen on is an
error (:meth:`VoicePaths.error`); in ``auto`` mode it is a reason to use the relay.

Frames heard on a group address are played only if they belong to the burst the server
announced, from the holder's session the server named in its holder notice
(:meth:`VoicePaths.heard` says which; an encrypted group's talker signature is checked by the
caller, who holds the keys). A revoke for silence while talking by multicast means the server
no longer hears the group (its mode changed): the caller sets the group up again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import NamedTuple

from ptt.errors import ProtocolError
from ptt.protocol import messages as m
from ptt.protocol.client import ClientCore
from ptt.wire.voice import (
    ECHO_SEQ,
    HOLDER_SEQ,
    PROBE_SEQ,
    VoiceFlags,
    VoiceHeader,
    add_mac,
    encode_voice,
    is_probe,
    is_voice,
    peek_route,
    peek_seq,
    strip_mac,
)

__all__ = [
    "CONFIRM_TIMEOUT", "PROBE_INTERVAL", "PROBE_TIMEOUT", "Heard", "HeardFrame", "VoicePath",
    "VoicePathChosen", "VoicePaths",
]

PROBE_TIMEOUT = 1.0  # no echo by then: the group stays on the relay
PROBE_INTERVAL = 0.25  # probes are datagrams too: send a few
CONFIRM_TIMEOUT = 3.0  # after the echo, for the server's answer to the voice path request

Dest = tuple[str, int]


class VoicePath(StrEnum):
    RELAY = "relay"
    PROBING = "probing"  # deciding: voice comes by the relay meanwhile
    MULTICAST = "multicast"


@dataclass(frozen=True, slots=True)
class VoicePathChosen:
    """How this client gets and sends ``group``'s voice: ``path`` is "multicast" or "relay";
    ``reason`` says why (e.g. the route that is missing), for the user to see."""

    group: str
    path: str
    reason: str = ""


class Heard(Enum):
    """What a datagram from a group's multicast address is."""

    MALFORMED = "malformed"
    IGNORED = "ignored"  # not a joined group's, a probe, or the relay still brings the voice
    ECHO = "echo"  # our probe came back: the server was asked to stop relaying
    OWN = "own"  # our own voice, looped back
    WRONG_BURST = "wrong burst"  # from the holder's session, not of the announced burst
    NOT_HOLDER = "not holder"  # from a member who does not hold the floor
    HOLDER = "holder"  # the announced burst from its holder: play it (signature allowing)


class HeardFrame(NamedTuple):
    """What :meth:`VoicePaths.heard` found (a tuple: built for every multicast frame)."""

    verdict: Heard
    data: bytes = b""  # the frame as its talker made it (without the MAC)
    group: str = ""
    talker: str = ""
    encrypted: bool = False  # the group has a key: only the talker's signature proves it


@dataclass
class _Group:
    group: str
    group_id: int = 0
    mode: str = "relay"
    dest: Dest | None = None
    where: str = ""  # the interface and TTL the address is listened on
    path: VoicePath = VoicePath.RELAY
    reason: str = ""
    error: str | None = None
    nonce: int = 0
    probe_until: float = 0.0
    txn: int = 0  # of the pending voice path request
    confirming: bool = False  # the echo came: waiting for the server's answer, not probing
    deadline: float | None = None  # the next probe, or the end of waiting for the answer


class VoicePaths:
    """The voice path of every joined group; see the module docstring."""

    def __init__(self, core: ClientCore, enabled: bool,
                 entropy: Callable[[int], bytes]) -> None:
        self.core = core
        self.enabled = enabled  # multicast allowed on this client
        self._entropy = entropy
        self._groups: dict[str, _Group] = {}
        self._by_id: dict[int, _Group] = {}
        self._on_multicast: dict[int, Dest] = {}  # group id -> address, if multicast
        self._holders: dict[int, tuple[int, int]] = {}  # group id -> (holder session, burst)
        self._out: list[tuple[bytes, Dest]] = []
        self._leave: list[int] = []
        self._events: list[VoicePathChosen] = []

    # --- outputs ------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Dest]]:
        out, self._out = self._out, []
        return out

    def addresses_to_leave(self) -> list[int]:
        out, self._leave = self._leave, []
        return out

    def events(self) -> list[VoicePathChosen]:
        ev, self._events = self._events, []
        return ev

    def get_timer(self) -> float | None:
        ts = [p.deadline for p in self._groups.values() if p.deadline is not None]
        return min(ts) if ts else None

    # --- queries ------------------------------------------------------------------------------

    def path(self, group: str) -> VoicePath:
        p = self._groups.get(group)
        return p.path if p is not None else VoicePath.RELAY

    def reason(self, group: str) -> str:
        p = self._groups.get(group)
        return p.reason if p is not None else ""

    def mode(self, group: str) -> str:
        p = self._groups.get(group)
        return p.mode if p is not None else "relay"

    def error(self, group: str) -> str | None:
        """Why a ``multicast``-mode group cannot be heard here, or None."""
        p = self._groups.get(group)
        return p.error if p is not None else None

    def group_of(self, group_id: int) -> str | None:
        p = self._by_id.get(group_id)
        return p.group if p is not None else None

    def group_id(self, group: str) -> int | None:
        p = self._groups.get(group)
        return p.group_id if p is not None else None

    def multicast_dest(self, group_id: int) -> Dest | None:
        """The address voice for ``group_id`` goes to, when its path is multicast."""
        return self._on_multicast.get(group_id)

    @property
    def any_multicast(self) -> bool:
        return bool(self._on_multicast)

    # --- input --------------------------------------------------------------------------------

    def joined(self, state: m.GroupState, now: float) -> Dest | None:
        """A join was answered (first time, again, or after a re-login): decide the path anew.
        Returns the multicast address to listen on (then call :meth:`listening` or
        :meth:`unreachable`), or None when the relay it is."""
        p = self._groups.get(state.group)
        if p is None:
            p = self._groups[state.group] = _Group(state.group)
        self._by_id.pop(p.group_id, None)
        self._on_multicast.pop(p.group_id, None)
        p.group_id, p.mode, p.error = state.group_id, state.mode, None
        self._by_id[p.group_id] = p
        if not self.enabled:
            self._choose(p, VoicePath.RELAY, "multicast is off on this client")
            return None
        if state.mode == "relay" or not state.mcast_addr:
            self._choose(p, VoicePath.RELAY, f"the group's mode is {state.mode}")
            return None
        p.dest = (state.mcast_addr, state.mcast_port)
        return p.dest

    def unreachable(self, group: str, reason: str) -> None:
        """The group's address cannot be listened on (no interface, no route)."""
        p = self._groups.get(group)
        if p is None:
            return
        if p.mode == "multicast":
            p.error = reason
        self._choose(p, VoicePath.RELAY, reason)

    def listening(self, group: str, now: float, where: str) -> None:
        """Listening on the group's address (``where``: its interface and TTL): probe it."""
        p = self._groups.get(group)
        if p is None or p.dest is None:
            return
        p.path, p.reason, p.where = VoicePath.PROBING, "", where
        p.nonce = int.from_bytes(self._entropy(4), "big") | 1
        p.probe_until = now + PROBE_TIMEOUT
        p.confirming = False
        self._probe(p, now)

    def answered(self, txn: int, result: dict[str, object]) -> None:
        """A coordinator answer: the server's word on a voice path request, if it is one."""
        for p in list(self._groups.values()):
            if p.txn == txn:
                p.txn = 0
                self._path_answered(p, result)

    def forget(self, group: str) -> None:
        """The group was left: stop listening on its address."""
        p = self._groups.pop(group, None)
        if p is None:
            return
        self._by_id.pop(p.group_id, None)
        self._on_multicast.pop(p.group_id, None)
        self._leave.append(p.group_id)

    def handle_timer(self, now: float) -> None:
        for p in list(self._groups.values()):
            if p.deadline is None or now < p.deadline:
                continue
            p.deadline = None
            if p.confirming:
                p.confirming = False
                if p.path is VoicePath.PROBING and p.txn:
                    p.txn = 0
                    self._choose(p, VoicePath.RELAY,
                                 "the server did not answer the voice path request")
            else:
                self._probe(p, now)

    def holder_notice(self, data: bytes) -> bool:
        """The server names the holder of a group's current burst (for multicast playout);
        False when the datagram is malformed."""
        try:
            gid, sender, burst = peek_route(data)
        except ProtocolError:
            return False
        if peek_seq(data) == HOLDER_SEQ:
            self._holders[gid] = (sender, burst)
        return True

    def heard(self, group_id: int, data: bytes, now: float) -> HeardFrame:
        """A datagram heard on ``group_id``'s multicast address: play only the announced
        burst. An echo of our probe asks the server to stop relaying (the caller then sends
        what the client core queued)."""
        try:
            if not is_voice(data):
                raise ProtocolError("not voice")
            data = strip_mac(data)  # a talker's, heard directly: only the server can check it
            gid, sender, burst = peek_route(data)
        except ProtocolError:
            return HeardFrame(Heard.MALFORMED)
        p = self._by_id.get(group_id)
        if p is None:
            return HeardFrame(Heard.IGNORED)
        if is_probe(data):
            if (sender == self.core.session_id and burst == p.nonce
                    and p.path is VoicePath.PROBING and peek_seq(data) == ECHO_SEQ):
                p.nonce = 0  # the echoes of the other probes change nothing
                p.txn = self.core.admin(m.VOICE_PATH_OP, {"group": p.group, "multicast": True},
                                        now)
                p.confirming, p.deadline = True, now + CONFIRM_TIMEOUT  # the answer decides
                return HeardFrame(Heard.ECHO)
            return HeardFrame(Heard.IGNORED)
        g = self.core.groups.get(p.group)
        holder = self._holders.get(gid)
        ok = (gid == group_id and g is not None and g.talker is not None
              and holder == (sender, burst) and burst == g.talker_burst)
        if p.path is not VoicePath.MULTICAST and not ok:
            return HeardFrame(Heard.IGNORED)  # still probing: the relay brings it
        if sender == self.core.session_id:
            return HeardFrame(Heard.OWN)
        if not ok:
            if holder is not None and sender == holder[0]:
                return HeardFrame(Heard.WRONG_BURST)
            return HeardFrame(Heard.NOT_HOLDER)
        assert g is not None and g.talker is not None
        return HeardFrame(Heard.HOLDER, data, p.group, g.talker,
                          bool(g.state is not None and g.state.key_epoch))

    # --- internals ----------------------------------------------------------------------------

    def _probe(self, p: _Group, now: float) -> None:
        if p.path is not VoicePath.PROBING or p.dest is None:
            return
        if now >= p.probe_until:
            self._choose(p, VoicePath.RELAY,
                         f"no echo from multicast {p.dest[0]}:{p.dest[1]} within "
                         f"{PROBE_TIMEOUT:g} s: the LAN may not carry multicast")
            return
        probe = add_mac(self.core.voice_key, encode_voice(
            VoiceHeader(p.group_id, self.core.session_id, p.nonce, PROBE_SEQ, 0,
                        VoiceFlags.PROBE), b""))
        self._out.append((probe, p.dest))
        p.deadline = min(now + PROBE_INTERVAL, p.probe_until)

    def _path_answered(self, p: _Group, result: dict[str, object]) -> None:
        if (result.get("multicast") is True and p.path is VoicePath.PROBING
                and p.dest is not None):
            p.deadline, p.confirming = None, False
            p.path = VoicePath.MULTICAST
            p.reason = f"multicast {p.dest[0]}:{p.dest[1]} on {p.where}"
            self._on_multicast[p.group_id] = p.dest
            self._events.append(VoicePathChosen(p.group, VoicePath.MULTICAST, p.reason))
        elif p.path is not VoicePath.RELAY:
            why = result.get("error") or "the server does not listen on the group's address"
            self._choose(p, VoicePath.RELAY, f"the server refused multicast: {why}")

    def _choose(self, p: _Group, path: VoicePath, reason: str) -> None:
        p.deadline, p.confirming = None, False
        if path is VoicePath.RELAY:
            self._on_multicast.pop(p.group_id, None)
            self._leave.append(p.group_id)
        p.path, p.reason = path, reason
        self._events.append(VoicePathChosen(p.group, path, reason))
