"""One datagram to many addresses in one system call: the relay's fan-out.

Forwarding a voice frame to 200 listeners with ``socket.sendto`` costs 200 Python calls, each
parsing its address tuple again. On Linux, ``sendmmsg(2)`` sends a whole batch in one call; a
:class:`FanOut` keeps the batch ready for one set of destinations (the sockaddr array and one
``mmsghdr`` per destination, all pointing at one shared ``iovec``), so a frame costs two field
assignments and one ctypes call, whatever the number of listeners.

The core hands the relay the same tuple of destinations for as long as a group's membership does
not change (``GroupEntry.targets``); :class:`FanOutCache` keys on that tuple's identity (hashing
200 address tuples per frame would cost more than the sends it saves), so a fan-out is rebuilt
only when the set changes.

Where ``sendmmsg`` is missing (not Linux, no libc, an address family it does not know), the same
API falls back to ``sendto`` per destination: :func:`make_fanout` says which one it built.

Use::

    cache = FanOutCache(sock)
    route = cache.get(targets)        # built once per destination tuple
    failed = route.send(frame)        # number of destinations the kernel refused
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any, Protocol

Addr = tuple[Any, ...]

MAX_BATCH = 1024  # UIO_MAXIOV: the kernel sends at most this many messages per sendmmsg call
CACHE_MAX = 4096  # fan-outs kept (one per talker and group membership set in use)


class _Iovec(ctypes.Structure):
    # iov_base as c_char_p: assigning a bytes object stores a pointer to its buffer, no copy
    _fields_ = [("iov_base", ctypes.c_char_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


def _load_sendmmsg() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # the process's own symbols, libc's among them: ctypes.util.find_library would run
        # ldconfig (a process) on every server start to name the library already loaded
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sendmmsg
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_SENDMMSG = _load_sendmmsg()


def available() -> bool:
    """True when this platform's libc has ``sendmmsg`` (Linux)."""
    return _SENDMMSG is not None


class FanOut(Protocol):
    """Sends one datagram to a fixed list of destinations."""

    targets: tuple[Addr, ...]

    def send(self, data: bytes) -> int:
        """Send ``data`` to every destination; returns how many the kernel refused."""
        ...


class SendtoFanOut:
    """The portable fan-out: ``sendto`` per destination."""

    def __init__(self, sock: socket.socket, targets: tuple[Addr, ...]) -> None:
        self.targets = targets
        self._sendto = sock.sendto

    def send(self, data: bytes) -> int:
        failed = 0
        sendto = self._sendto
        for t in self.targets:
            try:
                sendto(data, t)
            except OSError:  # a full send buffer or a vanished route: drop, as UDP would
                failed += 1
        return failed


_SIN = struct.Struct("=H2s4s8x")  # sockaddr_in: family (host order), port and address (network)
_SIN6 = struct.Struct("=H2sI16sI")  # sockaddr_in6: family, port, flowinfo, address, scope id


def _sockaddr(family: int, addr: Addr) -> bytes:
    """The C sockaddr for ``addr``; ValueError for what this module does not encode."""
    host, port = addr[0], addr[1]
    if family == socket.AF_INET and len(addr) == 2:
        return _SIN.pack(socket.AF_INET, port.to_bytes(2, "big"),
                         socket.inet_pton(socket.AF_INET, host))
    if family == socket.AF_INET6 and len(addr) == 4:
        if "%" in host:
            raise ValueError("scoped IPv6 text address")
        return _SIN6.pack(socket.AF_INET6, port.to_bytes(2, "big"), socket.htonl(addr[2]),
                          socket.inet_pton(socket.AF_INET6, host), addr[3])
    raise ValueError(f"cannot encode {addr!r} for family {family}")


