"""Voice routing: which frames the relay forwards, to whom, and the multicast bridge.

The relay forwards only the current holder's current burst, from the holder's own address, with
the holder's session MAC (``ptt.wire.voice``: checked, then removed; the bytes forwarded are
left in :attr:`Relay.relayed`); every other frame is dropped (and its talker, if its burst
is over, told so at most every STALE_NOTICE_INTERVAL). Destinations are computed once per talker and cached in
``GroupEntry.targets`` until membership, the voice paths or the floor change: the per-frame cost
is a header peek, two dict look-ups and the floor check.

Multicast groups. Each member is a relay member (the server forwards it every frame) until it
proves with a probe that it reaches the group's multicast address and asks, with the member
operation ``Admin(op=VOICE_PATH_OP, args={"group": ..., "multicast": true})``, to be served by
multicast; the server agrees only for groups the adapter listens on (``set_multicast_ready``).
The server then bridges: a relay talker's frame goes to the relay members and once to the group
address; a frame heard on the group address goes to the relay members only. Hearing the group
also keeps the floor's silence timer (T1) fed when the talker multicasts, at one received frame
per 20 ms whatever the number of listeners. A pure multicast group costs no relay sends at all.

The MAC gates the bridge too: a frame heard on the group address is bridged only if it carries the
MAC of the session it names, and a probe is echoed only then, as its 22-byte header, never larger
than it and never for a host that did not log in.

Multicast listeners must tell the holder's frames from anyone else's, so the server sends each
multicast member a *holder notice* with every grant (and when it moves to multicast mid-burst):
a voice header with the PROBE flag, ``seq`` HOLDER_SEQ, the holder's session id as ``sender``
and the burst id, unicast like ``FloorTaken`` and no payload. Probes carry ``seq`` PROBE_SEQ and
the server's echo of a probe, sent to the group, ECHO_SEQ.
"""

from __future__ import annotations

from ptt.crypto.channel import OVERHEAD
from ptt.errors import ProtocolError
from ptt.protocol import floor as fl
from ptt.protocol import limits
from ptt.protocol import messages as m
from ptt.protocol.messages import encode_message
from ptt.protocol.server_outbox import Outbox
from ptt.protocol.server_state import GroupEntry, ServerState
from ptt.protocol.session import Addr, Session
from ptt.wire.voice import (
    ECHO_SEQ,
    HOLDER_SEQ,
    PROBE_SEQ,
    VoiceFlags,
    VoiceHeader,
    encode_voice,
    header_with_seq,
    is_probe,
    open_mac,
    peek_frame,
    peek_seq,
    strip_signature,
)

STALE_NOTICE_INTERVAL = 0.5
PATH_CHECK_EVERY = 0.2  # PathChecks per session at most (voice from a new address)


