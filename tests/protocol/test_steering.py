"""Group affinity: a node's Welcome names the node that homes the user's groups, and the client
moves there once (ptt.protocol.server_list "Steering", ClusterRouting.placement). Three
ServerCores with their ClusterRoutings, an in-memory bus and one roaming ClientCore on a
virtual clock; nothing touches a socket."""

from __future__ import annotations

import random
from collections import Counter

from ptt.names import format_hostport
from ptt.protocol import auth
from ptt.protocol import messages as m
from ptt.protocol.client import STEER_RETRY, ClientCore, Connected, ConnState, GroupJoined
from ptt.protocol.cluster_routing import ClusterRouting, StaticHomes, placement_node
from ptt.protocol.server import ServerCore
from ptt.protocol.server_list import LOGIN_TRY, STEER_AGAIN, STEER_JITTER, ServerList
from ptt.wire.voice import VoiceHeader, add_mac, encode_voice

A, B, C = ("10.0.0.1", 7800), ("10.0.0.2", 7800), ("10.0.0.3", 7800)
ADDR = {"a": A, "b": B, "c": C}


class Homes(StaticHomes):
    """Static homes whose term a test can set to 0 (no home known) per group."""

    def __init__(self, pinned: dict[str, str], unknown: set[str] | None = None) -> None:
        super().__init__(ADDR, pinned)
        self.unknown = unknown or set()

    def home_of(self, group: str) -> tuple[str, int]:
        node, term = super().home_of(group)
        return node, 0 if group in self.unknown else term


# --- the rules alone ---------------------------------------------------------------------------


def test_the_home_of_most_groups_wins_and_a_tie_keeps_the_client_where_it_is() -> None:
    homes = Homes({"g1": "c", "g2": "c", "g3": "b", "g4": "a"}, unknown={"g5"})
    assert placement_node(["g1", "g2", "g3"], homes, "a") == "c"
    assert placement_node(["g1", "g3"], homes, "b") == "b"  # tied with here: stay
    assert placement_node(["g1", "g3"], homes, "a") == "b"  # tied elsewhere: the first, sorted
    assert placement_node(["g5"], homes, "a") is None  # no home known: no advice
    assert placement_node([], homes, "a") is None
    assert placement_node(["g5", "g5", "g4"], homes, "c") == "a"  # unknown homes do not count


def test_a_steer_is_once_jittered_and_never_to_the_server_in_use() -> None:
    delays = []
    for seed in range(300):
        servers = ServerList([A, B], seed.to_bytes(4, "big"))
        assert servers.steer(A, 10.0) is None  # already there
        at = servers.steer(C, 10.0)
        assert at is not None
        delays.append(at - 10.0)
        assert servers.steer(C, 11.0) is None and servers.steer(B, 11.0) is None  # once
    assert all(0 <= d < STEER_JITTER for d in delays)
    halves = Counter(int(d / STEER_JITTER * 4) for d in delays)
    assert len(halves) == 4 and max(halves.values()) < 300 / 4 * 1.5, halves  # spread


def test_a_steered_login_unanswered_goes_back_and_stays() -> None:
    servers = ServerList([A, B], b"s")
    assert servers.steer(C, 0.0) is not None
    servers.go(C)
    assert servers.current == C and servers.servers == (A, B, C)
    servers.login_failed()
    assert servers.current == A  # the server it left, not the next of the list
    servers.connected()
    assert servers.steer(C, 5.0) is None  # no second try without a session lost


def test_after_a_session_lost_a_client_may_steer_again_but_not_at_once() -> None:
    servers = ServerList([A, B, C], b"s")
    assert servers.steer(C, 0.0) is not None
    servers.go(C)
    servers.connected()
    servers.move(10.0)  # its node died
    assert servers.steer(C, 11.0) is None  # within STEER_AGAIN of the last steer
    servers.move(STEER_AGAIN + 1)
    assert servers.steer(C if servers.current != C else B, STEER_AGAIN + 2) is not None


# --- a client and three nodes ------------------------------------------------------------------


