"""The sealed control plane against a real `ptt server` process on 127.0.0.1.

A small UDP forwarder sits between a client and the server, as an eavesdropper and replayer on
the path would: it records every datagram both ways and can send the client's again, from the
very address the server knows the client by. What it replays must change nothing; what it
recorded must not show a token, admin arguments or group names. While it replays, it holds the
live client's own datagrams back (heartbeats go on), so that whatever the server sends that
address meanwhile answers the replay.
"""

from __future__ import annotations

import asyncio
import socket
import time

from ptt.client.connection import Connection
from ptt.client.keys import add_user
from ptt.crypto.channel import SEALED_MAGIC, is_sealed, peek_session_id
from ptt.protocol import messages as m
from ptt.protocol.client import FloorStateChanged, Participation, TalkerChanged
from ptt.protocol.messages import decode_message, encode_message
from ptt.protocol.server_floor import STATE_REPEATS
from tests.e2e.serverproc import ServerProcess

SETTLE = 0.4  # for the server to act on what was sent (loopback answers in well under 10 ms)


class Forwarder(asyncio.DatagramProtocol):
    """Client side socket; one upstream socket per client address, recording both directions."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.up: dict[tuple[str, int], _Upstream] = {}
        self.log: list[tuple[str, bytes]] = []  # ("up" client->server | "down", datagram)

    @property
    def address(self) -> tuple[str, int]:
        return self.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr,no-any-return]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        up = self.up.get(addr)
        if up is None:
            up = self.up[addr] = _Upstream(self, addr)
            asyncio.get_running_loop().create_task(up.open())
        self.log.append(("up", data))
        up.forward(data)

    def sent(self) -> list[bytes]:
        return [d for way, d in self.log if way == "up"]

    def close(self) -> None:
        for up in self.up.values():
            up.close()
        if self.transport is not None:
            self.transport.close()


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, fwd: Forwarder, client: tuple[str, int]) -> None:
        self.fwd, self.client = fwd, client
        self.transport: asyncio.DatagramTransport | None = None
        self.queue: list[bytes] = []
        self.answers: list[bytes] = []  # what the server sent back, also while replaying
        self.deliver = True
        self.held: list[bytes] | None = None  # the live client's datagrams, while replaying
        self.last_live = 0.0  # when the live client's last datagram went up

    async def open(self) -> None:
        await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: self, remote_addr=self.fwd.server)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        for d in self.queue:
            self.transport.sendto(d)
        self.queue.clear()

    def forward(self, data: bytes) -> None:
        """The live client's datagram: sent on, or held while a replay runs."""
        if self.held is not None:
            self.held.append(data)
        else:
            self.last_live = time.monotonic()
            self.send(data)

    def send(self, data: bytes) -> None:
        if self.transport is None:
            self.queue.append(data)
        else:
            self.transport.sendto(data)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.fwd.log.append(("down", data))
        self.answers.append(data)
        if self.deliver:
            self.fwd.transport.sendto(data, self.client)  # type: ignore[union-attr]

    def error_received(self, exc: Exception) -> None:
        pass

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def forwarder(server: ServerProcess) -> Forwarder:
    _, fwd = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: Forwarder(server.address), local_addr=("127.0.0.1", 0))
    return fwd


async def replay(fwd: Forwarder, datagrams: list[bytes]) -> list[bytes]:
    """Send ``datagrams`` again from the recorded client's own upstream address (not passed on
    to the client); returns what the server answered them. The live client's own datagrams wait
    meanwhile, and the answers to those it sent just before are let in first."""
    (up,) = fwd.up.values()
    up.deliver = False
    up.held = []
    in_flight = up.last_live + SETTLE - time.monotonic()
    if in_flight > 0:
        await asyncio.sleep(in_flight)
    start = len(up.answers)
    for d in datagrams:
        up.send(d)
        await asyncio.sleep(0.002)
    await asyncio.sleep(SETTLE)
    answers = up.answers[start:]
    held, up.held = up.held, None
    for d in held:
        up.forward(d)
    return answers


async def setup(server: ServerProcess) -> dict[str, str]:
    cred = server.credentials
    async with Connection(server.address, cred["user"], cred["token"]) as coord:
        tokens = {u: await add_user(coord, u) for u in ("ann", "bob", "lou", "nat")}
        await coord.admin("group.create", {"name": "volunteers"})
        await coord.admin("group.add", {"name": "volunteers", "users": ["ann", "bob"]})
        await coord.admin("group.add", {"name": "volunteers", "users": ["lou"],
                                        "listen_only": True})
    return tokens


