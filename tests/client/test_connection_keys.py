"""Connection's key-grant API over real UDP on 127.0.0.1, against a ServerCore driven by a small
asyncio loop in the test (so the test can upload grants with ``set_group_key`` directly)."""

from __future__ import annotations

import asyncio
import os

from ptt.client.connection import Connection
from ptt.protocol import auth
from ptt.protocol import messages as m
from ptt.protocol.server import ServerCore

TOKENS = {"ann": "ann-token-0123456789abcdef0123", "bob": "bob-token-0123456789abcdef0123"}


class CoreServer(asyncio.DatagramProtocol):
    """ServerCore on a loopback socket: datagrams in, its output out, its timer armed."""

    def __init__(self) -> None:
        self.core = ServerCore(os.urandom)
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        for user, token in TOKENS.items():
            c = auth.make_credentials(token, os.urandom(16), auth.MIN_ITERATIONS)
            self.core.upsert_user(user, m.Role.VOLUNTEER, c.salt, c.iterations, c.verifier)
        self.core.upsert_group("g", 1, 30.0)
        for user in TOKENS:
            self.core.set_member("g", user)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]  # type: ignore[no-any-return]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = asyncio.get_running_loop().time()
        targets = self.core.receive_datagram(data, addr, now)
        for t in targets or ():
            self.transport.sendto(data, t)  # type: ignore[union-attr]
        self.flush()

    def flush(self) -> None:
        for data, addr in self.core.datagrams_to_send():
            self.transport.sendto(data, addr)  # type: ignore[union-attr]
        self.core.events()
        if self._timer is not None:
            self._timer.cancel()
        at = self.core.get_timer()
        if at is not None:
            self._timer = asyncio.get_running_loop().call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.core.handle_timer(asyncio.get_running_loop().time())
        self.flush()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()


async def start_core_server() -> CoreServer:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(CoreServer, local_addr=("127.0.0.1", 0))
    return proto


def test_grants_reach_the_connection_on_join_and_on_upload() -> None:
    async def main() -> None:
        srv = await start_core_server()
        try:
            async with Connection(srv.address, "ann", TOKENS["ann"]) as ann:
                assert (ann.user, ann.token) == ("ann", TOKENS["ann"])
                seen: list[tuple[str, int, bytes]] = []
                ann.on_key_grant(lambda g, e, b: seen.append((g, e, b)))
                assert ann.key_grant("g") is None
                srv.core.set_group_key("g", 1, {"ann": b"one" * 80}, ann._now())
                srv.flush()
                state = await ann.join("g")
                assert state.key_epoch == 1
                assert ann.key_grant("g") == (1, b"one" * 80)
                srv.core.set_group_key("g", 2, {"ann": b"two" * 80, "bob": b"b"}, ann._now())
                srv.flush()
                for _ in range(100):  # bounded: 2 s
                    if ann.key_grant("g") == (2, b"two" * 80):
                        break
                    await asyncio.sleep(0.02)
                assert ann.key_grant("g") == (2, b"two" * 80)
                # pushed at the first upload (online), in the Join answer, pushed at the second
                assert seen == [("g", 1, b"one" * 80)] * 2 + [("g", 2, b"two" * 80)]
                await asyncio.sleep(0.3)
                assert len(srv.core.outbox.reliable) == 0  # the pushes were acknowledged
        finally:
            srv.close()

    asyncio.run(main())


def test_a_talker_signs_only_where_its_voice_may_be_heard_by_multicast() -> None:
    from ptt.protocol.voicepath import VoicePath
    MULTICAST, PROBING, RELAY = VoicePath.MULTICAST, VoicePath.PROBING, VoicePath.RELAY
    from ptt.client.keys import heard_directly
    from ptt.protocol.messages import GroupState

    def state(mode: str, addr: str | None, bridged: bool) -> GroupState:
        return GroupState("g", 1, [], mode=mode, mcast_addr=addr,
                          mcast_port=7802 if addr else 0, bridged=bridged)

    lan = "239.255.0.1"
    assert heard_directly(None, RELAY)  # nothing known yet: sign
    assert heard_directly(state("auto", lan, False), MULTICAST)
    assert heard_directly(state("auto", lan, False), PROBING)
    assert heard_directly(state("auto", lan, True), RELAY)  # the server bridges it there
    assert not heard_directly(state("auto", lan, False), RELAY)  # nobody hears it by multicast
    assert not heard_directly(state("relay", lan, True), RELAY)
    assert not heard_directly(state("auto", None, False), RELAY)
