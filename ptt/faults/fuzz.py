"""Datagram fuzzing: a seeded mutation engine for hostile input to a ptt server, sans-I/O.

The engine turns a *corpus* (datagrams captured from a real session, both directions) and the
*targets* an attacker could know (the live group ids, session ids, burst ids, names) into an
endless, reproducible stream of hostile datagrams::

    fuzzer = Fuzzer(corpus, Targets(group_ids=(7,), session_ids=(0x1234,)), seed=1)
    for kind, data in fuzzer.take(1000):
        sock.sendto(data, server)
    fuzzer.counts          # how many of each Mutation were made

Mutations (:class:`Mutation`): random bytes of random sizes (a few up to ``FuzzConfig.large``),
bit flips, truncation, extension, splices of two corpus datagrams, verbatim replays, and
header-aware forgeries that get past the first byte: plain msgpack control messages with mutated
fields, wrong types, huge integers and deep nesting; ``'V'`` voice headers naming the real group,
session and burst; ``'S'`` sealed headers with real and random session ids and sequence numbers.
Header-aware forgeries matter most: random bytes almost never start with a valid magic, so
they only test the first branch of the server's receive path.

Everything comes from one ``random.Random(seed)``: the same corpus, targets and seed give the same
datagrams, so a datagram that upsets the server is found again by its index. No I/O, no clock.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import msgpack

from ptt.crypto.channel import HEADER as SEALED_HEADER
from ptt.crypto.channel import KEEPALIVE_MAGIC, SEALED_MAGIC
from ptt.protocol.messages import PROTOCOL_VERSION
from ptt.wire.voice import HEADER as VOICE_HEADER
from ptt.wire.voice import VOICE_MAGIC

__all__ = [
    "MAX_DATAGRAM",
    "FuzzConfig",
    "Fuzzer",
    "Mutation",
    "Targets",
    "classify",
]

MAX_DATAGRAM = 65_000  # below IPv4's 65,507-byte UDP ceiling, so every datagram is sendable
MSG_TYPES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 20, 21, 22, 23, 24, 40, 41, 42, 43, 44, 45, 46, 47, 48,
             60, 61, 62, 80, 81)  # ptt.protocol.messages.MsgType values
# integers at the edges of every msgpack encoding and of the fields' natural ranges
EDGE_INTS = (0, 1, -1, 127, 128, 255, 256, 65_535, 65_536, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
             2**63 - 1, -(2**63), 2**64 - 1, -(2**31), -129)
ADMIN_OPS = ("user.add", "user.remove", "user.list", "group.create", "group.delete",
             "group.add", "group.remove", "group.update", "group.show", "group.list",
             "member.voice_path", "keys.register", "keys.grant", "")


class Mutation(Enum):
    """How one fuzz datagram was made."""

    RANDOM = "random"  # random bytes, 0..FuzzConfig.max_size
    RANDOM_LARGE = "random_large"  # random bytes up to FuzzConfig.large
    BIT_FLIP = "bit_flip"  # a corpus datagram with 1-8 bits flipped
    TRUNCATE = "truncate"  # a corpus datagram cut short
    EXTEND = "extend"  # a corpus datagram with random bytes appended
    SPLICE = "splice"  # the head of one corpus datagram, the tail of another
    REPLAY = "replay"  # a corpus datagram, verbatim
    CONTROL = "control"  # a plain msgpack control message with mutated fields
    NESTING = "nesting"  # deeply nested msgpack arrays and maps
    VOICE = "voice"  # a voice header naming real groups, sessions and bursts
    SEALED = "sealed"  # a sealed-channel header with real or random session id and seq


DEFAULT_WEIGHTS: dict[Mutation, float] = {
    Mutation.RANDOM: 18,
    Mutation.RANDOM_LARGE: 0.1,
    Mutation.BIT_FLIP: 14,
    Mutation.TRUNCATE: 7,
    Mutation.EXTEND: 6,
    Mutation.SPLICE: 8,
    Mutation.REPLAY: 8,
    Mutation.CONTROL: 16,
    Mutation.NESTING: 1.9,
    Mutation.VOICE: 11,
    Mutation.SEALED: 10,
}


@dataclass(frozen=True, slots=True)
class Targets:
    """What a LAN attacker could have learnt; header-aware forgeries name these."""

    group_ids: tuple[int, ...] = ()
    session_ids: tuple[int, ...] = ()
    burst_ids: tuple[int, ...] = ()
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FuzzConfig:
    """Sizes and the mix of mutations (weights need not sum to anything)."""

    max_size: int = 1_500  # random datagrams: 0..max_size bytes
    large: int = MAX_DATAGRAM  # RANDOM_LARGE: max_size..large bytes
    max_depth: int = 4_000  # NESTING: up to this many levels
    weights: dict[Mutation, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    def __post_init__(self) -> None:
        if not 0 <= self.max_size <= self.large <= MAX_DATAGRAM:
            raise ValueError(f"need 0 <= max_size <= large <= {MAX_DATAGRAM}")
        if not self.weights or min(self.weights.values()) < 0 or sum(self.weights.values()) <= 0:
            raise ValueError("weights must be non-negative and not all zero")


def _unpack(data: bytes) -> Any:
    """The msgpack value of ``data``, or None: a corpus may hold anything."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:  # noqa: BLE001 - msgpack raises many types; all mean "not a template"
        return None