def test_replayed_floor_request_after_release_does_not_grant(server: ServerProcess) -> None:
    async def main() -> None:
        tokens = await setup(server)
        fwd = await forwarder(server)
        try:
            async with Connection(fwd.address, "ann", tokens["ann"]) as ann, \
                    Connection(server.address, "bob", tokens["bob"]) as bob:
                await ann.join("volunteers")
                await bob.join("volunteers")
                got = await ann.request_floor("volunteers")
                assert got.state is Participation.HAS_PERMISSION
                ann.drop_floor("volunteers")
                # past the repeats of the floor's news, which the server sends on its own
                await asyncio.sleep(STATE_REPEATS[-1] + SETTLE)
                assert bob.core.groups["volunteers"].talker is None
                watch = bob.subscribe()
                sealed = [d for d in fwd.sent() if d[0] == SEALED_MAGIC]
                answers = await replay(fwd, sealed)
                assert answers == []  # not one replayed sealed datagram was acted on
                assert bob.core.groups["volunteers"].talker is None
                assert not any(isinstance(e, TalkerChanged) for e in _drain(watch))
                assert ann.connected  # and the real client is none the worse
        finally:
            fwd.close()

    asyncio.run(main())


def test_replayed_admin_commands_change_nothing(server: ServerProcess) -> None:
    async def main() -> None:
        cred = server.credentials
        fwd = await forwarder(server)
        try:
            async with Connection(fwd.address, cred["user"], cred["token"]) as coord:
                await add_user(coord, "zed")
                await coord.admin("group.create", {"name": "scratch"})
                await coord.admin("user.remove", {"name": "zed"})
                await coord.admin("group.delete", {"name": "scratch"})
            async with Connection(server.address, cred["user"], cred["token"]) as direct:
                zed = await add_user(direct, "zed")
                await direct.admin("group.create", {"name": "scratch"})
                before_users = await direct.admin("user.list", {})
                # the whole capture again: Hello, Login, the sealed admin commands, the Bye
                captured = fwd.sent()
                sent_back = {d for way, d in fwd.log if way == "down"}
                answers = await replay(fwd, captured)
                # sealed answers: only the cached Welcome, byte for byte, once per Login in the
                # capture (a slow first answer makes the client send its Login again), which
                # nobody without the key can open
                logins = sum(1 for d in captured if not is_sealed(d)
                             and isinstance(decode_message(d), m.Login))
                sealed = [a for a in answers if a[0] == SEALED_MAGIC]
                assert 1 <= logins and len(sealed) <= logins, (len(sealed), logins)
                assert all(a in sent_back for a in sealed)
                assert await direct.admin("user.list", {}) == before_users
                shown = await direct.admin("group.show", {"name": "scratch"})
                assert shown["name"] == "scratch"
                async with Connection(server.address, "zed", zed) as z:  # zed's token still works
                    assert z.connected
                online = {u["name"]: u["online"] for u in
                          (await direct.admin("user.list", {}))["users"]}
                assert online["coordinator"] is True and online["zed"] is False
        finally:
            fwd.close()

    asyncio.run(main())


def test_replayed_hello_and_login_open_no_session(server: ServerProcess) -> None:
    async def main() -> None:
        tokens = await setup(server)
        cred = server.credentials
        fwd = await forwarder(server)
        try:
            async with Connection(fwd.address, "ann", tokens["ann"]):
                pass
            plain = [d for d in fwd.sent() if d[0] != SEALED_MAGIC]
            assert [type(decode_message(d)).__name__ for d in plain] == ["Hello", "Login"]
            for attempt in range(2):  # at once (the response cache) and after it expired
                if attempt:
                    await asyncio.sleep(8.5)
                answers = await replay(fwd, plain)
                assert all(len(a) <= len(plain[1]) for a in answers)
                kinds = [decode_message(a) if a[0] != SEALED_MAGIC else "sealed"
                         for a in answers]
                if attempt:  # a fresh Challenge (harmless), then the Login is refused
                    assert isinstance(kinds[0], m.Challenge)
                    assert isinstance(kinds[1], m.Error)
                    assert kinds[1].code == m.ErrorCode.AUTH_FAILED
                async with Connection(server.address, cred["user"], cred["token"]) as c:
                    users = {u["name"]: u["online"] for u in
                             (await c.admin("user.list", {}))["users"]}
                assert users["ann"] is False
        finally:
            fwd.close()

    asyncio.run(main())


