"""``ptt server --cluster``: one server process as a node of a cluster.

Wires a :class:`~ptt.server.app.PttServer` to the bus: a
:class:`~ptt.protocol.cluster_routing.ClusterRouting` beside the server's core decides what
crosses (floor inputs to a group's home, the home's news to the nodes with members, voice once
per node with listeners) and :class:`~ptt.cluster.bus.Bus` carries it over NATS. The server calls
the node through its ``cluster`` hook (``ptt.server.app.ClusterHook``): after each turn of
its core (:meth:`ClusterNode.flush`), for each voice frame its relay accepted
(:meth:`ClusterNode.voice`), and at the routing's timer. What arrives on the bus goes to the
routing, then out through the server as its own output does.

Homes come from :class:`~ptt.protocol.cluster_routing.StaticHomes` (the file's ``[homes]``,
else the group name's CRC-32) until ownership by etcd leases is wired in.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from ptt.cluster.bus import Bus
from ptt.cluster.config import ClusterConfig
from ptt.errors import ProtocolError
from ptt.protocol.cluster_routing import ClusterRouting, StaticHomes
from ptt.protocol.server import ServerCore
from ptt.protocol.session import Addr
from ptt.wire.cluster import is_voice
from ptt.wire.voice import peek_frame

__all__ = ["ClusterNode"]

log = logging.getLogger("ptt.cluster.node")


class NodeServer(Protocol):
    """What a node needs of its server (``ptt.server.app.PttServer``, which sits above this
    package and calls the node through its ``cluster`` hook)."""

    core: ServerCore
    cluster: Any

    @property
    def is_open(self) -> bool: ...

    def fan_out(self, data: bytes, targets: tuple[Addr, ...], now: float) -> None: ...

    def transmit(self, now: float) -> None: ...

    def rearm(self) -> None: ...


class ClusterNode:
    """``node = ClusterNode(server, config)``; ``await node.start()`` once the server started;
    ``await node.close()``."""

    def __init__(self, server: NodeServer, config: ClusterConfig) -> None:
        self.server = server
        self.config = config
        self.routing = ClusterRouting(config.node, server.core,
                                      StaticHomes(config.nodes, config.homes))
        self.bus = Bus(config.node, config.nats, self._on_bus, config.subject_prefix)
        self.bad_messages = 0

    async def start(self) -> None:
        await self.bus.start()
        self.server.cluster = self
        now = asyncio.get_running_loop().time()
        self.routing.start(now)
        self.flush(now)
        self.server.rearm()
        log.info("cluster node %s of %s on NATS %s", self.config.node,
                 ", ".join(self.config.nodes), ", ".join(self.config.nats))

    async def close(self) -> None:
        self.server.cluster = None
        await self.bus.close()

    # --- ClusterHook: called by the server ----------------------------------------------------

    def flush(self, now: float) -> None:
        """Publish what the routing has to send (the core's turn just ended)."""
        self.routing.flush(now)
        send = self.bus.send
        for node, data in self.routing.messages_to_send():
            send(node, data)

    def voice(self, data: bytes, now: float) -> None:
        """A frame the relay accepted (MAC removed): once to each other node with listeners."""
        send = self.bus.send
        for node in self.routing.voice_nodes(peek_frame(data)[0]):
            send(node, data)
        self.flush(now)  # the home's ALIVE

    def get_timer(self) -> float | None:
        return self.routing.get_timer()

    def handle_timer(self, now: float) -> None:
        self.routing.handle_timer(now)

    # --- the bus ------------------------------------------------------------------------------

    def _on_bus(self, data: bytes) -> None:
        if not self.server.is_open:
            return
        now = asyncio.get_running_loop().time()
        try:
            if is_voice(data):
                targets = self.routing.receive_voice(data, now)
                if targets:
                    self.server.fan_out(data, targets, now)
                return
            self.routing.receive(data, now)
        except ProtocolError as exc:
            self.bad_messages += 1
            log.warning("bad message on the bus: %s", exc)
            return
        self.server.transmit(now)
