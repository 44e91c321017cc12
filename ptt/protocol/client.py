"""The client's protocol core: login, heartbeats, groups and the participant floor state machine.

Sans-I/O like the server core::

    core.connect(now)                      # then core.join("volunteers", now), ...
    core.receive_datagram(data, now)       # every datagram from the server
    core.handle_timer(now)                 # when now >= core.get_timer()
    core.datagrams_to_send() -> [bytes]    # to the server
    core.events() -> [ClientEvent]         # what the UI and the media path react to

Per group the participant is in one :class:`Participation` state (MCPTT's floor participant
states); every move between them is in :data:`ptt.protocol.participant.TRANSITIONS`, which
:meth:`ClientCore._move` consults.

Security. Only the login travels in the clear: a Hello padded so the server's Challenge is never
larger, the Challenge, the Login and the ``Error`` answers to them. The client derives the session
key when it answers the Challenge and builds its :class:`~ptt.crypto.channel.SecureChannel`
before sending the Login; it accepts only a *sealed* Welcome (one that opens proves the server
holds the user's verifier), then seals every request, heartbeat and Ack, and drops every
datagram that does not open (forged, altered, replayed). Plain, it accepts only a Challenge,
``Error(AUTH_FAILED | NO_SESSION)`` and ``SessionGone``, whose forgery can do no more than make it
log in again. A ``SessionGone`` (a restarted server's or a surviving cluster node's notice)
carries a server nonce: the next Login to that server answers it without a Hello, and a Login
carries the groups to join (their answers follow the Welcome), so a client told to log in again
sends one datagram; a nonce refused sends it back to the usual Hello.

Heartbeats follow :class:`ptt.protocol.keepalive.Cadence` (the server's numbers, from the
Welcome): every ``busy`` seconds while a joined group has a talker or this client asks for or holds
a floor, every ``idle`` seconds otherwise; the client tightens the moment it learns its group is
busy. The connection heals itself: a heartbeat unanswered for ``busy_timeout - busy`` (and the
server silent for ``busy_timeout``) starts a new login, and every group that was joined is joined
again. A plain ``Error(NO_SESSION)`` (a restarted
server; but anyone can send one from the server's address) is only a hint: the client checks its
session with a sealed heartbeat and logs in again only if no sealed answer comes within
``CHECK_WINDOW``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from functools import partial

from ptt.crypto.channel import SEALED_MAGICS, Role, SecureChannel, is_keepalive
from ptt.errors import ProtocolError, PttError
from ptt.names import parse_hostport
from ptt.protocol import auth, limits
from ptt.protocol import messages as m
from ptt.protocol.client_events import (
    AdminResult,
    CallOpened,
    ClientEvent,
    Connected,
    ConnState,
    DeliveryReported,
    Disconnected,
    FloorStateChanged,
    GroupGone,
    GroupJoined,
    GroupLeft,
    GroupView,
    IncomingCall,
    KeyGrantReceived,
    LinkReported,
    LoginFailed,
    PageAccepted,
    PageReceived,
    PageReported,
    Participation,
    PresenceChanged,
    RequestFailed,
    TalkerChanged,
)
from ptt.protocol.floor import FloorConfig
from ptt.protocol.keepalive import Cadence
from ptt.protocol.messages import decode_message, encode_message
from ptt.protocol.participant import FloorInput, next_state
from ptt.protocol.server_list import LOGIN_TRY, MOVE_JITTER, ServerList, move_window
from ptt.protocol.transactions import RETRY_TOTAL, Retransmitter, SeenSet
from ptt.wire.voice import is_voice, voice_mac_key

# why a session was lost (FloorStateChanged.reason with RevokeCause.SESSION_LOST)
LOST_FORGOTTEN = "the server no longer knew it (restarted, or this user logged in elsewhere)"
LOST_SILENT = "no answer from the server for {timeout:g} s (heartbeat timeout)"
LOST_NODE = "another server of the list said this one died, and it did not answer"
RELOGIN_FIRST = 0.2
RELOGIN_CAP = 2.0
# s: a steer (ServerList.steer) due while a joined group's floor is in use looks again this
# much later: a burst lasts seconds
STEER_RETRY = 1.0
# a plain NO_SESSION is unauthenticated (anyone can send one from the server's address): a
# connected client checks its session with sealed heartbeats and logs in again only when no
# sealed answer came within CHECK_WINDOW; the second heartbeat covers one lost datagram
CHECK_WINDOW = 0.3
CHECK_RESEND = 0.15
# s: a Hello or Login unanswered is sent again after LOGIN_RETRY[0], the interval doubling up to
# LOGIN_RETRY[1], not at the requests' 0.1-0.2 s: thousands of clients logging in at once to a
# busy server (a survivor taking a dead node's clients, a restarted server) would each resend
# 5 copies a second while they wait, and the server would spend its time reading copies (a
# 3,400-client move at a profiled survivor: 60,470 datagrams read for 3,756 logins handled)
LOGIN_RETRY = (0.25, 1.0)
# s: a client that lost its session while it held a floor, and logs in again within T1 of that
# (the server may still hold the floor for it, and grants the device logging in again its burst
# again), sends that Hello or Login again every LOGIN_RETRY[0], not backing off: the back-off
# would carry it past T1 (copies at +0.25, +0.75, +1.75 s), and the floor would go to the
# queue. At most one such client a group, each for one login's retries
TALKER_BACK_WITHIN = FloorConfig().silence
# s: a server's notice that the session is gone carries a nonce for the next Login to it
# (``SessionGone.nonce``, ptt.protocol.auth.invite_nonce); the server takes it up to LOGIN_TTL
# (10 s, by its own clock in whole seconds) after it sent it, and a client uses it this long
INVITE_USE = auth.LOGIN_TTL - 2.0
BURST_SPACE = 1 << 32

__all__ = [  # events and states live in client_events and participant; import them here
    "BURST_SPACE", "LOST_FORGOTTEN", "LOST_NODE", "LOST_SILENT", "RELOGIN_CAP", "RELOGIN_FIRST", "AdminResult",
    "CallOpened", "ClientCore", "ClientEvent", "ConnState", "Connected", "DeliveryReported",
    "Disconnected", "FloorStateChanged", "GroupJoined", "GroupGone", "GroupLeft", "GroupView",
    "IncomingCall", "KeyGrantReceived", "LinkReported", "LoginFailed", "PageAccepted",
    "PageReceived", "PageReported", "Participation",
    "PresenceChanged", "RequestFailed", "TalkerChanged", "newer",
]


def _PLAIN_OK(msg: m.Message) -> bool:
    """What the client takes in the clear: the login's Challenge and the errors that send it
    back to logging in. Everything else (the Welcome first) must come sealed."""
    return isinstance(msg, (m.Challenge, m.SessionGone)) or (
        isinstance(msg, m.Error) and msg.code in (m.ErrorCode.AUTH_FAILED, m.ErrorCode.NO_SESSION))


def newer(a: int, b: int) -> bool:
    """Serial-number comparison (RFC 1982) of 32-bit burst ids: is ``a`` after ``b``?"""
    return a != b and ((a - b) % BURST_SPACE) < BURST_SPACE // 2


class ClientCore:
    """One user's connection to the server: ``ClientCore(user, token, entropy)``; see the module
    docstring."""

    def __init__(self, user: str, token: str, entropy: Callable[[int], bytes],
                 device: str = "", servers: Sequence[Hashable] = ()) -> None:
        """``device``: this client's device id, the same for every login it makes (a user may
        be online from several devices; a login from one device replaces only its own).
        ``servers``: with two or more, a cluster's access nodes (``ptt.protocol.server_list``):
        :attr:`server` is the one to talk to now, and the session moves to another when its
        node is lost; with fewer, the adapter's one server, logged in to again as it is."""
        self.user = user
        self.device = device
        self._token = token
        self._entropy = entropy
        self.conn = ConnState.DISCONNECTED
        self.session_id = 0
        self.role = m.Role.VOLUNTEER
        self.groups: dict[str, GroupView] = {}
        self.cadence = Cadence()  # the server's, from its Welcome
        self._out: list[bytes] = []
        self._events: list[ClientEvent] = []
        self._rt: Retransmitter[int] = Retransmitter()
        self._pending: dict[int, tuple[str, str]] = {}  # txn -> (what, group)
        self._txn = int.from_bytes(entropy(2), "big")
        self._seen: SeenSet[int] = SeenSet()
        self._client_nonce = b""
        self._next_heartbeat: float | None = None
        self._last_heard = 0.0
        self._last_sent = 0.0  # the last heartbeat
        self._unanswered: float | None = None  # the first heartbeat not answered yet
        self._relogin_at: float | None = None
        self._check_until: float | None = None  # checking the session after a plain NO_SESSION
        self._check_resend: float | None = None
        self._voice_check_at: float | None = None  # the last heartbeat stale voice asked for
        self._relogin_backoff = RELOGIN_FIRST
        self._talker_lost_at: float | None = None  # lost its session while it held a floor
        self._verifier_cache: tuple[bytes, int, bytes] | None = None
        self._channel: SecureChannel | None = None
        self.voice_key = b""  # the MAC key of the voice we send (ptt.wire.voice.add_mac)
        self.dropped = 0  # datagrams refused: did not open, or plain where sealed is required
        self.page_device = ""  # set by subscribe_pages: this client shows pages
        self._pages_seen: set[int] = set()  # page ids shown on this connection
        self.servers: ServerList[Hashable] | None = (
            ServerList(servers, entropy(32)) if servers else None)
        self._login_until: float | None = None  # a list's login to one server ends then
        self._hinted_elsewhere = False  # the session check was asked for by another node
        # a Welcome's Welcome.home the server list chose to move to (ServerList.steer): when,
        # and where; the move waits for an idle floor
        self._steer: tuple[float, Hashable] | None = None
        self._steering_to: Hashable | None = None  # said goodbye: the next login goes there
        self._hinted_at = 0.0  # when that node's notice came (the move's jitter runs from it)
        self._hinted_by: Hashable | None = None  # and which node it was (the move goes there)
        self._hinted_spread = MOVE_JITTER  # and the window it asked our login to fall in
        self._moving = False  # the relogin waiting is a move's jitter (a notice cuts it not)
        # a notice's nonce for a Login without a Hello (SessionGone): (server, nonce, when)
        self._invite: tuple[Hashable | None, bytes, float] | None = None
        self._invited = False  # the login under way answers an invitation (no Challenge)
        self._login_joins: tuple[int, list[str]] = (0, [])  # the Login's txn and its joins
        self._early: list[m.Message] = []  # their answers that came before the Welcome

    @property
    def server(self) -> Hashable | None:
        """The server to send to now (None: no list, the adapter's only one)."""
        return None if self.servers is None else self.servers.current

    @property
    def roaming(self) -> bool:
        """Does the session move among two or more servers (configured, or a cluster's access
        nodes told in the Welcome) when its node is lost?"""
        return self.servers is not None and len(self.servers) > 1

    @property
    def heartbeat(self) -> float:
        """Seconds between heartbeats on the busy cadence (the server's heartbeat_interval)."""
        return self.cadence.busy

    @property
    def session_timeout(self) -> float:
        """Seconds of silence after which a busy session is given up."""
        return self.cadence.busy_timeout

    def busy(self) -> bool:
        """On the busy cadence: a joined group has a talker, or we ask for or hold a floor."""
        return any(g.talker is not None or g.participation is not Participation.NO_PERMISSION
                   for g in self.groups.values())

    def _talking(self) -> bool:
        return any(g.participation is Participation.HAS_PERMISSION for g in self.groups.values())

    def heartbeat_interval(self) -> float:
        """Seconds from an answered heartbeat to the next, on the cadence we are on now."""
        return self.cadence.interval(self.busy(), self._talking())

    @property
    def token(self) -> str:
        """The user's secret token (the client derives its identity from it; never sent)."""
        return self._token

    # --- outputs ------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[ClientEvent]:
        ev, self._events = self._events, []
        return ev

    def get_timer(self) -> float | None:
        ts = [t for t in (self._rt.get_timer(), self._next_heartbeat, self._relogin_at,
                          self._check_until, self._check_resend, self._login_until,
                          self._steer[0] if self._steer is not None else None)
              if t is not None]
        if self.conn is ConnState.CONNECTED:
            if self._unanswered is not None:
                ts.append(self.cadence.given_up_at(self._last_heard, self._unanswered))
        else:
            ts.extend(g.asked[1] + RETRY_TOTAL for g in self.groups.values() if g.asked)
        return min(ts) if ts else None

    # --- API ----------------------------------------------------------------------------------

    def connect(self, now: float) -> None:
        """Start logging in (again): with a Hello, or, when the server's notice that our
        session was gone brought a nonce (and the verifier is known from an earlier login),
        with the Login at once."""
        self.conn = ConnState.LOGGING_IN
        self.session_id = 0
        self._relogin_at = None
        self._next_heartbeat = None
        self._check_until = self._check_resend = None
        self._client_nonce = self._entropy(16)
        self._channel = None
        self._early = []
        self._moving = False
        if self.roaming:
            self._login_until = now + LOGIN_TRY
        invite, self._invite = self._invite, None
        self._invited = (invite is not None and invite[0] == self.server
                         and now - invite[2] <= INVITE_USE and self._verifier_cache is not None)
        if self._invited:
            assert invite is not None and self._verifier_cache is not None
            if self._login_until is not None:
                # the node that told us lives (it just said so), and its share of a dead
                # node's clients logs in within the window it asked for: its backlog may
                # answer past LOGIN_TRY, and beginning again elsewhere (a Hello, at the back
                # of another node's backlog) costs a second login (bench_access_failover at
                # 5,000 clients: hundreds to thousands of clients a run at LOGIN_TRY alone)
                self._login_until += min(self._hinted_spread, LOGIN_TRY)
            self._send_login(self._verifier_cache[2], invite[1], now)
            return
        self._request("hello", "", self._hello, now)

    def _back_now(self) -> bool:
        """A notice came from the server we wait to log in to again: log in now? Yes while we
        back off from it (it was down, and says it is back); no while a move's jitter runs (a
        survivor repeats its notice to the clients not back yet: logging in at once would
        bring all of them at that moment instead of spread over the window)."""
        return (self.conn is ConnState.DISCONNECTED and self._relogin_at is not None
                and not self._moving)

    def _invited_by(self, source: Hashable | None, msg: m.SessionGone, now: float) -> None:
        """A notice that our session is gone: keep its nonce for a Login to ``source``."""
        if len(msg.nonce) == auth.NONCE_SIZE:
            self._invite = (source, msg.nonce, now)

    def _hello(self, txn: int) -> m.Hello:
        """A Hello padded to MIN_HELLO_SIZE, so the Challenge it draws is never larger."""
        bare = m.Hello(txn, self.user, self._client_nonce)
        return m.Hello(txn, self.user, self._client_nonce,
                       bytes(limits.padding_needed(len(encode_message(bare)))))

    def close(self, now: float) -> None:
        """Say goodbye (best effort, not retransmitted) and stop all timers."""
        if self.conn is ConnState.CONNECTED:
            self._txn_next()
            self._emit(encode_message(m.Bye(self._txn, self.session_id)))
        self.conn = ConnState.DISCONNECTED
        self._rt = Retransmitter()
        self._pending.clear()
        self._next_heartbeat = self._relogin_at = self._login_until = None
        self._check_until = self._check_resend = None
        self._steer = self._steering_to = None

    def join(self, group: str, now: float) -> None:
        self.groups.setdefault(group, GroupView(group))
        if self.conn is ConnState.CONNECTED:
            self._request("join", group, lambda t: m.Join(t, self.session_id, group), now)

    def leave(self, group: str, now: float) -> None:
        if self.groups.pop(group, None) is not None and self.conn is ConnState.CONNECTED:
            self._request("leave", group, lambda t: m.Leave(t, self.session_id, group), now)

    def request_floor(
        self, group: str, now: float, priority: m.Priority = m.Priority.NORMAL
    ) -> None:
        g = self._group(group)
        if g.participation in (Participation.HAS_PERMISSION, Participation.PENDING_REQUEST):
            if priority == m.Priority.NORMAL:
                return
        self._move(g, FloorInput.REQUEST)
        g.asked = (priority, now)
        if self.conn is ConnState.CONNECTED:
            self._request("floor", group,
                          lambda t: m.FloorRequest(t, self.session_id, group, priority), now)
            self._tighten(now)
        # else the request is carried over and sent once logged in again (see _on_welcome)

    def release_floor(self, group: str, now: float) -> None:
        g = self._group(group)
        if g.participation is Participation.NO_PERMISSION:
            return
        burst = g.my_burst if g.participation is Participation.HAS_PERMISSION else 0
        self._move(g, FloorInput.RELEASE)
        self._request("release", group,
                      lambda t: m.FloorRelease(t, self.session_id, group, burst), now)

    def send_receipt(self, group: str, burst_id: int, received: int, expected: int,
                     now: float) -> None:
        """Tell the server how much of ``burst_id`` reached this listener (acknowledged)."""
        if self.conn is ConnState.CONNECTED:
            self._request("receipt", group, lambda t: m.BurstReceipt(
                t, self.session_id, group, burst_id, received, expected), now)

    def send_page(self, group: str, to: str, body: bytes, epoch: int, urgent: bool,
                  now: float) -> int:
        """Send a text page to ``group`` (or the user ``to``); the answer is a PageAccepted
        or a RequestFailed ("page") with this txn, then a PageReported."""
        return self._request("page", group or to, lambda t: m.PageSend(
            t, self.session_id, group, to, body, epoch, urgent), now)

    def subscribe_pages(self, device: str, now: float) -> None:
        """This client shows pages: the server pushes those ``device`` has not had (again
        after every new login)."""
        self.page_device = device
        if self.conn is ConnState.CONNECTED:
            self._request("pages", "", lambda t: m.PageSubscribe(t, self.session_id, device),
                          now)

    def page_read(self, page_id: int, now: float) -> None:
        """Page ``page_id`` was shown to the person (its read receipt)."""
        if self.conn is ConnState.CONNECTED:
            self._request("read", "", lambda t: m.PageReceipt(t, self.session_id, page_id), now)

    def call(self, peer: str, now: float) -> None:
        self._request("call", peer, lambda t: m.Call(t, self.session_id, peer), now)

    def admin(self, op: str, args: dict[str, object], now: float) -> int:
        """Send a coordinator command; its answer comes as an AdminResult with this txn."""
        return self._request("admin", "", lambda t: m.Admin(t, self.session_id, op, args), now)  # type: ignore[arg-type]

    def voice_heard(self, group_id: int, burst_id: int, now: float) -> bool:
        """Voice of ``burst_id`` came for a group we joined. If our view shows no such burst,
        every copy of its floor news was lost (or the burst is stale): on the idle cadence the
        next heartbeat, whose answer's floor digest catches the view up, could be ``idle``
        seconds away while the burst plays to everyone else. Ask now, with a heartbeat: at most
        one per ``busy`` interval, so a stream of frames (or of forgeries) costs one a second.
        True when a heartbeat was queued."""
        if self.conn is not ConnState.CONNECTED:
            return False
        if self._voice_check_at is not None and now < self._voice_check_at + self.cadence.busy:
            return False
        for g in self.groups.values():
            if g.state is None or g.state.group_id != group_id:
                continue
            if g.talker is not None and g.talker_burst == burst_id:
                return False  # the burst we know of
            if g.participation is Participation.HAS_PERMISSION:
                return False  # our own burst, looped back or relayed late
            self._voice_check_at = now
            self._send_heartbeat(now)
            return True
        return False

    def report_reception(self, group: str, burst_id: int, frames: int, lost: int, runs: int,
                         late: int = 0) -> None:
        """Tell the server what this client received of ``burst_id`` in ``group`` since its last
        report (loss feedback for the talker). Fire and forget: not retransmitted, since the next
        report, a second later, says more; nothing is sent while not logged in."""
        if self.conn is ConnState.CONNECTED and group in self.groups:
            self._emit(encode_message(m.ReceiverReport(self.session_id, group, burst_id, frames,
                                                       lost, runs, late)))

    def participation(self, group: str) -> Participation:
        g = self.groups.get(group)
        return g.participation if g else Participation.NO_PERMISSION

    def talk_route(self, group: str) -> tuple[int, int, int] | None:
        """(group_id, session_id, burst_id) for voice headers while holding the floor, else None."""
        g = self.groups.get(group)
        if g is None or g.participation is not Participation.HAS_PERMISSION or g.state is None:
            return None
        return g.state.group_id, self.session_id, g.my_burst

    # --- input --------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, now: float, source: Hashable | None = None
                         ) -> None:
        """``source``: the sender, when it may be another server of the list than
        :attr:`server` (None: the current server)."""
        if is_voice(data) or not data:
            return  # the media path handles voice
        if source is not None and self.servers is not None and source != self.servers.current:
            self._from_other_node(data, source, now)
            return
        sealed = data[0] in SEALED_MAGICS
        try:
            if sealed:
                if self._channel is None:
                    raise ProtocolError("sealed datagram before a login")
                msg = decode_message(self._channel.open(data))
                if is_keepalive(data) and not isinstance(msg, m.HeartbeatAck):
                    raise ProtocolError("only heartbeat acks travel marked as keepalives")
            else:
                msg = decode_message(data)
                if not _PLAIN_OK(msg):
                    raise ProtocolError(f"plain {type(msg).__name__}: it must come sealed")
        except PttError:  # forged, altered, replayed, malformed: as if it never came
            self.dropped += 1
            return
        if sealed:  # only a sealed answer proves the server still knows this session
            self._last_heard = now
            self._check_until = self._check_resend = None
            self._hinted_elsewhere = False
        self._handle(msg, now)
        if self._next_heartbeat is not None:
            self._tighten(now)

    def _from_other_node(self, data: bytes, source: Hashable, now: float) -> None:
        """A datagram from a server of the list we are not logged in to: only a plain
        ``SessionGone`` (or ``Error(NO_SESSION)``), a surviving node's notice that our node
        died (``ptt.cluster.node``), means something; its nonce and window serve the move.
        Anyone can send it, so it is a hint: our node is asked with a sealed heartbeat and the
        session moves only if no sealed answer comes within ``CHECK_WINDOW``; a flood of hints
        costs one check."""
        assert self.servers is not None
        try:
            msg = decode_message(data) if self.servers.knows(source) else None
        except PttError:
            msg = None
        if isinstance(msg, m.SessionGone):
            self._invited_by(source, msg, now)
        elif not (isinstance(msg, m.Error) and msg.code == m.ErrorCode.NO_SESSION):
            self.dropped += 1
            return
        if self.conn is ConnState.CONNECTED:
            if not self._hinted_elsewhere and self._check_until is None:
                self._hinted_elsewhere, self._hinted_at, self._hinted_by = True, now, source
                self._hinted_spread = (msg.spread_ms / 1000 if isinstance(msg, m.SessionGone)
                                       and msg.spread_ms else MOVE_JITTER)
            self._check_session(now)

    def handle_timer(self, now: float) -> None:
        if (self._login_until is not None and now >= self._login_until
                and self.conn is ConnState.LOGGING_IN):
            self._login_until = None  # this server does not answer: the next one of the list
            self._rt = Retransmitter()
            self._pending.clear()
            self._schedule_relogin(now, "the server does not answer")
        resend, expired = self._rt.handle_timer(now)
        for data, sealed in resend:  # sealed anew: the server's window took the first copy
            self._emit(data, sealed is True)
        for e in expired:
            what, group = self._pending.pop(e.key, ("", ""))
            self._timed_out(what, group, now, e.key)
        if self.conn is ConnState.CONNECTED:
            if self._unanswered is not None and now >= self.cadence.given_up_at(
                    self._last_heard, self._unanswered):
                self._lost(LOST_SILENT.format(timeout=round(now - self._last_heard, 1)), now)
            elif self._check_until is not None and now >= self._check_until:
                self._lost(LOST_NODE if self._hinted_elsewhere else LOST_FORGOTTEN, now)
            elif self._check_resend is not None and now >= self._check_resend:
                self._check_resend = None
                self._send_heartbeat(now)
            elif self._next_heartbeat is not None and now >= self._next_heartbeat:
                self._send_heartbeat(now)
        if self.conn is not ConnState.CONNECTED:
            for g in self.groups.values():  # requests carried over an outage end with it
                if g.asked is not None and now >= g.asked[1] + RETRY_TOTAL:
                    self._timed_out("floor", g.name, now)
        if self._relogin_at is not None and now >= self._relogin_at:
            if self._steering_to is not None and self.servers is not None:
                self.servers.go(self._steering_to)
            self._steering_to = None
            self.connect(now)
        if self._steer is not None and now >= self._steer[0]:
            self._steer_now(now)

    def _steer_now(self, now: float) -> None:
        """The steer's time came (``ServerList.steer``): say goodbye to this node and log in to
        the one that homes the groups, on the next timer call (the Bye leaves for this node
        first). A floor in use here waits: the move would cut a talker or a page heard."""
        assert self._steer is not None
        if self.conn is not ConnState.CONNECTED:
            self._steer = None  # the session moved or ended meanwhile: that decides instead
            return
        if self.busy():
            self._steer = (now + STEER_RETRY, self._steer[1])
            return
        self._steering_to = self._steer[1]
        self._steer = None
        self._txn_next()
        self._emit(encode_message(m.Bye(self._txn, self.session_id)))
        self.conn = ConnState.DISCONNECTED
        self._rt = Retransmitter()
        self._pending.clear()
        self._next_heartbeat = self._check_until = self._check_resend = None
        self._relogin_at = now

    # --- internals ----------------------------------------------------------------------------

    def _send_heartbeat(self, now: float) -> None:
        self._txn_next()
        self._emit(encode_message(m.Heartbeat(self._txn, self.session_id)), keepalive=True)
        self._last_sent = now
        # the next one is due a busy interval on unless answered before (then the cadence we
        # are on decides, _on_ack). A talker's voice keeps its session on the server, but only
        # answers tell the client so: it asks more often; so does a client whose heartbeat is
        # unanswered (other news does not show that the server hears us). Loss then cannot
        # make the client give up, or the server expire, a session still in use.
        answered = self._unanswered is None
        if answered:
            self._unanswered = now
        self._next_heartbeat = now + (self.cadence.busy if answered and not self._talking()
                                      else self.cadence.retry)

    def _on_ack(self) -> None:
        """The server answered a heartbeat: the next is due at the cadence we are on."""
        self._unanswered = None
        if self._next_heartbeat is not None:
            self._next_heartbeat = self._last_sent + self.heartbeat_interval()

    def _tighten(self, now: float) -> None:
        """Our cadence may have become faster (a group got a talker, we asked for the floor):
        the next heartbeat comes no later than one interval of it from now."""
        due = now + self.heartbeat_interval()
        if self._next_heartbeat is not None and due < self._next_heartbeat:
            self._next_heartbeat = due

    def _check_session(self, now: float) -> None:
        """A plain NO_SESSION came (a restarted server, or anyone at all): ask the server with
        a sealed heartbeat; ``handle_timer`` logs in again if no sealed answer came in time."""
        if self._check_until is not None:
            return  # already checking: a flood of hints costs one check
        self._check_until = now + CHECK_WINDOW
        self._check_resend = now + CHECK_RESEND
        self._send_heartbeat(now)

    def _txn_next(self) -> int:
        self._txn = m.next_txn(self._txn)
        return self._txn

    def _request(self, what: str, group: str, make: Callable[[int], m.Message], now: float) -> int:
        txn = self._txn_next()
        data = encode_message(make(txn))
        sealed = what not in ("hello", "login")
        self._pending[txn] = (what, group)
        # the plaintext: each resend is sealed anew
        talker = (self._talker_lost_at is not None
                  and now - self._talker_lost_at < TALKER_BACK_WITHIN)
        schedule = (LOGIN_RETRY[0], LOGIN_RETRY[0]) if talker else LOGIN_RETRY
        self._rt.add(txn, data, sealed, now, None if sealed else schedule)
        self._emit(data, sealed)
        return txn

    def _track(self, what: str, group: str, txn: int, make: Callable[[int], m.Message],
               now: float) -> None:
        """A request the server has already been asked (with the Login): wait for its answer
        as if it had been sent now, and send it for real only if none comes in time."""
        self._pending[txn] = (what, group)
        self._rt.add(txn, encode_message(make(txn)), True, now)

    def _emit(self, plain: bytes, sealed: bool = True, keepalive: bool = False) -> None:
        """Queue one datagram: sealed, unless it is part of the login; a Heartbeat is sealed
        marked as a keepalive (the server answers other requests before those)."""
        if not sealed:
            self._out.append(plain)
        elif self._channel is not None and self._channel.session_id is not None:
            self._out.append(self._channel.seal(plain, keepalive))
        # else no session yet: a request made while logging in waits for its resend or
        # for the re-join/re-request that follows the Welcome

    def _group(self, group: str) -> GroupView:
        g = self.groups.get(group)
        if g is None:
            g = self.groups[group] = GroupView(group)
        return g

    def _move(self, g: GroupView, event: FloorInput, **detail: object) -> None:
        """Move ``g``'s participant by the table (FloorError for a move it does not have),
        and report the new state."""
        g.participation = state = next_state(g.participation, event)
        if state is not Participation.PENDING_REQUEST:
            g.asked = None
        if state is not Participation.QUEUED:
            g.position = 0
        self._events.append(FloorStateChanged(g.name, state, burst_id=g.my_burst,
                                              position=g.position, **detail))  # type: ignore[arg-type]

    def _answered(self, txn: int) -> tuple[str, str] | None:
        self._rt.ack(txn)
        return self._pending.pop(txn, None)

    def _handle(self, msg: m.Message, now: float) -> None:  # noqa: C901 - a dispatch table
        if isinstance(msg, m.Challenge):
            if self._answered(msg.txn) is not None:
                self._on_challenge(msg, now)
        elif isinstance(msg, m.Welcome):
            if self._answered(msg.txn) is not None:
                self._on_welcome(msg, now)
        elif isinstance(msg, m.HeartbeatAck):
            self._on_ack()
            self._check_digest(msg.digest, now)
        elif isinstance(msg, m.SessionClosed):
            if msg.txn:  # every copy: the server resends until one Ack gets through
                self._emit(encode_message(m.Ack(msg.txn, self.session_id)))
            if self.conn is ConnState.CONNECTED:
                self.conn = ConnState.DISCONNECTED  # no Bye: the session is gone
                self.close(now)  # and no new login
                self._events.append(Disconnected(msg.reason, final=True))
        elif isinstance(msg, m.PathCheck):
            if self.conn is ConnState.CONNECTED:
                self._send_heartbeat(now)  # from our new address, if a NAT moved us
        elif isinstance(msg, m.Ack):
            self._answered(msg.txn)
        elif isinstance(msg, m.SessionGone):  # a hint, as a NO_SESSION is, with a nonce
            self._invited_by(self.server, msg, now)
            if self.conn is ConnState.CONNECTED:
                self._check_session(now)
            elif self._back_now():
                self.connect(now)  # a restarted server's announcement: it is back, log in now
        elif isinstance(msg, m.Error):
            if msg.code == m.ErrorCode.NO_SESSION and self.conn is ConnState.CONNECTED:
                self._check_session(now)  # a hint, not an answer: the request stays pending
                return
            ctx = self._answered(msg.txn)
            if msg.code == m.ErrorCode.NO_SESSION and self._back_now():
                self.connect(now)  # a restarted server's announcement: it is back, log in now
            elif ctx is not None:
                self._on_error(msg, ctx, now)
        elif isinstance(msg, m.Joined):
            if self.conn is ConnState.LOGGING_IN and self._login_joins[1]:
                self._early.append(msg)  # a join the Login carried, overtaking the Welcome
                return
            ctx = self._answered(msg.txn)
            if ctx is not None and ctx[0] == "sync":
                self._on_sync(msg.state)
            elif ctx is not None:
                self._on_joined(msg.state)
                if msg.grant:
                    self._events.append(KeyGrantReceived(msg.state.group, msg.state.key_epoch,
                                                         msg.grant))
        elif isinstance(msg, m.Left):
            if self._answered(msg.txn) is not None:
                self._events.append(GroupLeft(msg.group))
        elif isinstance(msg, m.FloorResponse):
            if self._answered(msg.txn) is not None:
                self._on_floor_response(msg, now)
        elif isinstance(msg, m.FloorReleased):
            ctx = self._answered(msg.txn)
            g = self.groups.get(msg.group)
            if ctx is not None and g and g.participation is Participation.PENDING_RELEASE:
                self._move(g, FloorInput.RELEASED)
        elif isinstance(msg, m.CallResponse):
            ctx = self._answered(msg.txn)
            if ctx is not None:
                self._events.append(CallOpened(msg.group, ctx[1]))
                self.join(msg.group, now)
        elif isinstance(msg, m.AdminResponse):
            if self._answered(msg.txn) is not None:
                self._events.append(AdminResult(msg.txn, dict(msg.result), None))
        elif isinstance(msg, m.PageAccepted):
            if self._answered(msg.txn) is not None:
                self._events.append(PageAccepted(msg.txn, msg.page_id, msg.recipients,
                                                 msg.online))
        elif isinstance(msg, (m.PagePush, m.PageReport)):
            self._emit(encode_message(m.Ack(msg.txn, self.session_id)))
            if not self._seen.check_and_add(msg.txn):
                return
            if isinstance(msg, m.PageReport):
                self._events.append(PageReported(msg.page_id, msg.group, list(msg.delivered),
                                                 list(msg.pending), list(msg.offline)))
            elif msg.page_id not in self._pages_seen:
                self._pages_seen.add(msg.page_id)
                self._events.append(PageReceived(msg))
        elif isinstance(msg, (m.FloorGranted, m.FloorRevoked, m.IncomingCall, m.KeyGrant,
                              m.GroupGone, m.DeliveryReport)):
            self._emit(encode_message(m.Ack(msg.txn, self.session_id)))
            if self._seen.check_and_add(msg.txn):
                self._on_unsolicited(msg, now)
        elif isinstance(msg, m.FloorTaken):
            if self._fresh(msg.group, msg.version):
                self._on_taken(msg.group, msg.talker, msg.burst_id, msg.priority)
                if msg.version:
                    self._note_queue(msg.group, msg.queue)
        elif isinstance(msg, m.FloorIdle):
            if self._fresh(msg.group, msg.version):
                self._on_idle(msg.group, msg.burst_id)
                self._ask_again(msg.group, now)
                if msg.version:
                    self._note_queue(msg.group, [])
        elif isinstance(msg, m.QueuePosition):
            g = self.groups.get(msg.group)
            if g and g.participation is Participation.QUEUED and msg.position > 0:
                g.position = msg.position
                self._move(g, FloorInput.QUEUE_MOVED)
        elif isinstance(msg, m.LinkReport):
            g = self.groups.get(msg.group)
            if g is not None and g.my_burst == msg.burst_id:
                self._events.append(LinkReported(
                    msg.group, msg.burst_id, msg.listeners, msg.loss / 1000, msg.worst / 1000,
                    msg.run / 10, msg.late / 1000))
        elif isinstance(msg, m.PresenceBatch):
            for change in msg.changes:
                self._on_presence(msg.group, change.user, change.online)
        elif isinstance(msg, m.Presence):
            self._on_presence(msg.group, msg.user, msg.online)

    def _on_presence(self, group: str, user: str, online: bool) -> None:
        """A member's presence as the server sees it; news only when it differs from ours (a
        batch may repeat what the Join answer or an earlier batch already told)."""
        g = self.groups.get(group)
        if g is not None and (user in g.online) != online:
            (g.online.add if online else g.online.discard)(user)
            self._events.append(PresenceChanged(group, user, online))

    def _on_challenge(self, msg: m.Challenge, now: float) -> None:
        key = (msg.salt, msg.iterations)
        if self._verifier_cache is None or self._verifier_cache[:2] != key:
            try:
                verifier = auth.derive_verifier(self._token, msg.salt, msg.iterations)
            except PttError as exc:  # a hostile or broken server's challenge
                self.conn = ConnState.DISCONNECTED
                self._events.append(LoginFailed(f"login refused: {exc}"))
                return
            self._verifier_cache = (msg.salt, msg.iterations, verifier)
        self._send_login(self._verifier_cache[2], msg.server_nonce, now)
        if self._login_until is not None:
            # the server lives (it answered): its Welcome gets a window of its own. A busy
            # node's logins wait in its backlog twice (the Hello, the Login); giving up on it
            # mid-login sent the client to the back of another busy node's backlog, wasting
            # what the first had done (437 of 1,000 moved clients, bench_access_failover)
            self._login_until = now + LOGIN_TRY

    def _send_login(self, verifier: bytes, sn: bytes, now: float) -> None:
        """The Login answering server nonce ``sn`` (a Challenge's, or a notice's), with as many
        of our groups to join as fit in a plain datagram."""
        cn = self._client_nonce
        proof = auth.login_proof(verifier, cn, sn, self.user)
        # ready before the Login leaves: the Welcome comes sealed with this session's key
        sk = auth.session_key(verifier, cn, sn)
        self._channel = SecureChannel(Role.CLIENT, sk, self.user)
        self.voice_key = voice_mac_key(sk)  # every voice datagram we send carries its MAC
        bare = len(encode_message(m.Login(0x7FFFFFFF, self.user, cn, sn, proof, self.device)))
        joins: list[str] = []
        room = limits.MAX_UNAUTH_DATAGRAM - bare - 3  # the list's msgpack header, at most 3
        for name in self.groups:
            room -= len(name.encode("utf-8")) + 3  # and its str header, at most 3
            if room < 0:
                break
            joins.append(name)
        txn = self._request("login", "", lambda t: m.Login(t, self.user, cn, sn, proof,
                                                            self.device, joins), now)
        for _ in joins:  # their answers' txns (messages.join_txn): none of ours may reuse them
            self._txn_next()
        self._login_joins = (txn, joins)

    def _on_welcome(self, msg: m.Welcome, now: float) -> None:
        self.conn = ConnState.CONNECTED
        self.session_id = msg.session_id
        self.role = msg.role
        busy = msg.heartbeat_ms / 1000
        self.cadence = Cadence(busy, msg.session_timeout_ms / 1000,
                               msg.idle_heartbeat_ms / 1000 if msg.idle_heartbeat_ms else busy)
        self._last_heard = self._last_sent = now
        self._unanswered = None
        # a busy interval on (a server that died right after the login, before it recorded
        # where its clients are, tells nobody: this heartbeat finds out), then the cadence we
        # are on. Moved by a node's notice, after the window it gave the logins too: the
        # heartbeat and its ack are two datagrams a moved client, kept out of the survivor's
        # busiest seconds (bench_login_cost)
        first = self.cadence.busy + (move_window(self._hinted_spread) if self._invited else 0.0)
        self._next_heartbeat = now + first
        self._relogin_backoff = RELOGIN_FIRST
        self._login_until = None
        self._talker_lost_at = None
        if self.servers is not None:
            self.servers.connected()
            learned = []
            for text in msg.servers:  # a cluster's access nodes: more servers to move to
                try:
                    learned.append(parse_hostport(text))
                except (ValueError, PttError):
                    continue  # a bad entry costs that node, not the login
            self.servers.add(learned)
            self._steer = None
            if msg.home:
                try:
                    home = parse_hostport(msg.home)
                except (ValueError, PttError):
                    home = None  # a bad hint costs the move, not the login
                at = None if home is None else self.servers.steer(home, now)
                if at is not None:
                    self._steer = (at, home)
        self._events.append(Connected(msg.session_id, msg.role, list(msg.groups)))
        # the groups the Login carried were joined with it: their answers come (or came) with
        # the Welcome, each with its own txn; they are tracked as if sent now, so a lost answer
        # is asked for again by a Join, answered from the server's cache
        login_txn, carried_joins = self._login_joins
        self._login_joins = (0, [])
        joined_with = {name: m.join_txn(login_txn, k) for k, name in enumerate(carried_joins)}
        for name in carried_joins:
            if name not in self.groups:  # left meanwhile
                self._request("leave", name, partial(m.Leave, session_id=self.session_id,
                                                     group=name), now)
        for name, g in self.groups.items():
            carried = g.asked if g.participation is Participation.PENDING_REQUEST else None
            if g.participation is not Participation.NO_PERMISSION and carried is None:
                g.my_burst = 0
                self._move(g, FloorInput.RELOGIN)
            join = partial(m.Join, session_id=self.session_id, group=name)
            if name in joined_with:
                self._track("join", name, joined_with[name], join, now)
            else:
                self._request("join", name, join, now)
            if carried is not None:  # asked during the outage: the new server decides it
                prio = carried[0]
                self._request("floor", name, partial(m.FloorRequest, session_id=self.session_id,
                                                     group=name, priority=prio), now)
        if self.page_device:
            self.subscribe_pages(self.page_device, now)
        # the joins' answers folded into the Welcome (sealed with it), then any that came
        # on their own before it
        early, self._early = self._early, []
        for data in msg.joined:
            try:
                answer = decode_message(data)
            except ProtocolError:
                continue  # its join is asked for again, as for a lost answer
            if isinstance(answer, m.Joined):
                self._handle(answer, now)
        for answer in early:
            self._handle(answer, now)

    def _on_error(self, msg: m.Error, ctx: tuple[str, str], now: float) -> None:
        what, group = ctx
        if what == "login" and self._invited and msg.code == m.ErrorCode.AUTH_FAILED:
            # the notice's nonce was refused (forged, stale, spent) or our verifier is old:
            # the usual login, with a Hello, decides
            self.connect(now)
            return
        if what == "login":
            self.conn = ConnState.DISCONNECTED
            self._events.append(LoginFailed(msg.message))
            return
        g = self.groups.get(group)
        if g is not None and what in ("floor", "release"):
            self._move(g, FloorInput.REFUSED)
        if what == "join":
            self.groups.pop(group, None)
        if what == "admin":
            self._events.append(AdminResult(msg.txn, None, (msg.code, msg.message)))
        self._events.append(RequestFailed(what, group, msg.message, msg.code, msg.txn))

    def _on_joined(self, state: m.GroupState) -> None:
        g = self._group(state.group)
        g.state = state
        g.version = state.version
        g.online = {mi.user for mi in state.members if mi.online}
        g.talker, g.talker_burst = state.talker, state.burst_id
        g.queue = tuple(state.queue)
        self._events.append(GroupJoined(state))
        if state.talker is not None:
            self._events.append(TalkerChanged(state.group, state.talker, state.burst_id))

    def _fresh(self, group: str, version: int) -> bool:
        """Floor news of ``version``: False when this view already shows newer (a repeat, or
        a late copy); 0 is news without a version (a notice to a stale talker)."""
        g = self.groups.get(group)
        if g is None or version == 0:
            return True
        if version < g.version:
            return False
        g.version = version
        return True

    def _check_digest(self, digest: int, now: float) -> None:
        """The server's sum of our groups' floor versions differs from ours: some news was
        lost. Ask for the state of each group again (once at a time per group)."""
        known = [g for g in self.groups.values() if g.state is not None]
        if digest == sum(g.version for g in known) & 0xFFFFFFFF:
            return
        asking = {grp for what, grp in self._pending.values() if what in ("sync", "join")}
        for g in known:
            if g.name not in asking:
                self._request("sync", g.name,
                              partial(m.Join, session_id=self.session_id, group=g.name), now)

    def _on_sync(self, state: m.GroupState) -> None:
        """The state of a group we are in, asked again: catch the view up, quietly."""
        g = self.groups.get(state.group)
        if g is None or g.state is None or state.version <= g.version:
            return
        if g.participation is Participation.HAS_PERMISSION:
            return  # our own burst's end comes by revoke, idle or stale-talker notice
        g.version = state.version
        g.state = state
        self._note_queue(state.group, state.queue)
        if state.talker is not None:
            self._on_taken(state.group, state.talker, state.burst_id)
            return
        self._note_talker(g, None, g.talker_burst)
        g.forget(g.talker_burst)

    def _on_floor_response(self, msg: m.FloorResponse, now: float) -> None:
        g = self._group(msg.group)
        if g.participation is not Participation.PENDING_REQUEST:
            if msg.result == m.FloorResult.GRANTED and g.participation is not (
                    Participation.HAS_PERMISSION):
                self._give_back(msg.group, msg.burst_id, now)
            return
        if msg.result == m.FloorResult.GRANTED:
            g.my_burst = msg.burst_id
            self._note_talker(g, self.user, msg.burst_id)
            self._move(g, FloorInput.GRANTED, max_talk_ms=msg.max_talk_ms)
        elif msg.result == m.FloorResult.QUEUED:
            g.position = msg.position
            self._move(g, FloorInput.QUEUED)
        else:
            self._move(g, FloorInput.DENIED, deny_cause=msg.cause)

    def _on_unsolicited(self, msg: m.Message, now: float) -> None:
        if isinstance(msg, m.DeliveryReport):
            self._events.append(DeliveryReported(msg.group, msg.burst_id, msg.frames,
                                                 list(msg.heard), list(msg.silent),
                                                 list(msg.offline), msg.heard_more,
                                                 msg.silent_more, msg.offline_more))
            return
        if isinstance(msg, m.KeyGrant):
            self._events.append(KeyGrantReceived(msg.group, msg.epoch, msg.grant))
            return
        if isinstance(msg, m.IncomingCall):
            self._events.append(IncomingCall(msg.group, msg.peer))
            self.join(msg.group, now)
            return
        if isinstance(msg, m.GroupGone):
            g = self.groups.pop(msg.group, None)
            if g is not None and g.participation is not Participation.NO_PERMISSION:
                cause = (m.RevokeCause.GROUP_DELETED if msg.reason == m.GoneReason.DELETED
                         else m.RevokeCause.REMOVED)
                self._events.append(FloorStateChanged(msg.group, Participation.NO_PERMISSION,
                                                      revoke_cause=cause))
            self._events.append(GroupGone(msg.group, msg.reason))
            self._events.append(GroupLeft(msg.group))
            return
        if isinstance(msg, m.FloorGranted):
            g = self.groups.get(msg.group)
            if g is not None and (msg.burst_id in g.revoked or (
                    g.talker_burst and newer(g.talker_burst, msg.burst_id))):
                return  # a late or resent grant for a burst that is already over
            if g is None or g.participation not in (Participation.QUEUED,
                                                    Participation.PENDING_REQUEST):
                self._give_back(msg.group, msg.burst_id, now)  # nobody here wants it any more
                return
            g.my_burst = msg.burst_id
            self._note_talker(g, self.user, msg.burst_id)
            self._move(g, FloorInput.GRANTED, max_talk_ms=msg.max_talk_ms)
        elif isinstance(msg, m.FloorRevoked):
            g = self.groups.get(msg.group)
            if g is None:
                return
            g.forget(msg.burst_id)
            if g.my_burst == msg.burst_id and g.participation in (
                    Participation.HAS_PERMISSION, Participation.PENDING_RELEASE):
                g.my_burst = 0
                self._move(g, FloorInput.REVOKED, revoke_cause=msg.cause)
            elif (g.guessed_end == msg.burst_id
                  and g.participation is Participation.NO_PERMISSION):
                # the group's news overtook the revoke: now the real cause is known
                g.guessed_end = 0
                self._events.append(FloorStateChanged(g.name, Participation.NO_PERMISSION,
                                                      burst_id=msg.burst_id,
                                                      revoke_cause=msg.cause))

    def _give_back(self, group: str, burst_id: int, now: float) -> None:
        g = self.groups.get(group)
        if g is not None:
            g.forget(burst_id)
        self._request("release", group,
                      lambda t: m.FloorRelease(t, self.session_id, group, burst_id), now)

    def _note_queue(self, group: str, queue: list[str]) -> None:
        """The group's queue as the server announced it; a queued device takes its place
        from it too (its own QueuePosition may have been lost)."""
        g = self.groups.get(group)
        if g is None:
            return
        g.queue = tuple(queue)
        if g.participation is Participation.QUEUED and self.user in g.queue:
            position = g.queue.index(self.user) + 1
            if position != g.position:
                g.position = position
                self._move(g, FloorInput.QUEUE_MOVED)

    def _note_talker(self, g: GroupView, talker: str | None, burst: int,
                     priority: m.Priority = m.Priority.NORMAL) -> None:
        if (g.talker, g.talker_burst) != (talker, burst):
            g.talker, g.talker_burst = talker, burst
            self._events.append(TalkerChanged(g.name, talker, burst, priority))

    def _on_taken(self, group: str, talker: str, burst: int,
                  priority: m.Priority = m.Priority.NORMAL) -> None:
        g = self.groups.get(group)
        if g is None or (g.talker_burst and not newer(burst, g.talker_burst)
                         and burst != g.talker_burst):
            return  # an announcement older than what we know
        self._note_talker(g, talker, burst, priority)
        if (talker != self.user and g.participation is Participation.HAS_PERMISSION
                and newer(burst, g.my_burst)):
            g.guessed_end, g.my_burst = g.my_burst, 0  # the server moved on: our grant is over
            self._move(g, FloorInput.ENDED, revoke_cause=m.RevokeCause.PREEMPTED)

    def _on_idle(self, group: str, burst: int) -> None:
        g = self.groups.get(group)
        if g is None or (g.talker_burst and newer(g.talker_burst, burst)):
            return
        if g.talker is None:
            # idle already: a repeat of news from before this view's join, or the end of a burst
            # it was never told of; either way nothing it showed has changed
            g.talker_burst = burst
            return
        self._note_talker(g, None, burst)
        g.forget(burst)
        if g.participation is Participation.HAS_PERMISSION and g.my_burst == burst:
            g.guessed_end, g.my_burst = burst, 0
            self._move(g, FloorInput.ENDED, revoke_cause=m.RevokeCause.SILENCE)

    def _ask_again(self, group: str, now: float) -> None:
        """The floor is free and our request still unanswered: send it again now, not at its
        next retry (up to RETRY_CAP later). In a cluster the request went to a home that died
        with it; the node that took the group over is the one announcing the free floor, and
        this copy reaches it. A server that has the request answers the copy from its cache."""
        g = self.groups.get(group)
        if g is None or g.participation is not Participation.PENDING_REQUEST:
            return
        for txn, (what, name) in self._pending.items():
            if what == "floor" and name == group:
                again = self._rt.resend_now(txn, now)
                if again is not None:
                    self._emit(again[0], again[1] is True)

    def _timed_out(self, what: str, group: str, now: float, txn: int = 0) -> None:
        if what in ("hello", "login"):
            self._schedule_relogin(now, "the server does not answer")
            return
        if what == "sync":
            return  # nobody waits on it: the next heartbeat answer asks again if still behind
        g = self.groups.get(group)
        if g is not None and what == "join" and self.conn is ConnState.CONNECTED:
            # a group we want stays wanted: keep asking (a busy server may answer late)
            self._request("join", group, lambda t: m.Join(t, self.session_id, group), now)
        if g is not None and what in ("floor", "release") and g.participation in (
                Participation.PENDING_REQUEST, Participation.PENDING_RELEASE):
            self._move(g, FloorInput.TIMEOUT)
        self._events.append(RequestFailed(what, group, "the server did not answer in time",
                                          None, txn))

    def _lost(self, reason: str, now: float) -> None:
        was = self.conn
        hinted_at, hinted_by, spread = (
            (self._hinted_at, self._hinted_by, self._hinted_spread) if self._hinted_elsewhere
            else (now, None, MOVE_JITTER))
        self.conn = ConnState.DISCONNECTED
        self._rt = Retransmitter()
        self._pending.clear()
        self._next_heartbeat = self._check_until = self._check_resend = None
        self._hinted_elsewhere = False
        talking = any(g.participation is Participation.HAS_PERMISSION
                      for g in self.groups.values())
        if talking:
            self._talker_lost_at = now
        for g in self.groups.values():
            if g.participation is Participation.PENDING_REQUEST and g.asked is not None and (
                    now - g.asked[1] < RETRY_TOTAL):
                continue  # carried over: asked again of the server we log in to next
            if g.participation is not Participation.NO_PERMISSION:
                g.my_burst = 0
                self._move(g, FloorInput.SESSION_LOST,
                           revoke_cause=m.RevokeCause.SESSION_LOST, reason=reason)
        if was is ConnState.CONNECTED:
            self._events.append(Disconnected(reason))
        if self.servers is None or not self.roaming:
            self.connect(now)
            return
        # its node is gone or forgot us: another node of the list, after a jitter, so that a
        # dead node's clients do not all arrive at once (ptt.protocol.server_list). Told by
        # another node, the jitter runs from its notice, not from the end of our check: the
        # check (CHECK_WINDOW) is spent inside the window instead of before it, and a client
        # whose draw fell within the check logs in as soon as it ends. It goes to the node that
        # told it, which lives (ServerList.move), within the window it asked for
        # A client that held a floor logs in at once, not at its draw: the floor may still be
        # held for it (TALKER_BACK_WITHIN), and one talker a group adds nothing to a storm
        at = self.servers.move(hinted_at, hinted_by, spread)
        self._relogin_at = now if talking else max(now, at)
        self._moving = True

    def _schedule_relogin(self, now: float, reason: str) -> None:
        if self.conn is not ConnState.DISCONNECTED:
            self._events.append(Disconnected(reason))
        self.conn = ConnState.DISCONNECTED
        if self.servers is not None and self.roaming:
            self.servers.login_failed()
        # jitter (0.5x-1.5x) so thousands of clients of a busy server do not retry in step
        spread = 0.5 + int.from_bytes(self._entropy(2), "big") / 65535
        self._relogin_at = now + self._relogin_backoff * spread
        self._relogin_backoff = min(self._relogin_backoff * 2, RELOGIN_CAP)
