"""Per-leg timestamps inside a ``ptt server --cluster`` node, for ``bench/trace_cluster_legs.py``.

Python imports this module at start-up when its directory is on ``PYTHONPATH``; it does nothing
unless ``TRACE_CLUSTER_DIR`` is set (not a ``PTT_`` name: ``bench_cluster`` passes none of those to
its servers) and the process is ``ptt server``. Then it wraps, by name, the
places a floor request and a voice frame pass (the server's socket read and sends, the fan-out,
``Bus.send_all`` and the bus callback, nats-py's socket read and its flusher's write; the core's
``receive_datagram``, the routing's ``receive``, ``ClusterNode.flush``) to append
``(time.monotonic(), tag, info)`` to a list, written as JSON to ``TRACE_CLUSTER_DIR/<node>.json``
when the process exits; the info of a wrapped method's points and of the bus callback's end is
the thread's CPU time (``time.thread_time``), so a leg's CPU shows beside its wall time. The clock is the machine's monotonic clock, the same in every process,
so the bench lines the legs up across processes. A renamed method fails the start loudly.
"""

from __future__ import annotations

import atexit
import inspect
import json
import os
import sys
import time
from typing import Any

_DIR = os.environ.get("TRACE_CLUSTER_DIR")


def _kind(data: bytes) -> str:
    """``m<type>`` for a cluster message (a msgpack array), ``v`` for a voice frame."""
    if len(data) > 2 and data[0] & 0xF0 == 0x90:
        return f"m{data[2]}"
    return "v"


def _install(directory: str) -> None:
    import nats.aio.transport as ntr

    import ptt.cluster.bus as bus
    import ptt.cluster.node as cnode
    import ptt.protocol.cluster_routing as routing
    import ptt.protocol.server as pserver
    import ptt.protocol.server_floor as sfloor
    import ptt.protocol.server_outbox as outbox
    import ptt.server.app as app

    mono = time.monotonic
    trace: list[tuple[float, str, str]] = []
    node = "single"
    for i, arg in enumerate(sys.argv[:-1]):
        if arg == "--cluster":
            node = os.path.basename(os.path.dirname(sys.argv[i + 1]))
    atexit.register(lambda: json.dump(trace, open(os.path.join(directory, f"{node}.json"),
                                                  "w")))
    if os.environ.get("TRACE_CLUSTER_PROFILE"):  # cProfile the whole run, start-up included
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
        atexit.register(lambda: (profile.disable(),
                                 profile.dump_stats(os.path.join(directory, f"{node}.prof"))))

    cpu = time.thread_time  # the info of these points: this thread's CPU time, s

    def wrap(cls: Any, name: str, tag: str, after: str = "") -> None:
        f = getattr(cls, name)

        def g(*a: Any, **k: Any) -> Any:
            trace.append((mono(), tag, repr(cpu())))
            r = f(*a, **k)
            if after:
                trace.append((mono(), after, repr(cpu())))
            return r
        setattr(cls, name, g)

    wrap(app.PttServer, "_read_ready", "rd", "rd_end")
    wrap(app.PttServer, "_send_out", "send_out", "send_out_end")
    wrap(app.PttServer, "fan_out", "fan_out")
    # the finer legs: the core's and the routing's own work, the node's flush, and what a turn
    # still does after its message left (the tail, the CPU the next hop's wake-up competes with)
    wrap(pserver.ServerCore, "receive_datagram", "core_rx", "core_rx_end")
    wrap(routing.ClusterRouting, "receive", "rt_rx", "rt_rx_end")
    wrap(cnode.ClusterNode, "flush", "node_flush", "node_flush_end")
    # a turn's parts after its message left (its tail): the server's transmit, its events,
    # its timer, the reader's loop, and the collector
    wrap(app.PttServer, "_transmit", "tx", "tx_end")
    wrap(app.PttServer, "_on_event", "event", "event_end")
    wrap(app.PttServer, "_arm", "arm", "arm_end")
    wrap(app.PttServer, "_on_datagram", "dgram", "dgram_end")
    import gc

    gc.callbacks.append(lambda phase, info: trace.append(
        (mono(), f"gc_{phase}", repr(info.get("generation")))))
    wrap(routing.ClusterRouting, "_publish", "publish", "published")  # the home's news made
    wrap(outbox.Outbox, "answer", "answer", "answered")  # a request's answer sealed
    wrap(sfloor.FloorControl, "floor_events", "floor_events", "floor_events_end")
    # the peer plane: a datagram on the peer port (the wake-up, then each datagram's turn) and
    # the floor datagrams a flush sends (info: where to, then the CPU time)
    wrap(cnode.ClusterNode, "_peer_readable", "peer_rd")
    wrap(cnode.ClusterNode, "_on_peer", "peer_rx", "peer_rx_end")
    send_datagrams = cnode.ClusterNode._send_datagrams

    def traced_send_datagrams(self: Any, datagrams: Any) -> None:
        t, c = mono(), cpu()
        names = {p.addr: n for n, p in (self.peers._peers.items() if self.peers else ())}
        trace.extend((t, "peer_send", f"{names.get(a, '?')}:{c!r}") for a, _ in datagrams)
        send_datagrams(self, datagrams)
    cnode.ClusterNode._send_datagrams = traced_send_datagrams  # type: ignore[method-assign]
    send_all = bus.Bus.send_all

    def traced_send_all(self: Any, messages: Any) -> None:
        messages = list(messages)
        t, sent = mono(), self.sent
        send_all(self, messages)
        # written to the socket at once (counted sent), or queued for the writer task
        how = "direct" if self.sent - sent == len(messages) else "queued"
        trace.extend((t, "bus_send", f"{n}:{_kind(d)}:{how}") for n, d in messages)
    bus.Bus.send_all = traced_send_all  # type: ignore[method-assign]
    received = bus.Bus._received

    def traced_received(self: Any, msg: Any) -> None:
        trace.append((mono(), "bus_recv", _kind(msg.data)))
        received(self, msg)
        trace.append((mono(), "bus_done", repr(cpu())))

    async def traced_received_task(self: Any, msg: Any) -> None:  # a subscription's callback
        trace.append((mono(), "bus_recv", _kind(msg.data)))
        await received(self, msg)
    bus.Bus._received = (traced_received_task  # type: ignore[method-assign]
                         if inspect.iscoroutinefunction(received) else traced_received)
    read = ntr.TcpTransport.read

    async def traced_read(self: Any, size: int) -> bytes:
        data: bytes = await read(self, size)
        trace.append((mono(), "nats_read", ""))
        return data
    ntr.TcpTransport.read = traced_read  # type: ignore[method-assign]
    wrap(ntr.TcpTransport, "writelines", "nats_write")  # nats-py's flusher (the queued way)


if _DIR and sys.argv[1:2] == ["server"]:
    _install(_DIR)
