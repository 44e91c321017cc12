"""The directory the adapter keeps in step with the store, and the sessions' place in it.

Users, groups and members are loaded and changed by the adapter (``upsert_user``,
``upsert_group``, ``set_member`` ...) whenever the store changes; the core never reads the
database. Sessions join and leave the groups they are members of (Join, Leave, Bye, expiry), and a
Call makes a private one-to-one group (wire id from PRIVATE_GROUP_BASE up, never stored) that
disappears when its last member leaves (in a cluster: when nobody is in it on any node, which
its home, ``state.home``, says). A session that ends leaves all its groups: a talker that
said Bye releases the floor, one that vanished loses it (``floor.participant_lost``).
"""

from __future__ import annotations

import heapq

from ptt.errors import ProtocolError
from ptt.names import call_group_name, call_members
from ptt.protocol import floor as fl
from ptt.protocol import messages as m
from ptt.protocol.server_events import GroupUpdated, MemberJoined, MemberLeft, SessionEnded
from ptt.protocol.server_floor import FloorControl
from ptt.protocol.server_outbox import Outbox
from ptt.protocol.server_pages import Pages
from ptt.protocol.server_state import PRIVATE_GROUP_BASE, GroupEntry, ServerState, UserEntry
from ptt.protocol.session import Session

# Bytes of member entries in a Join answer: with the grant, the queue and the rest it stays well
# under wire.MAX_DATAGRAM (60,000). A group whose members do not fit lists its online members
# first; ``group show`` has them all (an answer in parts, ptt.protocol.parts).
JOINED_MEMBER_BYTES = 40_000
_MEMBER_MIN_BYTES = 4  # an entry's msgpack array, its name's length and two booleans
# Presence news of a group leaves at once when the group had none for this long, else gathered
# into one PresenceBatch when that time is up: N members joining together cost each member a
# batch per interval rather than a datagram per join (O(N) datagrams per batch, not O(N^2)), and
# a lone change is not delayed. Half a second is well inside what a person watching notices.
PRESENCE_INTERVAL = 0.5
# Bytes of changes in one PresenceBatch: a few IP fragments on an Ethernet path (a lost fragment
# loses the datagram), and still hundreds of members per batch.
PRESENCE_BATCH_BYTES = 8_000
_CHANGE_MIN_BYTES = 3  # a change's msgpack array, its name's length and a boolean


