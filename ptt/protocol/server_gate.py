"""The server's gate: the plain login, and sealed datagrams opened (or dropped) per session.

Only the login is plain (``docs/security.md``): a Hello of at least ``limits.MIN_HELLO_SIZE``
bytes (shorter ones are dropped unanswered), the Challenge, the Login and the errors answering
them. A good Login creates the session with its :class:`~ptt.crypto.channel.SecureChannel` and is
answered with a *sealed* Welcome; from then on every datagram between that client and the server,
both ways, is sealed ('S'), heartbeats included, and one that does not open (forged, altered,
replayed, from another address) is dropped silently and reported as
:class:`~ptt.protocol.server_events.Dropped`.

Datagrams without a session pass size ceilings before parsing (``ServerCore.receive_datagram``), a
rate limit per source (host, port) and in aggregate (``ServerCoreConfig.rate_limits``), and are
never answered with more bytes than they carry (``NO_SESSION`` only when it fits): a spoofed
source gains nothing by reflecting off the server. Requests resent by a client are answered from
the response cache, which keeps sealed bytes.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import math
from collections.abc import Sequence

from ptt.crypto.channel import REPLAYED, Role, SecureChannel, is_keepalive, peek_session_id
from ptt.errors import ProtocolError, PttError
from ptt.protocol import auth, limits
from ptt.protocol import messages as m
from ptt.protocol.messages import (
    decode_heartbeat,
    decode_message,
    encode_heartbeat_ack,
    encode_message,
)
from ptt.protocol.server_events import SessionMoved, SessionStarted
from ptt.protocol.server_groups import Directory
from ptt.protocol.server_list import move_window
from ptt.protocol.server_outbox import Outbox
from ptt.protocol.server_state import ServerState
from ptt.protocol.session import Addr, Session
from ptt.wire.voice import voice_mac_key

log = logging.getLogger("ptt.protocol.server")  # the server core's one log, whichever part writes

LOGIN_PENDING_TTL = auth.LOGIN_TTL  # a Challenge's server nonce is good this long
# what a session may send (sealed); anything else inside a sealed datagram is dropped
SESSION_MESSAGES = (m.Heartbeat, m.Bye, m.Join, m.Leave, m.FloorRequest, m.FloorRelease, m.Call,
                    m.BurstReceipt,
                    m.Admin, m.PageSend, m.PageSubscribe, m.PageReceipt)
NO_SESSION_TEXT = "no session: log in again"


def too_many_devices(user: str, limit: int) -> str:
    """What the oldest device of a user is told when a login from one more ends it."""
    return (f"'{user}' signed in on another device; at most {limit} at once, "
            f"and this one was the oldest")
# a Login's joins taken at most (a plain Login is at most limits.MAX_UNAUTH_DATAGRAM, 512
# bytes, so a client carries far fewer; the rest it joins as ever)
MAX_LOGIN_JOINS = 64
KNOWN_HOSTS_MAX = 65_536  # hosts that logged in, most recent last (their logins go first)
MAX_ANNOUNCE = 65_536  # addresses told of a restart at most (a session table's worth)


class Gate:
    """Hello/Challenge/Login, rate limits, opening sealed datagrams, sessions closed or given up."""

    def __init__(self, state: ServerState, out: Outbox, directory: Directory) -> None:
        self.state = state
        self.out = out
        self.directory = directory  # sessions replaced, closed or given up end there
        config = state.config
        # decoy salts and verifiers, stateless challenges; the adapter sets the stored one
        # (set_secret) so that decoys do not change when the server restarts
        self._secret = state.entropy(32)
        self._nonce_label = ""  # bind_nonces: a cluster node's id
        self._nonce_secret = _nonce_key(self._secret, self._nonce_label)
        self._used_nonces = auth.UsedNonces(auth.LOGIN_TTL + 2.0)  # > a stamp's whole life
        self._login_limits = limits.LoginLimiter(config.login_limits)
        self._known_hosts: dict[str, None] = {}  # hosts that logged in, in order
        # sessions ended with a SessionClosed not yet acknowledged, by id: kept only to resend
        # it and to open the client's Ack, until the ack or RETRY_TOTAL
        self._closed_unacked: dict[int, Session] = {}
        self._limiter = limits.RateLimiter(config.rate_limits)
        # the same limits, apart, for hosts that logged in before: a flood spoofed from many
        # new addresses cannot spend their aggregate budget (known_host); without a share per
        # prefix, so the clients behind one NAT address all come back at once
        self._known_limiter = limits.RateLimiter(config.rate_limits.unshared())
        self._req_len = 0  # size of the plain datagram being answered (no amplification)

    def receive_sealed(self, data: bytes, addr: Addr, now: float
                       ) -> tuple[Session, m.Message] | None:
        """A session's datagram: open it (or drop it silently). Heartbeats and resent requests
        are answered here; an Ack, a ReceiverReport or a new request is returned with its
        session for the core to act on."""
        try:
            sid = peek_session_id(data)
        except ProtocolError as exc:
            self.out.drop(addr, f"malformed sealed datagram: {exc}")
            return None
        s = self.state.sessions.by_id.get(sid)
        if s is None and sid in self._closed_unacked:
            self._closed_ack(self._closed_unacked[sid], data, addr)
            return None
        if s is None or s.channel is None:
            # an expired session, a restarted server, or a forgery: tell the sender to log in
            # again, if it fits (a sealed datagram is at least 30 bytes, the answer 30)
            if self._limiter_for(addr).allow(addr[:2], now):
                self._req_len = len(data)
                self._reply_plain(addr, 0, m.Error(0, m.ErrorCode.NO_SESSION, NO_SESSION_TEXT),
                                  now, cache=False)
            self.out.drop(addr, "sealed datagram for an unknown session")
            return None
        # from another address: a NAT that rebound the client's port, or a copy sent from
        # elsewhere; only one that opens and is the newest the session ever sent moves it
        top = s.channel.received_top if s.addr != addr else None
        try:
            plain = s.channel.open(data)
        except PttError as exc:  # forged, altered, replayed or too old: nothing changed
            what = "replayed" if str(exc).startswith(REPLAYED) else "refused"
            self.out.drop(addr, f"sealed datagram {what}: {exc}")
            return None
        if top is not None:
            if SecureChannel.peek_seq(data) <= top:
                self.out.drop(addr, "sealed datagram from another address than its session's")
                return None
            self._move_session(s, addr)
        s.last_seen = now
        hb = decode_heartbeat(plain)
        if hb is not None and hb[1] == sid:  # the fast path: most of a big server's traffic
            ack = encode_heartbeat_ack(hb[0], self.state.digest(s))
            self.out.datagrams.append((s.channel.seal(ack, keepalive=True), addr))
            return None
        if is_keepalive(data):  # only heartbeats travel marked as keepalives
            self.out.drop(addr, "keepalive datagram that is not a heartbeat")
            return None
        try:
            msg = decode_message(plain)
        except ProtocolError as exc:  # it opened: the session's own client sent garbage
            self.out.drop(addr, f"malformed sealed message: {exc}")
            return None
        if getattr(msg, "session_id", sid) != sid:
            self.out.drop(addr, "sealed message names another session")
        elif isinstance(msg, (m.Ack, m.ReceiverReport)):  # no answer: nothing to cache
            return s, msg
        elif isinstance(msg, SESSION_MESSAGES):
            cached = None if isinstance(msg, m.Heartbeat) else self.out.cache.get((sid, msg.txn),
                                                                                  now)
            if cached is None:
                return s, msg
            self.out.datagrams.append((cached, addr))
        else:
            self.out.drop(addr, f"unexpected sealed {type(msg).__name__} from a client")
        return None

    def _move_session(self, s: Session, addr: Addr) -> None:
        """The session's client now sends from ``addr``: answers, pushes and relayed voice go
        there, and its voice is taken from there."""
        old = s.addr
        self.state.sessions.move(s, addr)
        for name in s.joined:
            g = self.state.groups.get(name)
            if g is not None:
                g.targets.clear()
        self.out.emit(SessionMoved(s.user, s.session_id, addr, old))

    def receive_plain(self, data: bytes, addr: Addr, now: float) -> None:
        """A datagram without a session: rate-limited, and answered only by what fits in it."""
        if not self._limiter_for(addr).allow(addr[:2], now):
            self.out.drop(addr, "rate limit for datagrams without a session")
            return
        try:
            msg = decode_message(data)
        except ProtocolError as exc:  # reasons are "kind: detail", the kind from a fixed set
            self.out.drop(addr, f"malformed datagram: {exc}")
            return
        self._req_len = len(data)
        if isinstance(msg, (m.Hello, m.Login)):
            if isinstance(msg, m.Hello) and len(data) < limits.MIN_HELLO_SIZE:
                self.out.drop(addr, f"unpadded hello: {len(data)} bytes")
                return
            cached = self.out.cache.get((addr, msg.txn), now)
            if cached is not None:
                if limits.answer_fits(data, cached):
                    self.out.datagrams.append((cached, addr))
                return
            try:
                if isinstance(msg, m.Hello):
                    self._on_hello(msg, addr, now)
                else:
                    self._on_login(msg, addr, now)
            except ProtocolError as exc:
                self.out.drop(addr, f"refused login: {exc}")
        elif isinstance(msg, SESSION_MESSAGES):
            # session traffic is sealed: a plain one is a forgery or a client from before a
            # restart; it learns to log in again, if the answer fits
            self._reply_plain(addr, msg.txn, m.Error(msg.txn, m.ErrorCode.NO_SESSION,
                                                     NO_SESSION_TEXT), now, cache=False)
            self.out.drop(addr, f"plain {type(msg).__name__}: session messages are sealed")
        else:
            self.out.drop(addr, f"unexpected plain {type(msg).__name__} from a client")

    def _reply_plain(self, addr: Addr, txn: int, msg: m.Message, now: float,
                     cache: bool = True) -> None:
        """Answer a datagram that carries no session: only if no larger than it (no
        amplification: a spoofed source gains nothing by reflecting off the server)."""
        data = encode_message(msg)
        if not limits.answer_fits(self._req_len, data):
            self.out.drop(addr, f"no answer: {type(msg).__name__} larger than its request")
            return
        if cache:
            self.out.cache.put((addr, txn), data, now)
        self.out.datagrams.append((data, addr))

    def announce_restart(self, addrs: Sequence[Addr], now: float, spread: float = 0.0,
                         repeat: bool = False) -> int:
        """A (re)started server tells the clients of its last run (their addresses, from the
        store) that their sessions are gone: the NO_SESSION a heartbeat would have drawn, sent
        at once, so they log in again now instead of at their next heartbeat or after their
        re-login back-off: a :class:`~ptt.protocol.messages.SessionGone` carrying a server
        nonce for that address (:func:`~ptt.protocol.auth.invite_nonce`), which the client's
        Login answers without a Hello first; ``spread``: over how many seconds they should
        spread their logins (a cluster survivor's share of a dead node's clients; 0: the
        client's own window). 21-25 bytes to each address once, addresses that logged in for
        real (nobody can add one without a login); returns how many were queued.

        Presence batches wait for the end of that window (``ServerState.presence_after``):
        the clients arrive through it in their groups, and each would get a batch per
        ``PRESENCE_INTERVAL`` of the window for the members that came after its Joined; at the
        end one batch carries all of them (none to the last of a group to arrive: its Joined
        showed it all). A ``repeat`` of a notice (to the few not back) does not hold them
        again."""
        told = addrs[:MAX_ANNOUNCE]
        if told and not repeat:
            self.state.presence_after = max(self.state.presence_after, now + move_window(spread))
        secret, stamp = self._nonce_secret, int(now)
        spread_ms = max(0, int(spread * 1000))
        out = self.out.datagrams
        for addr in told:  # they come back first, whatever floods the server meanwhile
            self._known_hosts[addr[0]] = None
            nonce = auth.invite_nonce(secret, _peer(addr), stamp)
            out.append((encode_message(m.SessionGone(nonce, spread_ms)), addr))
        return len(told)

    # --- login --------------------------------------------------------------------------------

    def known_host(self, addr: Addr) -> bool:
        """Has a session come from this host lately (the last ``KNOWN_HOSTS_MAX`` hosts to log
        in)? The adapter's reader handles such hosts' logins before other plain datagrams."""
        return addr[0] in self._known_hosts

    def patient_login(self, data: bytes) -> bool:
        """Is plain datagram ``data`` a Login answering a notice (an invite nonce)? Its
        client waits for this node past ``LOGIN_TRY`` (up to twice that: the node that told it
        lives, and its backlog is the window it asked for; ``ptt.protocol.client``), so the
        adapter's reader serves it late rather than drop it. Parsed only for a datagram that
        waited ``LOGIN_TRY`` already; its nonce is checked when it is handled."""
        try:
            msg = decode_message(data)
        except ProtocolError:
            return False
        return isinstance(msg, m.Login) and auth.is_invite(msg.server_nonce or b"\0")

    def plain_budget(self, addr: Addr, now: float) -> bool:
        """May a plain datagram from ``addr`` still pass the aggregate rate limit now? Charges
        nothing; the adapter's reader drops at once, unparsed, what would be refused anyway."""
        return self._limiter_for(addr).has_budget(now, addr[0])

    def _limiter_for(self, addr: Addr) -> limits.RateLimiter:
        return self._known_limiter if addr[0] in self._known_hosts else self._limiter

    def set_secret(self, secret: bytes) -> None:
        """The server's long-term secret (kept in its database): decoy salts and verifiers of
        unknown names derive from it, so they stay the same across restarts as real ones do;
        so do the server nonces (:meth:`bind_nonces`)."""
        if len(secret) < 32:
            raise ValueError("the server secret has at least 32 bytes")
        self._secret = bytes(secret)
        self._nonce_secret = _nonce_key(self._secret, self._nonce_label)

    def bind_nonces(self, label: str) -> None:
        """Bind the server nonces this server makes (Challenges, notices) to ``label``, a
        cluster node's id: nodes that share a secret (copies of one database) then never take
        each other's nonces, so a Login captured at one node cannot open a session at another
        (it would end the device's real session there, one session per device)."""
        self._nonce_label = label
        self._nonce_secret = _nonce_key(self._secret, label)

    def _on_hello(self, msg: m.Hello, addr: Addr, now: float) -> None:
        if len(msg.client_nonce) != auth.NONCE_SIZE:
            self.out.drop(addr, "hello with a short nonce")
            return
        # the same steps for every name, known or not, so neither answer nor timing tells
        decoy = auth.decoy_salt(self._secret, msg.user)
        user = self.state.users.get(msg.user)
        if user is not None:
            salt, iterations = user.salt, user.iterations
        else:
            salt, iterations = decoy, auth.DEFAULT_ITERATIONS
        # stateless: the Login brings the nonce back and it is recomputed, so a flood of Hellos
        # costs an HMAC each and no table
        server_nonce = auth.challenge_nonce(self._nonce_secret, _peer(addr), msg.client_nonce,
                                            msg.user, int(now))
        # not cached: a resent Hello is answered anew as cheaply, and a flood fills no cache
        self._reply_plain(addr, msg.txn, m.Challenge(msg.txn, server_nonce, salt, iterations), now,
                          cache=False)

    def _on_login(self, msg: m.Login, addr: Addr, now: float) -> None:
        failed = m.Error(msg.txn, m.ErrorCode.AUTH_FAILED, "login failed: wrong user or token")
        sn = msg.server_nonce
        age = auth.nonce_age(sn, int(now))
        fresh = (len(sn) == auth.NONCE_SIZE and len(msg.client_nonce) == auth.NONCE_SIZE
                 and age <= auth.LOGIN_TTL and sn not in self._used_nonces)
        if not fresh or not self._our_nonce(sn, msg, addr):
            # not our nonce for this address (or spent): nobody's guess, nothing counted; not
            # cached either (a resend draws the same answer as cheaply, a flood fills no cache)
            self._reply_plain(addr, msg.txn, failed, now, cache=False)
            return
        host = addr[0]
        wait = self._login_limits.wait(msg.user, host, now)
        if wait > 0:
            self._reply_plain(addr, msg.txn, m.Error(
                msg.txn, m.ErrorCode.AUTH_FAILED,
                f"login failed: too many failed logins, retry in {math.ceil(wait)} s"), now)
            self.out.drop(addr, "login back-off after failed logins")
            return
        # the same steps for every name: a decoy verifier for a name nobody has
        decoy = auth.decoy_verifier(self._secret, msg.user)
        user = self.state.users.get(msg.user)
        verifier = user.verifier if user is not None else decoy
        ok = auth.verify_proof(verifier, msg.client_nonce, sn, msg.user, msg.proof)
        if not ok or user is None:
            self._login_limits.failed(msg.user, host, now)
            self._reply_plain(addr, msg.txn, failed, now)
            return
        if not self._used_nonces.add(sn, now):  # a login storm beyond any real fleet
            self._reply_plain(addr, msg.txn, failed, now)
            return
        self._login_limits.succeeded(user.name, host)
        known = self._known_hosts
        known.pop(host, None)
        known[host] = None
        if len(known) > KNOWN_HOSTS_MAX:
            del known[next(iter(known))]
        again = self.state.sessions.on_device(user.name, msg.device)
        for old in {again, self.state.sessions.by_addr.get(addr)}:
            if old is not None:  # the same device's connection logging in again lives on
                self.directory.end_session(old, "replaced", now,
                                           moved=old is again and bool(msg.device))
        devices = self.state.sessions.devices(user.name)
        limit = self.state.config.max_devices
        for old in devices[:max(0, len(devices) + 1 - limit)]:
            self._close_session(old, too_many_devices(user.name, limit), now)
        sid = self._new_session_id()
        key = auth.session_key(user.verifier, msg.client_nonce, sn)
        s = Session(sid, user.name, user.role, addr, now, key,
                    channel=SecureChannel(Role.SERVER, key, user.name, sid),
                    voice_key=voice_mac_key(key), device=msg.device)
        self.state.sessions.add(s)
        self._limiter.forget(addr[:2])  # its traffic is sealed now and charged to the session
        self._known_limiter.forget(addr[:2])
        self.out.emit(SessionStarted(user.name, sid, addr))
        if self.state.home is not None:  # a cluster: the device's session elsewhere ends too
            self.state.home.logged_in(user.name, msg.device, now)
        groups = sorted(self.state.member_of.get(user.name, ()))
        home = self.state.home.placement(groups) if self.state.home is not None else ""
        # the groups the Login asked to join, answered as their Joins would be: in the
        # Welcome while they fit (one datagram for the one the client sent), the rest after it
        # (cached under their txns, so a Join the client resends is answered again, not redone)
        out = self.out.datagrams
        first = len(out)  # the Welcome goes before what the joins sent (presence news)
        folded: list[bytes] = []
        after: list[tuple[int, m.Joined | m.Error]] = []
        room = m.WELCOME_JOINED_BYTES
        txn = msg.txn
        for group in msg.joins[:MAX_LOGIN_JOINS]:
            txn = m.next_txn(txn)
            answer = self.directory.join(s, m.Join(txn, sid, group), now)
            data = encode_message(answer) if isinstance(answer, m.Joined) else b""
            if data and len(data) <= room:
                folded.append(data)
                room -= len(data)
            else:
                after.append((txn, answer))
        config = self.state.config
        welcome = m.Welcome(
            msg.txn, sid, user.role, int(config.heartbeat * 1000),
            int(config.session_timeout * 1000), groups, int(config.idle_heartbeat * 1000),
            list(self.state.access), home, folded)
        # sealed: a Welcome that opens proves to the client that this server holds its verifier
        self.out.answer(s, msg.txn, welcome, now)
        sent = out.pop()
        out.insert(first, sent)
        # the Login's resend (the Welcome was lost) is plain: answer it from the cache too, but
        # like any plain datagram only if the Welcome fits in it (else it logs in afresh); one
        # with joins folded in does not fit, so the resend gets the Welcome without them, and
        # the client asks for its joins' answers again (each answered as a Join). That Welcome
        # is made only if a resend asks for it: else it was an encoding and a seal a login
        if folded:
            bare = dataclasses.replace(welcome, joined=[])
            seal = self.out.seal
            self.out.cache.put((addr, msg.txn), lambda: seal(s, encode_message(bare)), now)
        else:
            self.out.cache.put((addr, msg.txn), sent[0], now)
        for jtxn, answer in after:
            self.out.answer(s, jtxn, answer, now)
        if folded or after:
            self.directory.joined_pages(s, now)
        self.directory.ring_waiting_calls(s, now)

    def _our_nonce(self, sn: bytes, msg: m.Login, addr: Addr) -> bool:
        """Did this server make ``sn`` for this address: a Challenge's (for this Login's
        client nonce and user), or a notice's (``announce_restart``)? The nonce says which: one
        HMAC, not both."""
        peer, stamp = _peer(addr), auth.challenge_stamp(sn)
        made = (auth.invite_nonce(self._nonce_secret, peer, stamp) if auth.is_invite(sn)
                else auth.challenge_nonce(self._nonce_secret, peer, msg.client_nonce, msg.user,
                                          stamp))
        return hmac.compare_digest(sn, made)

    def handle_timer(self, now: float) -> None:
        """Resend the pushes not yet acknowledged, sealed anew; a session that never
        acknowledged one is given up (a closed one is forgotten)."""
        resend, expired = self.out.reliable.handle_timer(now)
        sessions = self.state.sessions
        for plain, dest in resend:  # sealed anew: the client's window took the first copy
            if isinstance(dest, Session) and dest in (sessions.by_id.get(dest.session_id),
                                                      self._closed_unacked.get(dest.session_id)):
                self.out.datagrams.append((self.out.seal(dest, plain), dest.addr))
        for e in expired:
            sid = e.key[0]
            if self._closed_unacked.pop(sid, None) is not None:
                continue  # its SessionClosed, never acknowledged: nothing more to end
            gone = sessions.by_id.get(sid)
            if gone is not None:
                log.info("no ack from %s for an acknowledged message; ending its session",
                         gone.user)
                self.directory.end_session(gone, "expired", now)

    def _close_session(self, s: Session, reason: str, now: float) -> None:
        """End ``s`` and tell its client why, sealed and resent until acknowledged (the client
        must not go on believing it is online, nor log in again and end another device in
        turn)."""
        self.directory.end_session(s, "too many devices", now)  # forgets what was pending for it
        self._closed_unacked[s.session_id] = s
        self.out.send_reliable(s, lambda txn: m.SessionClosed(reason, txn), now)

    def _closed_ack(self, s: Session, data: bytes, addr: Addr) -> None:
        """A datagram from a session ended by SessionClosed: only its Ack is taken."""
        assert s.channel is not None
        try:
            msg = decode_message(s.channel.open(data))
        except PttError as exc:
            self.out.drop(addr, f"sealed datagram refused: {exc}")
            return
        if isinstance(msg, m.Ack) and self.out.reliable.ack((s.session_id, msg.txn)):
            del self._closed_unacked[s.session_id]
        else:
            self.out.drop(addr, "sealed datagram for a closed session")

    def _new_session_id(self) -> int:
        while True:
            sid = int.from_bytes(self.state.entropy(4), "big")
            if sid and sid not in self.state.sessions.by_id:
                return sid


def _nonce_key(secret: bytes, label: str) -> bytes:
    """The key of the server nonces: the secret itself, or bound to a cluster node's id."""
    if not label:
        return secret
    return hmac.digest(secret, b"ptt-node-nonces\0" + label.encode("utf-8"), "sha256")


def _peer(addr: Addr) -> bytes:
    """The address a Challenge is bound to, as bytes."""
    return f"{addr[0]}|{addr[1]}".encode()
