"""IPv4 multicast sockets for LAN voice, and the checks that keep multicast where it belongs.

Voice in a multicast group travels to the group's address (``239.255.x.y`` by default, TTL 1) on
one configured interface. Before a socket joins or sends, :func:`check_multicast` makes sure that
the interface exists and that the routing table sends the group's address out of that interface;
otherwise it raises :class:`~ptt.errors.NetError` with one line saying what to do::

    opts = MulticastOptions(interface="127.0.0.1", ttl=1)   # the defaults: loopback only
    iface = check_multicast("239.255.0.1", opts)             # NetError if no interface/route
    rx = open_member_socket("239.255.0.1", 7802, iface)     # joined, non-blocking
    tx = open_sender_socket(iface, opts.ttl)                 # IP_MULTICAST_IF/TTL/LOOP set

The route check is what makes the loopback default safe: on an ordinary machine the group's
address routes out of the default route's interface (``eth0``), not ``lo``, so nothing is sent
unless someone added ``ip route add 224.0.0.0/4 dev lo`` (as the tests do, inside a network
namespace of their own) or named the LAN interface.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from ptt.errors import NetError

__all__ = [
    "DEFAULT_INTERFACE",
    "DEFAULT_TTL",
    "Interface",
    "MulticastOptions",
    "check_multicast",
    "open_member_socket",
    "open_sender_socket",
    "resolve_interface",
    "route_interface",
]

DEFAULT_INTERFACE = "127.0.0.1"  # loopback: multicast stays on this machine, if routed at all
DEFAULT_TTL = 1  # one LAN segment; routers do not forward it
ROUTE_TABLE = Path("/proc/net/route")  # per network namespace
RCVBUF = 1 << 20
_SIOCGIFADDR = 0x8915
_IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
_RTF_UP = 0x1


@dataclass(frozen=True, slots=True)
class MulticastOptions:
    """A client's or server's multicast settings.

    ``interface`` is an IPv4 address of this machine or an interface name (``eth0``, ``lo``);
    ``enabled=False`` keeps every group on the relay, whatever its mode.
    """

    interface: str = DEFAULT_INTERFACE
    ttl: int = DEFAULT_TTL
    enabled: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.ttl <= 255:
            raise ValueError(f"multicast TTL must be 0-255, not {self.ttl}")


@dataclass(frozen=True, slots=True)
class Interface:
    """A resolved interface: its name and the IPv4 address multicast leaves from."""

    name: str
    address: str


def _if_address(name: str) -> str | None:
    """The primary IPv4 address of interface ``name`` (SIOCGIFADDR), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(res[20:24])


def resolve_interface(spec: str) -> Interface:
    """The interface named by ``spec`` (an address or a name); NetError if there is none."""
    names = [n for _, n in socket.if_nameindex()]
    try:
        addr = str(ipaddress.IPv4Address(spec))
    except ValueError:
        if spec not in names:
            raise NetError(f"no network interface named '{spec}' (multicast interface): "
                           f"use one of {', '.join(names)}, or relay mode") from None
        found = _if_address(spec)
        if found is None:
            raise NetError(f"network interface '{spec}' has no IPv4 address: "
                           f"multicast needs one, or use relay mode") from None
        return Interface(spec, found)
    for name in names:
        if _if_address(name) == addr:
            return Interface(name, addr)
    raise NetError(f"no network interface has the address {addr} (multicast interface): "
                   f"name one of this machine's addresses, or use relay mode")


def route_interface(dest: str, table: str | None = None) -> str | None:
    """The interface the main routing table sends ``dest`` out of (longest prefix), or None.

    ``table`` is the text of ``/proc/net/route`` (read when not given)."""
    if table is None:
        try:
            table = ROUTE_TABLE.read_text()
        except OSError:
            return None
    target = int(ipaddress.IPv4Address(dest))
    best: tuple[int, int, str] | None = None  # (prefix length, -metric, interface)
    for line in table.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 8:
            continue
        try:
            flags = int(cols[3], 16)
            net = _le32(cols[1])
            mask = _le32(cols[7])
            metric = int(cols[6])
        except ValueError:
            continue
        if not flags & _RTF_UP or target & mask != net:
            continue
        key = (mask.bit_count(), -metric, cols[0])
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best else None


def _le32(hexword: str) -> int:
    """A /proc/net/route address (host-order hex of the network-order bytes) as an int."""
    return int.from_bytes(int(hexword, 16).to_bytes(4, "little"), "big")


def check_multicast(group: str, opts: MulticastOptions, table: str | None = None) -> Interface:
    """The interface to use for ``group``; NetError unless the route for it leaves by that one."""
    iface = resolve_interface(opts.interface)
    via = route_interface(group, table)
    if via != iface.name:
        where = f"it would leave by {via}" if via else "there is none"
        raise NetError(f"no route for multicast {group} via {iface.name} ({where}): add one "
                       f"(ip route add 224.0.0.0/4 dev {iface.name}) or use relay mode")
    return iface


def open_member_socket(group: str, port: int, iface: Interface) -> socket.socket:
    """A non-blocking socket that receives ``group:port`` on ``iface``.

    Bound to the group's address (so it sees only that group) with SO_REUSEADDR, so that several
    members, and the server, may listen on one machine."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        s.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
        s.bind((group, port))
        mreq = socket.inet_aton(group) + socket.inet_aton(iface.address)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        s.setblocking(False)
    except OSError as exc:
        s.close()
        raise NetError(f"cannot join multicast {group}:{port} on {iface.name}: "
                       f"{exc.strerror or exc}") from None
    return s


def configure_sender(s: socket.socket, iface: Interface, ttl: int, loop: bool = True) -> None:
    """Make ``s`` send multicast out of ``iface`` with ``ttl``; ``loop`` delivers copies to
    members on this machine too (needed when several members share one machine)."""
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface.address))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(loop))


def open_sender_socket(iface: Interface, ttl: int, loop: bool = True) -> socket.socket:
    """A non-blocking socket bound to ``iface``'s address that sends multicast out of it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((iface.address, 0))
        configure_sender(s, iface, ttl, loop)
        s.setblocking(False)
    except OSError as exc:
        s.close()
        raise NetError(f"cannot send multicast from {iface.address}: {exc.strerror or exc}") from None
    return s