class Relay:
    """Relay targets, the multicast bridge, probes, holder notices, stale-talker notices."""

    def __init__(self, state: ServerState, out: Outbox) -> None:
        self.state = state
        self.out = out
        self.relayed = b""  # the last accepted voice frame as it is forwarded (MAC removed)
        self.relayed_signed = b""  # ... to a multicast address: the talker's signature kept
        self.voice_refused = 0  # voice for a burst that is not the holder's current one (metrics)

    def route_voice(self, data: bytes, addr: Addr, now: float) -> tuple[Addr, ...] | None:
        """The relay's hot path: forward only the current holder's current burst.

        Returns the destinations of an accepted frame (empty when nobody else listens), or None
        for a frame that is dropped."""
        try:
            group_id, sender, burst_id, seq = peek_frame(data)
        except ProtocolError as exc:
            self.out.drop(addr, f"malformed voice datagram: {exc}")
            return None
        s = self.state.sessions.by_id.get(sender)
        g = self.state.by_id.get(group_id)
        if s is None or g is None:
            self.out.drop(addr, "voice from an unknown session or group")
            return None
        clear = open_mac(s.voice_key, data)
        if clear is None:  # before anything is done for it, a path check included
            self.out.drop(addr, "voice without its session's MAC")
            return None
        if g.holder_sid != sender and self.state.floors.floor(g.name).holder == s.user:
            self.voice_refused += 1  # the user's floor, but another of its devices holds it
            return None
        if s.addr != addr:
            self._check_path(s, g, data, addr, now)
            self.out.drop(addr, "voice from an unknown session or group")
            return None
        self.relayed_signed, self.relayed = clear, strip_signature(clear)
        s.last_seen = now
        if not self.state.floors.voice(g.name, s.user, burst_id, now):
            self.voice_refused += 1
            self._stale_talker(s, g, burst_id, now)
            return None
        if seq >= g.burst_frames:  # the highest sequence number + 1: what the talker sent
            g.burst_frames = seq + 1
        if self.state.home is not None:  # a cluster node: the home's T1 hears of it
            self.state.home.voice(g.name, s.user, burst_id, now)
        t = g.targets.get(sender)
        if t is None:
            t = self._relay_targets(g, s)
            mcast = g.multicast_target()
            if mcast is not None and g.mcast_members:
                t += (mcast,)  # bridged: multicast members hear a relay talker
            g.targets[sender] = t
        return t

    def receive_multicast(self, data: bytes, addr: Addr, now: float) -> tuple[Addr, ...] | None:
        """Voice heard on a group's multicast address: feeds the floor's silence timer and returns
        the relay members to bridge an accepted frame to (None: dropped). Answers probes.

        The source address cannot be checked against the session (multicast leaves from another
        socket than the talker's control traffic): the session MAC is what proves the sender,
        then the floor check on sender and burst gates it."""
        try:
            group_id, sender, burst_id, seq = peek_frame(data)
        except ProtocolError as exc:
            self.out.drop(addr, f"malformed voice datagram: {exc}")
            return None
        s = self.state.sessions.by_id.get(sender)
        g = self.state.by_id.get(group_id)
        if s is None or g is None or g.joined.get(s.session_id) is not s:
            self.out.drop(addr, "multicast voice from an unknown session or group")
            return None
        clear = open_mac(s.voice_key, data)
        if clear is None:
            self.out.drop(addr, "multicast voice without its session's MAC")
            return None
        if is_probe(clear):
            mcast = g.multicast_target()
            if mcast is not None and peek_seq(clear) == PROBE_SEQ:
                # echo its header to the group: the prober hears that the LAN carries its
                # multicast to the server and the server's back to it
                self.out.datagrams.append((header_with_seq(clear, ECHO_SEQ), mcast))
            return None
        self.relayed_signed, self.relayed = clear, strip_signature(clear)
        if not self.state.floors.voice(g.name, s.user, burst_id, now):
            self.voice_refused += 1
            self._stale_talker(s, g, burst_id, now)
            return None
        if seq >= g.burst_frames:
            g.burst_frames = seq + 1
        key = ~sender
        t = g.targets.get(key)
        if t is None:
            t = g.targets[key] = self._relay_targets(g, s)
        return t

    def _check_path(self, s: Session, g: GroupEntry, data: bytes, addr: Addr,
                    now: float) -> None:
        """The floor holder's voice from a new address: its NAT may have rebound the port. Ask
        there (sealed, rate-limited, never larger than the frame) for a heartbeat, whose newer
        sequence number moves the session (``server_gate``). The frame's session MAC was checked,
        but a frame may be a replay captured on the old path: only a newer heartbeat moves it."""
        if (self.state.floors.floor(g.name).holder != s.user
                or now - s.path_check_at < PATH_CHECK_EVERY):
            return
        plain = encode_message(m.PathCheck())
        if limits.answer_fits(len(data), len(plain) + OVERHEAD):
            s.path_check_at = now
            self.out.datagrams.append((self.out.seal(s, plain), addr))

    def _relay_targets(self, g: GroupEntry, talker: Session) -> tuple[Addr, ...]:
        return tuple(o.addr for sid, o in g.joined.items()
                     if o is not talker and sid not in g.mcast_members)

    def set_multicast_ready(self, group: str, ready: bool) -> None:
        """The adapter does (or no longer does) listen on the group's multicast address. When it
        stops, its multicast members go back to the relay (a member still talking by multicast
        loses the floor to T1 and probes again, which then fails)."""
        g = self.state.groups.get(group)
        if g is None or g.mcast_ready == ready:
            return
        g.mcast_ready = ready
        g.targets.clear()
        if not ready:
            g.mcast_members.clear()

    def on_voice_path(self, s: Session, msg: m.Admin, now: float) -> None:
        """A member asks to be served by multicast (after its probe came back) or by relay. The
        answer says what the server now does: ``{"group", "multicast"}`` (+ ``"error"``)."""
        name = msg.args.get("group")
        g = self.state.groups.get(name) if isinstance(name, str) else None
        result: dict[str, str | bool] = {"group": str(name), "multicast": False}
        if g is None or g.joined.get(s.session_id) is not s:
            result["error"] = f"you have not joined '{name!s}'"
        else:
            multicast = msg.args.get("multicast") is True and g.multicast_target() is not None
            if multicast != (s.session_id in g.mcast_members):
                (g.mcast_members.add if multicast else g.mcast_members.discard)(s.session_id)
                g.targets.clear()
            result["multicast"] = multicast
        self.out.answer(s, msg.txn, m.AdminResponse(msg.txn, result), now)  # type: ignore[arg-type]
        if g is not None and result["multicast"]:  # moved mid-burst: whose frames to play
            f = self.state.floors.floor(g.name)
            self.holder_notice(g, f.holder, f.burst_id, [s])

    def notice_holder(self, g: GroupEntry, ev: fl.Granted) -> None:
        if g.mcast_members:  # else nobody to tell (a relay group)
            self.holder_notice(g, ev.user, ev.burst_id,
                               [g.joined[sid] for sid in g.mcast_members])

    def holder_notice(self, g: GroupEntry, user: str | None, burst_id: int,
                       to: list[Session]) -> None:
        """Tell multicast members whose frames to play: the holder's session and burst."""
        if not to:  # no multicast member (every grant on a relay group): nothing to look up
            return
        holder = self.state.floor_session(g, user) if user is not None else None
        if holder is not None:
            data = encode_voice(VoiceHeader(g.group_id, holder.session_id, burst_id, HOLDER_SEQ,
                                            0, VoiceFlags.PROBE), b"")
            self.out.datagrams.extend((data, s.addr) for s in to)

    def _stale_talker(self, s: Session, g: GroupEntry, burst_id: int, now: float) -> None:
        """Voice for a burst that is over: the talker missed the news, so tell it (rate-limited)."""
        if now - s.notice_at < STALE_NOTICE_INTERVAL:
            return
        s.notice_at = now
        f = self.state.floors.floor(g.name)
        if f.holder is not None and f.holder != s.user:
            msg: m.Message = m.FloorTaken(g.name, f.holder, f.burst_id,
                                          f.holder_priority or m.Priority.NORMAL,
                                          int(g.max_talk * 1000), g.version, list(f.queue))
        else:  # idle, or the sender holds a newer burst than it talks with: its burst is over
            msg = m.FloorIdle(g.name, burst_id, g.version if f.holder is None else 0)
        self.out.send(s, msg)
