"""Seeded network impairments for simulations, tests and benchmarks: loss, delay, reorder, copies.

Everything here is pure given the ``random.Random`` the caller passes in, so a seed reproduces a run
exactly. A :class:`Channel` combines one loss model, one delay model, reordering and duplication,
and turns a packet's send time into the arrival times of its copies (none when it is lost)::

    rng = random.Random(7)
    loss = GilbertElliott.from_mean(0.10, burst=3.0)
    channel = Channel(rng, loss=loss, delay=UniformDelay(0.0, 0.040))
    arrivals = channel.run([(i * 0.020, datagram) for i, datagram in enumerate(datagrams)])
    # [(arrival_time, datagram), ...] sorted by arrival time

Times are in seconds. These models stand in for ``tc netem``, which the test machines lack.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

__all__ = [
    "LossModel",
    "NoLoss",
    "BernoulliLoss",
    "GilbertElliott",
    "DelayModel",
    "ConstantDelay",
    "UniformDelay",
    "NormalDelay",
    "Channel",
]

T = TypeVar("T")


class LossModel(Protocol):
    def lost(self, rng: random.Random) -> bool:
        """Decide the fate of the next packet: True when it is dropped."""
        ...


class DelayModel(Protocol):
    def delay(self, rng: random.Random) -> float:
        """One-way delay in seconds for the next packet."""
        ...


@dataclass(slots=True)
class NoLoss:
    def lost(self, rng: random.Random) -> bool:
        return False


@dataclass(slots=True)
class BernoulliLoss:
    """Independent random loss with probability ``p``."""

    p: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"loss probability {self.p} outside 0..1")

    def lost(self, rng: random.Random) -> bool:
        return rng.random() < self.p


@dataclass(slots=True)
class GilbertElliott:
    """Two-state bursty loss: a good and a bad state, each with its own loss probability.

    ``p_gb`` is the chance of moving from good to bad after a packet, ``p_bg`` back. With
    ``loss_good=0`` and ``loss_bad=1`` (the simple Gilbert model) losses come in bursts of mean
    length ``1 / p_bg`` packets and the average loss is ``p_gb / (p_gb + p_bg)``.
    """

    p_gb: float
    p_bg: float
    loss_good: float = 0.0
    loss_bad: float = 1.0
    bad: bool = field(default=False)

    def __post_init__(self) -> None:
        for name in ("p_gb", "p_bg", "loss_good", "loss_bad"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}={v} outside 0..1")
        if self.p_gb + self.p_bg == 0:
            raise ValueError("p_gb and p_bg cannot both be zero")

    @classmethod
    def from_mean(cls, loss: float, burst: float) -> GilbertElliott:
        """Simple Gilbert model with average ``loss`` in bursts of mean length ``burst`` packets."""
        if not 0.0 < loss < 1.0 or burst < 1.0:
            raise ValueError("need 0 < loss < 1 and burst >= 1")
        p_bg = 1.0 / burst
        return cls(p_gb=loss * p_bg / (1.0 - loss), p_bg=p_bg)

    @property
    def mean_loss(self) -> float:
        """Long-run loss fraction."""
        pi_bad = self.p_gb / (self.p_gb + self.p_bg)
        return pi_bad * self.loss_bad + (1.0 - pi_bad) * self.loss_good

    def lost(self, rng: random.Random) -> bool:
        dropped = rng.random() < (self.loss_bad if self.bad else self.loss_good)
        # the state moves after the packet, so a burst starts with the packet after the move
        if self.bad:
            self.bad = rng.random() >= self.p_bg
        else:
            self.bad = rng.random() < self.p_gb
        return dropped


@dataclass(slots=True)
class ConstantDelay:
    seconds: float = 0.0

    def delay(self, rng: random.Random) -> float:
        return self.seconds


@dataclass(slots=True)
class UniformDelay:
    """``base`` plus a uniform jitter in ``[0, spread)``; with 20 ms frames and a spread above
    20 ms, packets overtake one another on their own."""

    base: float
    spread: float

    def delay(self, rng: random.Random) -> float:
        return self.base + rng.random() * self.spread


@dataclass(slots=True)
class NormalDelay:
    """``base`` plus normal jitter of deviation ``sigma``, clipped to ``[base, base + limit]``."""

    base: float
    sigma: float
    limit: float

    def delay(self, rng: random.Random) -> float:
        return self.base + min(max(rng.gauss(0.0, self.sigma), 0.0), self.limit)


@dataclass(slots=True)
class Channel:
    """A path from one sender to one listener.

    ``reorder`` is the chance that a packet is held back an extra ``reorder_delay`` seconds (so the
    next ones overtake it); ``duplicate`` the chance that a second copy arrives ``duplicate_delay``
    after the first. Loss is decided before everything else, so a lost packet has no copies.
    """

    rng: random.Random
    loss: LossModel = field(default_factory=NoLoss)
    delay: DelayModel = field(default_factory=ConstantDelay)
    reorder: float = 0.0
    reorder_delay: float = 0.045
    duplicate: float = 0.0
    duplicate_delay: float = 0.002

    def transmit(self, send_time: float) -> list[float]:
        """Arrival times of the copies of one packet sent at ``send_time`` (empty when lost)."""
        if self.loss.lost(self.rng):
            return []
        arrival = send_time + self.delay.delay(self.rng)
        if self.reorder and self.rng.random() < self.reorder:
            arrival += self.reorder_delay
        arrivals = [arrival]
        if self.duplicate and self.rng.random() < self.duplicate:
            arrivals.append(arrival + self.duplicate_delay)
        return arrivals

    def run(self, sent: Sequence[tuple[float, T]]) -> list[tuple[float, T]]:
        """``(send_time, item)`` pairs in send order -> ``(arrival_time, item)`` by arrival."""
        out: list[tuple[float, int, T]] = []
        for order, (t, item) in enumerate(sent):
            for arrival in self.transmit(t):
                out.append((arrival, order, item))
        out.sort(key=lambda e: (e[0], e[1]))
        return [(arrival, item) for arrival, _, item in out]