def test_eavesdropper_sees_no_token_no_admin_arguments_no_group_names(
        server: ServerProcess) -> None:
    async def main() -> None:
        cred = server.credentials
        fwd = await forwarder(server)
        try:
            async with Connection(fwd.address, cred["user"], cred["token"]) as coord:
                token = await add_user(coord, "quentin")
                await coord.admin("group.create", {"name": "harbour-rescue"})
                await coord.admin("group.add", {"name": "harbour-rescue", "users": ["quentin", cred["user"]]})
                await coord.join("harbour-rescue")
                await coord.admin("group.list", {})
            wire = b"".join(d for _, d in fwd.log)
            for secret in (cred["token"], token, "quentin", "harbour-rescue", "group.create",
                           "user.add"):
                assert secret.encode() not in wire, secret
            sealed = [d for _, d in fwd.log if d[0] == SEALED_MAGIC]
            plain = [d for _, d in fwd.log if d[0] != SEALED_MAGIC]
            assert len(sealed) >= 10
            # in the clear: the login only (the user's name is in Hello and Login, by design)
            assert {type(decode_message(d)).__name__ for d in plain} <= {"Hello", "Challenge",
                                                                          "Login"}
        finally:
            fwd.close()

    asyncio.run(main())


def test_forged_plain_floor_request_with_a_valid_session_id_gets_no_floor(
        server: ServerProcess) -> None:
    async def main() -> None:
        tokens = await setup(server)
        fwd = await forwarder(server)
        try:
            async with Connection(fwd.address, "ann", tokens["ann"]) as ann, \
                    Connection(server.address, "bob", tokens["bob"]) as bob:
                await ann.join("volunteers")
                await bob.join("volunteers")
                # bob's coming online reaches ann in the server's next presence batch: let it
                # arrive first, so that whatever ann's address gets below answers the forgery
                for _ in range(100):
                    if "bob" in ann.core.groups["volunteers"].online:
                        break
                    await asyncio.sleep(0.05)
                assert "bob" in ann.core.groups["volunteers"].online
                sid = peek_session_id(next(d for d in fwd.sent() if d[0] == SEALED_MAGIC))
                assert sid == ann.core.session_id  # what an eavesdropper learns
                forged = [encode_message(m.FloorRequest(txn, sid, "volunteers", prio))
                          for txn, prio in ((9001, m.Priority.NORMAL),
                                            (9002, m.Priority.EMERGENCY))]
                # from the eavesdropper's own socket, and from ann's address via the forwarder
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                    raw.bind(("127.0.0.1", 0))
                    raw.settimeout(SETTLE)
                    for d in forged:
                        raw.sendto(d, server.address)
                    got = []
                    try:
                        for _ in range(4):
                            got.append(raw.recv(2048))
                    except TimeoutError:
                        pass
                # a NO_SESSION error (30 bytes) would be larger than these: no answer at all
                assert max(map(len, forged)) < 30 and got == []
                assert await replay(fwd, forged) == []
                assert bob.core.groups["volunteers"].talker is None
                assert ann.core.participation("volunteers") is Participation.NO_PERMISSION
                got2 = await bob.request_floor("volunteers")  # the floor was free all along
                assert got2.state is Participation.HAS_PERMISSION
        finally:
            fwd.close()

    asyncio.run(main())


def test_listen_only_and_non_member_are_denied_with_their_cause_over_the_wire(
        server: ServerProcess) -> None:
    async def main() -> None:
        tokens = await setup(server)
        async with Connection(server.address, "lou", tokens["lou"]) as lou, \
                Connection(server.address, "nat", tokens["nat"]) as nat:
            state = await lou.join("volunteers")
            assert {mi.user: mi.listen_only for mi in state.members}["lou"] is True
            denied = await lou.request_floor("volunteers")
            assert (denied.state, denied.deny_cause) == (Participation.NO_PERMISSION,
                                                         m.DenyCause.LISTEN_ONLY)
            denied = await lou.request_floor("volunteers", m.Priority.EMERGENCY)
            assert denied.deny_cause in (m.DenyCause.LISTEN_ONLY, m.DenyCause.NOT_ALLOWED)
            outsider = await nat.request_floor("volunteers")
            assert isinstance(outsider, FloorStateChanged)
            assert (outsider.state, outsider.deny_cause) == (Participation.NO_PERMISSION,
                                                             m.DenyCause.NOT_MEMBER)

    asyncio.run(main())


def _drain(q: asyncio.Queue[object]) -> list[object]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out
