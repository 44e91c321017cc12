"""UDP datagrams from spoofed loopback sources, for attack tests and benchmarks (root only).

A raw IPv4 socket (``IPPROTO_RAW``: the IP header is ours) can send UDP from any 127.x.y.z
address and port to a server on loopback, and the kernel delivers it as if that host had sent
it; answers go to the spoofed address, where nobody listens. Attack tests use 127.77.0.0/16 so
nothing collides with the tests' own sockets (TESTING.md, "Spoofed sources and raw sockets")::

    with RawSender() as raw:
        raw.send(("127.77.0.1", 4000), server, payload)
        raw.sent, raw.errors

:func:`udp_packet` builds the bytes (no I/O); the UDP checksum is left 0 (none, allowed for IPv4),
the kernel fills in the IP checksum, length and id. :func:`attacker` names the k-th of up to
65,024 attacker sources.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["ATTACK_NET", "RawSender", "attacker", "udp_packet"]

ATTACK_NET = "127.77"
_IP = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")


def udp_packet(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4 header, a UDP header and ``payload``: what the raw socket sends."""
    udp_len = _UDP.size + len(payload)
    ip = _IP.pack(0x45, 0, _IP.size + udp_len, 0, 0x4000, 64, socket.IPPROTO_UDP, 0,
                  socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    return ip + _UDP.pack(src[1], dst[1], udp_len, 0) + payload


def attacker(k: int) -> str:
    """The k-th attacker address in 127.77.0.0/16 (k < 65,024; never .0 or .255)."""
    if not 0 <= k < 256 * 254:
        raise ValueError("attacker index out of range")
    return f"{ATTACK_NET}.{k // 254}.{k % 254 + 1}"


class RawSender:
    """One raw socket; ``send`` counts what went out and what the kernel refused."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sent = 0
        self.errors = 0

    def send(self, src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bool:
        try:
            self._sock.sendto(udp_packet(src, dst, payload), (dst[0], 0))
        except OSError:  # a full buffer: counted, not retried
            self.errors += 1
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RawSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