class Net:
    """Nodes a, b, c (ServerCore + ClusterRouting each, ``homes`` per node), one user ann in
    group g, whose client lists ``listed``; the nodes' bus is immediate and in memory."""

    def __init__(self, homes: dict[str, Homes], listed: list[tuple[str, int]]) -> None:
        rng = random.Random(3)
        self.now = 0.0
        self.cores = {n: ServerCore(rng.randbytes) for n in ADDR}
        self.routing = {n: ClusterRouting(n, c, homes[n]) for n, c in self.cores.items()}
        self.dead: set[str] = set()
        token = "token-of-ann-0123456789abcdef"
        creds = auth.make_credentials(token, rng.randbytes(16), auth.MIN_ITERATIONS)
        for n, core in self.cores.items():
            core.upsert_user("ann", m.Role.VOLUNTEER, creds.salt, creds.iterations,
                             creds.verifier)
            core.upsert_group("g", 1, 30.0)
            core.set_member("g", "ann")
            core.set_access_servers([format_hostport(*a) for a in ADDR.values()])
            self.routing[n].addresses = {k: format_hostport(*a) for k, a in ADDR.items()}
            self.routing[n].start(self.now)
        self.client = ClientCore("ann", token, rng.randbytes, "dev", servers=listed)
        self.addr = ("10.0.9.9", 40000)
        self.events: list[object] = []

    def node_at(self, addr: object) -> str:
        return next(n for n, a in ADDR.items() if a == addr)

    def pump(self) -> None:
        for _ in range(50):
            moved = False
            for data in self.client.datagrams_to_send():
                node = self.node_at(self.client.server)
                if node not in self.dead:
                    self.cores[node].receive_datagram(data, self.addr, self.now)
                moved = True
            for n, core in self.cores.items():
                if n in self.dead:
                    continue
                self.routing[n].flush(self.now)
                for data, _ in core.datagrams_to_send():
                    self.client.receive_datagram(data, self.now, source=ADDR[n])
                    moved = True
                for to, msg in self.routing[n].messages_to_send():
                    if to not in self.dead:
                        self.routing[to].receive(msg, self.now)
                        moved = True
            self.events += self.client.events()
            if not moved:
                return

    def run(self, until: float) -> None:
        while True:
            live = [n for n in ADDR if n not in self.dead]
            ts = [t for t in [self.client.get_timer()]
                  + [self.cores[n].get_timer() for n in live]
                  + [self.routing[n].get_timer() for n in live]
                  if t is not None and t <= until]
            if not ts:
                break
            self.now = max(self.now, min(ts))
            self.client.handle_timer(self.now)
            for n in live:
                self.cores[n].handle_timer(self.now)
                self.routing[n].handle_timer(self.now)
            self.pump()
        self.now = until

    def start(self) -> None:
        self.client.connect(self.now)
        self.client.join("g", self.now)
        self.pump()
        self.run(0.5)

    def sessions(self) -> dict[str, int]:
        return {n: len(c.state.sessions.by_id) for n, c in self.cores.items()}

    def connected(self) -> list[Connected]:
        return [e for e in self.events if isinstance(e, Connected)]


def same(pinned: dict[str, str]) -> dict[str, Homes]:
    homes = Homes(pinned)
    return {n: homes for n in ADDR}


def test_a_client_logged_in_away_from_its_groups_home_moves_there_once() -> None:
    net = Net(same({"g": "c"}), [A])  # configured with node a alone
    net.start()
    assert net.client.server == A and net.client.conn is ConnState.CONNECTED
    net.run(0.5 + STEER_JITTER + 1.0)
    assert net.client.server == C and net.client.conn is ConnState.CONNECTED
    assert net.sessions() == {"a": 0, "b": 0, "c": 1}  # said goodbye to a
    assert len(net.connected()) == 2
    joined = [e for e in net.events if isinstance(e, GroupJoined)]
    assert len(joined) == 2  # joined g again on c
    net.run(600.0)  # and stays: heartbeats only
    assert net.client.server == C and len(net.connected()) == 2


def test_a_client_on_its_groups_home_stays() -> None:
    net = Net(same({"g": "a"}), [A, B])
    net.start()
    net.run(300.0)
    assert net.client.server == A and len(net.connected()) == 1


def test_two_nodes_naming_each_other_do_not_bounce_a_client() -> None:
    # a believes g is homed on c; c believes it is homed on a (a home that moved meanwhile)
    homes = {"a": Homes({"g": "c"}), "b": Homes({"g": "c"}), "c": Homes({"g": "a"})}
    net = Net(homes, [A])
    net.start()
    net.run(300.0)
    assert net.client.server == C and len(net.connected()) == 2  # one move, then it stays


def test_a_home_that_moves_later_is_not_chased() -> None:
    homes = same({"g": "c"})
    net = Net(homes, [A])
    net.start()
    net.run(5.0)
    assert net.client.server == C
    homes["a"].pinned["g"] = "b"  # failover: g's home is b now (the same map on every node)
    net.run(300.0)
    assert net.client.server == C and len(net.connected()) == 2


def test_a_home_that_does_not_answer_leaves_the_client_where_it_was() -> None:
    net = Net(same({"g": "c"}), [A])
    net.dead.add("c")
    net.start()
    net.run(0.5 + STEER_JITTER + LOGIN_TRY + 3.0)
    assert net.client.server == A and net.client.conn is ConnState.CONNECTED
    assert len(net.connected()) == 2  # a, the try at c given up, a again
    net.run(600.0)
    assert net.client.server == A and len(net.connected()) == 2  # no second try


def test_a_busy_floor_holds_the_move_until_it_is_quiet() -> None:
    net = Net(same({"g": "c"}), [A])
    net.start()
    net.client.request_floor("g", net.now)
    net.pump()
    net.run(net.now + 0.2)
    assert net.client.talk_route("g") is not None  # granted by c, through the bus
    end = net.now + STEER_JITTER + 2.0
    while net.now < end:  # talking past the steer's time: one frame every 20 ms
        route = net.client.talk_route("g")
        assert route is not None and net.client.server == A  # not moved
        frame = add_mac(net.client.voice_key, encode_voice(VoiceHeader(*route, 0, 0), b"\0"))
        net.cores["a"].receive_datagram(frame, net.addr, net.now)
        net.pump()
        net.run(net.now + 0.02)
    net.client.release_floor("g", net.now)
    net.pump()
    net.run(net.now + STEER_RETRY + 1.0)
    assert net.client.server == C and len(net.connected()) == 2
