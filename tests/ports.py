"""Loopback ports for servers that tests start, stop and start again on the same address.

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, where any socket of
any process (the other test worker, a client's source port) can take it between a server's stop
and its restart: "Address already in use". Ports are therefore drawn below the ephemeral range,
where the kernel never hands one out by itself, from a slice of their own for each pytest-xdist
worker, so two workers never draw the same one.
"""

from __future__ import annotations

import os
import random
import socket

_LOWEST = 20000


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _slice() -> range:
    top = max(_ephemeral_start(), _LOWEST + 2000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    width = (top - _LOWEST) // max(count, 1)
    start = _LOWEST + (index % max(count, 1)) * width
    return range(start, start + width)


def _free_port(kind: socket.SocketKind) -> int:
    ports = _slice()
    for port in random.sample(ports, min(200, len(ports))):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def free_udp_port() -> int:
    """A loopback UDP port free now, outside the ephemeral range, in this worker's slice."""
    return _free_port(socket.SOCK_DGRAM)


def free_tcp_port() -> int:
    """A loopback TCP port free now, outside the ephemeral range, in this worker's slice (the
    engines' ports: an engine member killed and started again binds the same ones)."""
    return _free_port(socket.SOCK_STREAM)