def classify(data: bytes) -> str:
    """"voice", "sealed", "control" (a msgpack array) or "other", by the first byte."""
    if not data:
        return "other"
    b = data[0]
    if b == VOICE_MAGIC:
        return "voice"
    if b == SEALED_MAGIC or b == KEEPALIVE_MAGIC:
        return "sealed"
    if 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
        return "control"
    return "other"


class Fuzzer:
    """An endless, seeded stream of hostile datagrams made from ``corpus`` and ``targets``.

    ``corpus`` may be empty: the corpus-based mutations then fall back to random bytes. Every
    datagram is at most ``config.large`` bytes. :meth:`next` returns one ``(Mutation, bytes)``;
    :meth:`take` yields ``n`` of them; :attr:`counts` tallies what was made.
    """

    def __init__(self, corpus: Sequence[bytes], targets: Targets = Targets(), seed: int = 0,
                 config: FuzzConfig | None = None) -> None:
        self.config = config or FuzzConfig()
        self.targets = targets
        self.rng = random.Random(seed)
        self.corpus = [bytes(d) for d in corpus if len(d) <= self.config.large]
        # the decoded plain control messages of the corpus: templates for CONTROL
        self._templates: list[list[Any]] = []
        for d in self.corpus:
            if classify(d) == "control":
                items = _unpack(d)
                if isinstance(items, list) and len(items) >= 2:
                    self._templates.append(items)
        self._sealed = [d for d in self.corpus if classify(d) == "sealed"]
        self._voice = [d for d in self.corpus if classify(d) == "voice"]
        weights = {k: v for k, v in self.config.weights.items() if v > 0}
        self._kinds = list(weights)
        self._cum: list[float] = []
        total = 0.0
        for k in self._kinds:
            total += weights[k]
            self._cum.append(total)
        self.counts: dict[Mutation, int] = {k: 0 for k in Mutation}
        self._make = {
            Mutation.RANDOM: self._random,
            Mutation.RANDOM_LARGE: self._random_large,
            Mutation.BIT_FLIP: self._bit_flip,
            Mutation.TRUNCATE: self._truncate,
            Mutation.EXTEND: self._extend,
            Mutation.SPLICE: self._splice,
            Mutation.REPLAY: self._replay,
            Mutation.CONTROL: self._control,
            Mutation.NESTING: self._nesting,
            Mutation.VOICE: self._voice_forgery,
            Mutation.SEALED: self._sealed_forgery,
        }

    # --- public -------------------------------------------------------------------------------

    def next(self) -> tuple[Mutation, bytes]:
        """One hostile datagram and how it was made."""
        kind = self.rng.choices(self._kinds, cum_weights=self._cum)[0]
        data = self._make[kind]()
        if len(data) > self.config.large:
            data = data[: self.config.large]
        self.counts[kind] += 1
        return kind, data

    def take(self, n: int) -> Iterator[tuple[Mutation, bytes]]:
        """``n`` datagrams, lazily."""
        for _ in range(n):
            yield self.next()

    # --- helpers ------------------------------------------------------------------------------

    def _bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def _pick(self) -> bytes | None:
        return self.rng.choice(self.corpus) if self.corpus else None

    def _int(self) -> int:
        r = self.rng.random()
        if r < 0.4:
            return self.rng.choice(EDGE_INTS)
        if r < 0.7:
            return self.rng.randrange(0, 1 << 32)
        if r < 0.8:
            return -self.rng.randrange(0, 1 << 63)
        return self.rng.randrange(0, 1 << 64)

    def _sid(self) -> int:
        t = self.targets.session_ids
        return self.rng.choice(t) if t and self.rng.random() < 0.6 else self._int() & 0xFFFFFFFF

    def _gid(self) -> int:
        t = self.targets.group_ids
        return self.rng.choice(t) if t and self.rng.random() < 0.7 else self._int() & 0xFFFFFFFF

    def _name(self, names: tuple[str, ...]) -> str:
        r = self.rng.random()
        if names and r < 0.5:
            return self.rng.choice(names)
        if r < 0.6:
            return ""
        if r < 0.7:
            return "x" * self.rng.choice((1_000, 1_001, 4_000))
        if r < 0.8:
            return "\u00e9\u4e2d\U0001f600" * self.rng.randrange(1, 50)
        return self._bytes(self.rng.randrange(1, 40)).hex()

    def _value(self, depth: int = 0) -> Any:
        """A msgpack value of any type, for a field that expects something else (or the same)."""
        r = self.rng.randrange(13)
        if r <= 2:
            return self._int()
        if r == 3:
            return self.rng.choice((0.0, -0.0, 1e308, float("inf"), float("nan"), -1.5))
        if r == 4:
            return self._name(self.targets.users + self.targets.groups)
        if r == 5:
            return self._bytes(self.rng.choice((0, 1, 16, 32, 64, 4_096, 4_097)))
        if r == 6:
            return None
        if r == 7:
            return self.rng.random() < 0.5
        if r == 8:
            return self._sid()
        if r == 9 and depth < 3:
            return [self._value(depth + 1) for _ in range(self.rng.randrange(0, 6))]
        if r == 10 and depth < 3:
            return {self._name(("user", "group", "name", "users", "role")): self._value(depth + 1)
                    for _ in range(self.rng.randrange(0, 4))}
        if r == 11:
            return self.rng.choice(MSG_TYPES)
        return self._gid()

    # --- the mutations ------------------------------------------------------------------------

    def _random(self) -> bytes:
        r = self.rng.random()
        if r < 0.1:  # the sizes the server's ceilings are made of
            n = self.rng.choice((0, 1, 2, 5, 13, 14, 21, 22, 29, 30, 127, 128, 511, 512, 513,
                                 1_399, 1_400, 1_401))
        else:
            n = self.rng.randrange(0, self.config.max_size + 1)
        n = min(n, self.config.max_size)
        data = self._bytes(n)
        if n and self.rng.random() < 0.3:  # a valid first byte gets past the first branch
            first = self.rng.choice((VOICE_MAGIC, SEALED_MAGIC, KEEPALIVE_MAGIC, 0x94, 0x95, 0x96,
                                     0xDC, 0xDD))
            data = bytes((first,)) + data[1:]
        return data

    def _random_large(self) -> bytes:
        lo = self.config.max_size
        return self._bytes(self.rng.randrange(lo, self.config.large + 1))

    def _bit_flip(self) -> bytes:
        base = self._pick()
        if not base:
            return self._random()
        buf = bytearray(base)
        for _ in range(self.rng.randrange(1, 9)):
            # headers decide where a datagram goes: flip there half the time
            limit = len(buf) if self.rng.random() < 0.5 else min(len(buf), 24)
            i = self.rng.randrange(limit)
            buf[i] ^= 1 << self.rng.randrange(8)
        return bytes(buf)

    def _truncate(self) -> bytes:
        base = self._pick()
        if not base:
            return self._random()
        return base[: self.rng.randrange(len(base))]

    def _extend(self) -> bytes:
        base = self._pick()
        if base is None:
            return self._random()
        n = self.rng.choice((1, 2, 8, 16, self.rng.randrange(1, self.config.max_size + 1)))
        extra = self._bytes(n) if self.rng.random() < 0.7 else base * (1 + n // max(1, len(base)))
        return (base + extra)[: max(len(base), self.config.max_size)]

    def _splice(self) -> bytes:
        a, b = self._pick(), self._pick()
        if a is None or b is None:
            return self._random()
        return a[: self.rng.randrange(len(a) + 1)] + b[self.rng.randrange(len(b) + 1):]

    def _replay(self) -> bytes:
        base = self._pick()
        return base if base is not None else self._random()

    def _control(self) -> bytes:
        if self._templates and self.rng.random() < 0.6:
            items = list(self.rng.choice(self._templates))
            for _ in range(self.rng.randrange(1, 4)):
                r = self.rng.random()
                i = self.rng.randrange(len(items))
                if r < 0.6:
                    items[i] = self._value()
                elif r < 0.75:
                    items.append(self._value())
                elif r < 0.9 and len(items) > 2:
                    del items[self.rng.randrange(2, len(items))]
                else:  # keep the shape, swap the type: a message of one kind with another's fields
                    items[1] = self.rng.choice(MSG_TYPES)
        else:
            version = PROTOCOL_VERSION if self.rng.random() < 0.9 else self._value()
            mtype = self.rng.choice(MSG_TYPES) if self.rng.random() < 0.9 else self._value()
            items = [version, mtype, self._int() & 0xFFFFFFFF, self._sid()]
            items += [self._value() for _ in range(self.rng.randrange(0, 6))]
        try:
            return msgpack.packb(items, use_bin_type=True)
        except (OverflowError, ValueError, TypeError):  # e.g. an int beyond 64 bits
            return self._random()

    def _nesting(self) -> bytes:
        depth = self.rng.randrange(1, self.config.max_depth + 1)
        r = self.rng.random()
        if r < 0.4:
            body = b"\x91" * depth + b"\xc0"  # [[[...[nil]...]]]
        elif r < 0.7:
            body = b"\x81\xa1k" * depth + b"\xc0"  # {"k": {"k": ...}}
        else:  # the server's own framing around the nest: [1, JOIN, txn, sid, <nest>]
            body = bytes((0x95, PROTOCOL_VERSION, self.rng.choice(MSG_TYPES), 0x01, 0x02))
            body += b"\x91" * depth + b"\x00"
        if self.rng.random() < 0.3:
            body = body[: self.rng.randrange(len(body))]  # never closed
        return body[: self.config.large]

    def _voice_forgery(self) -> bytes:
        if self._voice and self.rng.random() < 0.3:  # a real frame with a new route or seq
            buf = bytearray(self.rng.choice(self._voice))
            if len(buf) >= VOICE_HEADER.size:
                field_at = self.rng.choice((2, 3, 4, 8, 12, 16))
                buf[field_at] ^= 1 << self.rng.randrange(8)
                return bytes(buf)
        t = self.targets
        version = 1 if self.rng.random() < 0.9 else self.rng.randrange(256)
        flags = self.rng.choice((0, 1, 2, 4, 5, 6, 7, 0xFF, self.rng.randrange(256)))
        burst = (self.rng.choice(t.burst_ids) if t.burst_ids and self.rng.random() < 0.6
                 else self._int() & 0xFFFFFFFF)
        seq = self.rng.choice((0, 1, 2, 0xFFFF, self.rng.randrange(1 << 16)))
        header = VOICE_HEADER.pack(VOICE_MAGIC, version, flags, self.rng.randrange(256),
                                   self._gid(), self._sid(), burst, seq,
                                   self.rng.randrange(1 << 32))
        n = self.rng.choice((0, 1, 16, 60, 80, 1_378, 1_379, self.rng.randrange(0, 1_500)))
        data = header + self._bytes(n)
        if self.rng.random() < 0.05:
            data = data[: self.rng.randrange(VOICE_HEADER.size)]  # a header cut short
        return data

    def _sealed_forgery(self) -> bytes:
        if self._sealed and self.rng.random() < 0.4:  # a real sealed datagram, altered
            buf = bytearray(self.rng.choice(self._sealed))
            r = self.rng.random()
            if r < 0.3 and len(buf) >= SEALED_HEADER.size:  # another sequence number
                buf[6:14] = self.rng.choice(
                    (0, 1, 2**63, 2**64 - 1, self.rng.randrange(1 << 64))).to_bytes(8, "big")
            elif r < 0.6 and len(buf) > SEALED_HEADER.size:  # one bit of ciphertext or tag
                i = self.rng.randrange(SEALED_HEADER.size, len(buf))
                buf[i] ^= 1 << self.rng.randrange(8)
            elif r < 0.8 and len(buf) >= SEALED_HEADER.size:  # another session's id
                buf[2:6] = self._sid().to_bytes(4, "big")
            else:
                buf = buf[: self.rng.randrange(len(buf) + 1)]
            return bytes(buf)
        version = 1 if self.rng.random() < 0.9 else self.rng.randrange(256)
        seq = self.rng.choice((0, 1, 2, 1023, 1024, 2**63, 2**64 - 1, self.rng.randrange(1 << 64)))
        magic = KEEPALIVE_MAGIC if self.rng.random() < 0.3 else SEALED_MAGIC
        header = SEALED_HEADER.pack(magic, version, self._sid(), seq)
        n = self.rng.choice((0, 1, 15, 16, 17, 40, 100, self.rng.randrange(0, 1_500)))
        return header + self._bytes(n)