class MmsgFanOut:
    """The Linux fan-out: one ``sendmmsg`` call sends the frame to a batch of destinations."""

    def __init__(self, sock: socket.socket, targets: tuple[Addr, ...]) -> None:
        if _SENDMMSG is None:
            raise OSError(errno.ENOSYS, "sendmmsg is not available")
        self.targets = targets
        self._fd = sock.fileno()
        self._sock = sock  # the fd stays ours for as long as this fan-out lives
        n = len(targets)
        self._n = n
        family = sock.family
        raw = [_sockaddr(family, t) for t in targets]
        # one buffer for every sockaddr, kept alive with the fan-out: msg_name points into it
        self._names = ctypes.create_string_buffer(b"".join(raw))
        self._iov = _Iovec()
        self._msgs = (_Mmsghdr * max(1, n))()
        iov_ptr = ctypes.pointer(self._iov)
        at = ctypes.addressof(self._names)
        for m, name in zip(self._msgs, raw):
            h = m.msg_hdr
            h.msg_name = at
            h.msg_namelen = len(name)
            at += len(name)
            h.msg_iov = iov_ptr
            h.msg_iovlen = 1
        self._base = ctypes.addressof(self._msgs)
        self._size = ctypes.sizeof(_Mmsghdr)

    def send(self, data: bytes) -> int:
        n = self._n
        if not n:
            return 0
        iov = self._iov
        iov.iov_base = data  # points at the bytes' own buffer; `data` outlives the call
        iov.iov_len = len(data)
        sent = _SENDMMSG(self._fd, self._base, min(n, MAX_BATCH), 0)
        if sent == n:
            return 0  # the common case: one call, every destination
        return self._finish(max(sent, 0) if sent >= 0 else -1, n)

    def _finish(self, sent: int, n: int) -> int:
        """The rest after a short batch: a message the kernel refused is skipped and counted,
        as ``sendto`` would have raised for it; bounded by the number of destinations."""
        failed = 0
        done = 0
        for _ in range(n + 1):
            if sent < 0:
                err = ctypes.get_errno()
                if err == errno.EINTR:
                    sent = 0
                else:
                    failed += 1
                    done += 1  # skip the message that failed
            else:
                done += sent
            if done >= n:
                break
            sent = _SENDMMSG(self._fd, self._base + done * self._size,
                             min(n - done, MAX_BATCH), 0)
        return failed


def make_fanout(sock: socket.socket, targets: tuple[Addr, ...],
                use_mmsg: bool = True) -> FanOut:
    """The fastest fan-out that can send to ``targets`` from ``sock``."""
    if use_mmsg and _SENDMMSG is not None:
        try:
            return MmsgFanOut(sock, targets)
        except (ValueError, OSError):
            pass  # an address the sockaddr encoder does not know: sendto parses it itself
    return SendtoFanOut(sock, targets)


class FanOutCache:
    """Fan-outs by the identity of the core's cached destination tuple.

    ``split_last(addr)``, when given, says that the tuple's last address is not a unicast
    listener (the relay's multicast bridge): the fan-out leaves it out and keeps it as
    ``Route.extra`` for the caller. Holding the tuple in the entry keeps its ``id`` from being
    reused while the entry lives, so an ``is`` check after the lookup is exact."""

    def __init__(self, sock: socket.socket, use_mmsg: bool | None = None,
                 split_last: Callable[[Addr], bool] | None = None,
                 max_entries: int = CACHE_MAX) -> None:
        self._sock = sock
        self.use_mmsg = (available() and not env_disabled()) if use_mmsg is None else use_mmsg
        self._split_last = split_last
        self._max = max_entries
        self._entries: dict[int, tuple[tuple[Addr, ...], Route]] = {}

    def get(self, targets: tuple[Addr, ...]) -> Route:
        hit = self._entries.get(id(targets))
        if hit is not None and hit[0] is targets:
            return hit[1]
        if len(self._entries) >= self._max:
            self._entries.clear()  # membership churn: old sets are stale anyway
        body, extra = targets, None
        if targets and self._split_last is not None and self._split_last(targets[-1]):
            body, extra = targets[:-1], targets[-1]
        route = Route(make_fanout(self._sock, body, self.use_mmsg), extra)
        self._entries[id(targets)] = (targets, route)
        return route

    def clear(self) -> None:
        """Forget every fan-out (the split rule changed: the bridge opened or closed one)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class Route:
    """A cached fan-out, the number of unicast destinations and the address left out."""

    __slots__ = ("count", "extra", "fanout", "send")

    def __init__(self, fanout: FanOut, extra: Addr | None) -> None:
        self.fanout = fanout
        self.send = fanout.send  # bound once: the hot path calls route.send(data)
        self.count = len(fanout.targets)
        self.extra = extra


def env_disabled() -> bool:
    """``PTT_NO_SENDMMSG=1`` forces the portable path (comparisons, odd kernels)."""
    return os.environ.get("PTT_NO_SENDMMSG", "") not in ("", "0")