class Directory:
    """Users, groups, members; joins, leaves, calls, presence, the end of a session."""

    def __init__(self, state: ServerState, out: Outbox, floor: FloorControl, pages: Pages
                 ) -> None:
        self.state = state
        self.out = out
        self.floor = floor
        self.pages = pages
        # call group ids: [first, end); a cluster node takes a slice of its own (call_ids)
        self._private_ids = (PRIVATE_GROUP_BASE + 1, 1 << 32)
        self._next_private = PRIVATE_GROUP_BASE
        self._presence_heap: list[tuple[float, int]] = []  # (when, group id): batches due

    def get_timer(self) -> float | None:
        """When the next presence batch is due."""
        return self._presence_heap[0][0] if self._presence_heap else None

    def upsert_user(
        self, name: str, role: m.Role, salt: bytes, iterations: int, verifier: bytes
    ) -> None:
        self.state.users[name] = UserEntry(name, role, salt, iterations, verifier)
        for s in self.state.sessions.devices(name):
            s.role = role

    def remove_user(self, name: str, now: float) -> None:
        for s in self.state.sessions.devices(name):
            self.end_session(s, "removed", now)
        for group in sorted(self.state.member_of.get(name, ())):
            self.remove_member(group, name, now)
        self.state.users.pop(name, None)

    def upsert_group(
        self,
        name: str,
        group_id: int,
        max_talk: float,
        mode: str = "relay",
        private: bool = False,
        mcast_addr: str | None = None,
        mcast_port: int = 0,
    ) -> None:
        g = self.state.groups.get(name)
        cfg = fl.FloorConfig(
            max_talk=max_talk,
            silence=self.state.config.floor.silence,
            grace=self.state.config.floor.grace,
            start_window=self.state.config.floor.start_window,
            queue_max=self.state.config.floor.queue_max,
        )
        if g is None:
            g = GroupEntry(name, group_id, max_talk, mode, private, mcast_addr, mcast_port)
            self.state.groups[name] = g
            self.state.by_id[group_id] = g
            first_burst = int.from_bytes(self.state.entropy(4), "big") & 0x7FFFFFFF or 1
            self.state.floors.add_group(name, cfg, first_burst)
        else:
            g.max_talk, g.mode, g.mcast_addr, g.mcast_port = max_talk, mode, mcast_addr, mcast_port
            g.targets.clear()
            self.state.floors.configure(name, cfg)  # reschedules the group's timers
        if not private:
            self.out.emit(GroupUpdated(name))

    def remove_group(self, name: str, now: float) -> None:
        g = self.state.groups.pop(name, None)
        if g is None:
            return
        self.state.by_id.pop(g.group_id, None)
        if g.private and self.state.home is not None:
            self.state.home.call_removed(g, now)
        if not g.private:
            self.out.emit(GroupUpdated(name, removed=True))
        self.floor.floor_events(self.state.floors.remove_group(name, now), now, group=g)
        for s in g.joined.values():
            s.joined.discard(name)
        for user in g.members:
            self._not_member(user, name)
        if not g.private:
            for user in g.members:
                self._tell_gone(user, name, m.GoneReason.DELETED, now)

    def set_member(self, group: str, user: str, listen_only: bool = False,
                   now: float = 0.0) -> None:
        """Add a member, or change its listen-only flag (ending a burst or request it had)."""
        g = self.state.groups[group]
        if g.members.get(user, listen_only) != listen_only:
            self.floor.floor_events(self.state.floors.remove_member(group, user, now), now)
        g.members[user] = listen_only
        self.state.member_of.setdefault(user, set()).add(group)
        self.state.floors.floor(group).add_member(user, listen_only)

    def remove_member(self, group: str, user: str, now: float) -> None:
        g = self.state.groups.get(group)
        if g is None or user not in g.members:
            return
        self.floor.floor_events(self.state.floors.remove_member(group, user, now), now)
        del g.members[user]
        self._not_member(user, group)
        g.grants.pop(user, None)  # a removed member gets no key; a coordinator rotates
        gone = g.sessions_of(user)
        for s in gone:
            del g.joined[s.session_id]
            g.mcast_members.discard(s.session_id)
            s.joined.discard(group)
        g.online.pop(user, None)
        g.requesters.pop(user, None)
        g.asked_from.pop(user, None)
        if gone:
            self._local_presence(g, user, False, now)
        g.targets.clear()
        if not g.private:
            self._tell_gone(user, group, m.GoneReason.REMOVED, now)

    def _not_member(self, user: str, group: str) -> None:
        groups = self.state.member_of.get(user)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self.state.member_of[user]

    def _tell_gone(self, user: str, group: str, reason: m.GoneReason, now: float) -> None:
        """A member that is online learns at once that ``group`` is no longer its own."""
        for s in self.state.sessions.devices(user):
            self.out.send_reliable(s, lambda txn: m.GroupGone(txn, group, reason), now)

    def group_state(self, name: str, budget: int | None = None) -> m.GroupState:
        """The group as a member sees it. ``budget``: at most about that many bytes of member
        entries (online members first, then the others by name); the rest are only counted
        in ``members_total``. None: every member (group show, fetched in parts if need be)."""
        g = self.state.groups[name]
        f = self.state.floors.floor(name)
        entries = sorted(g.members.items())
        total = 0
        if budget is not None and sum(len(u.encode("utf-8")) + _MEMBER_MIN_BYTES
                                      for u in g.members) > budget:
            is_online = g.is_online
            first = [e for e in entries if is_online(e[0])]  # by name within each
            first += [e for e in entries if not is_online(e[0])]
            used, cut = 0, 0
            for u, _ in first:
                used += len(u.encode("utf-8")) + _MEMBER_MIN_BYTES
                if used > budget:
                    break
                cut += 1
            entries, total = sorted(first[:cut]), len(entries)
        # records only for the members listed: a Join answer is built for every joining member
        members = [m.MemberInfo(u, g.is_online(u), lo) for u, lo in entries]
        return m.GroupState(
            group=name,
            group_id=g.group_id,
            members=members,
            members_total=total,
            talker=f.holder,
            burst_id=f.burst_id if f.holder is not None else 0,
            queue=list(f.queue),
            max_talk_ms=int(g.max_talk * 1000),
            mode=g.mode,
            mcast_addr=g.mcast_addr,
            mcast_port=g.mcast_port,
            key_epoch=g.key_epoch,
            version=g.version,
            bridged=g.multicast_target() is not None,
        )

    def devices_in(self, group: str, user: str) -> list[str]:
        """The device ids of ``user``'s sessions in ``group``, oldest login first."""
        g = self.state.groups.get(group)
        if g is None:
            return []
        return [s.device or "-" for s in self.state.sessions.devices(user)
                if s.session_id in g.joined]

    def online_users(self) -> set[str]:
        return set(self.state.sessions.by_user)

    # --- sessions in groups ---------------------------------------------------------------

    def end_session(self, s: Session, reason: str, now: float, moved: bool = False) -> None:
        """``moved``: the session's device logged in again, here or on another node of a
        cluster, and speaks through its new session from now on (:meth:`leave`)."""
        for group in list(s.joined):
            self.leave(s, group, now, lost=reason != "bye", moved=moved)
        self.state.sessions.remove(s)
        self.out.reliable.cancel_where(s)
        self.pages.session_ended(s)
        self.out.emit(SessionEnded(s.user, s.session_id, reason))

    def on_join(self, s: Session, msg: m.Join, now: float) -> None:
        answer = self.join(s, msg, now)
        self.out.answer(s, msg.txn, answer, now)
        if isinstance(answer, m.Joined):
            self.pages.joined(s, now)

    def join(self, s: Session, msg: m.Join, now: float) -> m.Joined | m.Error:
        """``s`` joins ``msg.group`` (again: the state once more); its answer, for the caller
        to send (``on_join``, or a Login's Welcome), then :meth:`joined_pages`."""
        g = self.state.groups.get(msg.group)
        if g is None or s.user not in g.members:
            code = m.ErrorCode.NOT_FOUND if g is None else m.ErrorCode.NOT_MEMBER
            text = (f"unknown group '{msg.group}'" if g is None
                    else f"'{s.user}' is not a member of '{msg.group}'")
            return m.Error(msg.txn, code, text)
        if s.session_id not in g.joined:
            self._enter(g, s, now)
        state = self.group_state(g.name, JOINED_MEMBER_BYTES)
        if g.presence_pending:  # this state shows them: the batch is no news to this session
            g.presence_shown[s.session_id] = None
        return m.Joined(msg.txn, state, g.grants.get(s.user, b""))

    def joined_pages(self, s: Session, now: float) -> None:
        """After a join's answer left: the pages of the group ``s``'s device missed."""
        self.pages.joined(s, now)

    def _enter(self, g: GroupEntry, s: Session, now: float) -> None:
        g.joined[s.session_id] = s
        s.joined.add(g.name)
        g.targets.clear()
        if self.state.home is not None and len(g.joined) == 1:
            self.state.home.members_changed(g, now)
        if g.busy_since is not None:  # its Joined shows the talker: the client tightens
            self.state.sessions.tightened(s)
        g.online[s.user] = g.online.get(s.user, 0) + 1
        if g.online[s.user] == 1:  # another device of an online member changes nobody's view
            self._local_presence(g, s.user, True, now)
            self.out.emit(MemberJoined(g.name, s.user))

    def leave(self, s: Session, group: str, now: float, lost: bool = False,
              moved: bool = False) -> None:
        g = self.state.groups.get(group)
        s.joined.discard(group)
        if g is None or g.joined.get(s.session_id) is not s:
            return
        del g.joined[s.session_id]
        g.mcast_members.discard(s.session_id)
        g.targets.clear()
        left = g.online.get(s.user, 1) - 1
        if left:
            g.online[s.user] = left
        else:
            g.online.pop(s.user, None)
        # the floor is the user's: only the device that holds it or asked for it gives it up
        # (on the home or one server, the user's last session here for it too, unless that
        # device is on another node: floor_session None). A node that mirrors the floor goes
        # by the session it granted or that asked through it alone: a device of the holder
        # that joined here after the grant, or was told busy, holds nothing here
        # A device that logged in again (here, or on another node) gives up nothing of a floor
        # its user holds: it asks again through its new session and is granted its own burst
        # again (the same device id), and one that does not is freed by the floor's silence
        # timer. Given up here, the floor would go to the queue while the talker still talks.
        home = self.state.home
        holds = self.state.floors.floor(group).holder == s.user
        if moved and holds:
            pass
        elif home is not None and home.elsewhere(group, now):
            if (g.holder_sid if holds else g.requesters.get(s.user)) == s.session_id:
                home.left(group, s.user, s.device, lost, now)
        else:
            speaker = self.state.floor_session(g, s.user)
            if speaker is s or not left and speaker is not None:
                handler = self.state.floors.participant_lost if lost else self.state.floors.release
                self.floor.floor_events(handler(group, s.user, now), now)
        if not left:  # while this node still knows the talker's node (the roster)
            self.floor.delivery.left(g, s.user, now)
        if home is not None and not g.joined:
            home.members_changed(g, now)
        if not left:
            self._local_presence(g, s.user, False, now)
            self.out.emit(MemberLeft(group, s.user))
        if g.private and not g.joined and (home is None or home.call_over(g)):
            self.remove_group(group, now)

    # --- presence -----------------------------------------------------------------------------

    def _local_presence(self, g: GroupEntry, user: str, online: bool, now: float) -> None:
        """``user``'s first session here joined ``g``, or its last left."""
        if self.state.home is not None:
            self.state.home.presence(g, user, online, now)
        self.presence_changed(g, user, now)

    def presence_changed(self, g: GroupEntry, user: str, now: float) -> None:
        """``user`` came online in ``g`` or went offline: the group hears it in the next batch."""
        g.presence_pending[user] = None
        if g.presence_shown:  # a session that joined before this change has not seen it
            g.presence_shown.clear()
        if g.presence_due:
            return
        # not before the end of a window this server asked moved clients to log in within
        due = max(g.presence_sent + PRESENCE_INTERVAL, self.state.presence_after)
        if now >= due:
            self._send_presence(g, now)
        else:
            g.presence_due = due
            heapq.heappush(self._presence_heap, (due, g.group_id))

    def handle_timer(self, now: float) -> None:
        heap = self._presence_heap
        while heap and heap[0][0] <= now:
            due, gid = heapq.heappop(heap)
            g = self.state.by_id.get(gid)
            if g is not None and g.presence_due == due:  # not a group deleted meanwhile
                self._send_presence(g, now)

    def _send_presence(self, g: GroupEntry, now: float) -> None:
        """Every member in ``g`` learns each pending member's presence as it is at this moment
        (one that came and went meanwhile is news to nobody, and is sent all the same: a
        client applies a change that it already shows as nothing), in batches of at most
        PRESENCE_BATCH_BYTES of changes."""
        g.presence_sent, g.presence_due = now, 0.0
        pending, g.presence_pending = g.presence_pending, {}
        # news of one member alone is no news to that member's own devices; nor is any of it
        # to a session whose Joined was built after the last change (a dead node's clients
        # arriving together, bench_login_cost)
        subject = next(iter(pending)) if len(pending) == 1 else None
        shown, g.presence_shown = g.presence_shown, {}
        batch: list[m.PresenceChange] = []
        used = 0
        for user in pending:
            size = len(user.encode("utf-8")) + _CHANGE_MIN_BYTES
            if batch and used + size > PRESENCE_BATCH_BYTES:
                self.out.announce(g, m.PresenceBatch(g.name, batch), skip_user=subject,
                                  skip_sessions=shown)
                batch, used = [], 0
            batch.append(m.PresenceChange(user, g.is_online(user)))
            used += size
        if batch:
            self.out.announce(g, m.PresenceBatch(g.name, batch), skip_user=subject,
                              skip_sessions=shown)

    def call_ids(self, first: int, end: int) -> None:
        """Call group ids come from ``[first, end)``: a cluster node's own slice, so the nodes
        agree on a call's id (its voice frames carry it) without asking each other."""
        if not PRIVATE_GROUP_BASE < first < end <= 1 << 32:
            raise ProtocolError(f"call group ids [{first}, {end}) outside the private range")
        self._private_ids = (first, end)
        self._next_private = 0  # drawn at the first call

    def _private_id(self) -> int:
        """The next call group id of this server's range not in use (wrapping round)."""
        first, end = self._private_ids
        if not self._next_private:
            # from a point drawn in the range: a node that restarts does not give its first
            # calls the ids its calls before had, which other nodes may still hold
            self._next_private = first - 1 + int.from_bytes(self.state.entropy(4), "big") % (
                end - first)
        for _ in range(len(self.state.by_id) + 1):  # some id of the range is free by then
            self._next_private += 1
            if self._next_private >= end:
                self._next_private = first
            if self._next_private not in self.state.by_id:
                return self._next_private
        raise ProtocolError("no call group id free")

    def make_call(self, name: str, group_id: int) -> GroupEntry:
        """The call group ``name`` (its two members) under ``group_id``."""
        a, b = call_members(name)
        self.upsert_group(name, group_id, self.state.config.floor.max_talk, private=True)
        self.set_member(name, a)
        self.set_member(name, b)
        return self.state.groups[name]

    def end_call(self, name: str, now: float) -> None:
        """The call ends here although sessions may be in it (the node that ran it died): they
        are told so, then it goes."""
        g = self.state.groups.get(name)
        if g is None or not g.private:
            return
        for s in list(g.joined.values()):
            self.out.send_reliable(
                s, lambda txn: m.GroupGone(txn, name, m.GoneReason.CALL_LOST), now)
        self.remove_group(name, now)

    def on_call(self, s: Session, msg: m.Call, now: float) -> None:
        refusal = self.state.call_refusal(s, msg.peer)
        if refusal is not None:
            self.out.answer(s, msg.txn, m.Error(msg.txn, m.ErrorCode.NOT_FOUND, refusal), now)
            return
        name = call_group_name(s.user, msg.peer)
        g = self.state.groups.get(name)
        if g is None:
            g = self.make_call(name, self._private_id())
        self.out.answer(s, msg.txn, m.CallResponse(msg.txn, name), now)
        for peer in self.state.sessions.devices(msg.peer):  # every device of the callee rings
            self.ring(g, peer, s.user, now)
        if self.state.home is not None:  # and its devices on the other nodes of a cluster
            self.state.home.call_made(g, s.user, msg.peer, now)
        # an offline peer is rung when it logs in (ring_waiting_calls), while the caller waits

    def ring(self, g: GroupEntry, peer: Session, caller: str, now: float) -> None:
        """Put ``peer`` in the call at once (so the caller's first words reach it) and tell it
        who is calling; its client joins too, which only answers the call's state."""
        if g.joined.get(peer.session_id) is not peer:
            self._enter(g, peer, now)
        self.out.send_reliable(peer, lambda txn: m.IncomingCall(txn, g.name, caller), now)

    def ring_waiting_calls(self, s: Session, now: float) -> None:
        """A user who logs in is rung by every call that waits for it (its caller still in,
        here or, in a cluster, on another node)."""
        groups = self.state.groups
        home = self.state.home
        for name in sorted(self.state.member_of.get(s.user, ())):
            g = groups.get(name)
            if g is None or not g.private or s.user in g.online:
                continue
            if g.joined or home is not None and home.call_open(g):
                a, b = call_members(name)
                self.ring(g, s, b if s.user == a else a, now)
