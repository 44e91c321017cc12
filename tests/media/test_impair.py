from __future__ import annotations

import random

import pytest

from ptt.media.impair import (
    BernoulliLoss,
    Channel,
    ConstantDelay,
    GilbertElliott,
    NoLoss,
    NormalDelay,
    UniformDelay,
)


def fates(model: object, n: int, seed: int = 1) -> list[bool]:
    rng = random.Random(seed)
    return [model.lost(rng) for _ in range(n)]  # type: ignore[attr-defined]


def bursts(lost: list[bool]) -> list[int]:
    out, run = [], 0
    for x in lost:
        if x:
            run += 1
        elif run:
            out.append(run)
            run = 0
    return out


def test_same_seed_same_run() -> None:
    def run(seed: int) -> list[tuple[float, int]]:
        ch = Channel(random.Random(seed), BernoulliLoss(0.2), UniformDelay(0.01, 0.04),
                     reorder=0.1, duplicate=0.1)
        return ch.run([(i * 0.02, i) for i in range(200)])

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_bernoulli_rate() -> None:
    lost = fates(BernoulliLoss(0.1), 20_000)
    assert sum(lost) / len(lost) == pytest.approx(0.1, abs=0.01)
    assert sum(bursts(lost)) / len(bursts(lost)) == pytest.approx(1 / 0.9, abs=0.05)
    with pytest.raises(ValueError):
        BernoulliLoss(1.5)


def test_gilbert_elliott_mean_and_burst_length() -> None:
    model = GilbertElliott.from_mean(0.10, burst=3.0)
    assert model.mean_loss == pytest.approx(0.10)
    lost = fates(model, 50_000)
    assert sum(lost) / len(lost) == pytest.approx(0.10, abs=0.01)
    assert sum(bursts(lost)) / len(bursts(lost)) == pytest.approx(3.0, abs=0.2)


def test_gilbert_elliott_general_states() -> None:
    model = GilbertElliott(p_gb=0.05, p_bg=0.25, loss_good=0.01, loss_bad=0.5)
    lost = fates(model, 50_000)
    assert sum(lost) / len(lost) == pytest.approx(model.mean_loss, abs=0.01)
    with pytest.raises(ValueError):
        GilbertElliott(0.0, 0.0)
    with pytest.raises(ValueError):
        GilbertElliott.from_mean(0.1, burst=0.5)


def test_no_loss_and_constant_delay() -> None:
    ch = Channel(random.Random(1), NoLoss(), ConstantDelay(0.005))
    assert ch.run([(i * 0.02, i) for i in range(5)]) == [(i * 0.02 + 0.005, i) for i in range(5)]


def test_uniform_jitter_bounds_and_reordering() -> None:
    ch = Channel(random.Random(2), delay=UniformDelay(0.002, 0.040))
    out = ch.run([(i * 0.02, i) for i in range(1000)])
    assert all(0.002 <= t - i * 0.02 < 0.042 for t, i in out)
    order = [i for _, i in out]
    assert sorted(order) == list(range(1000))
    assert order != list(range(1000))  # 40 ms of jitter on 20 ms frames reorders some


def test_normal_jitter_clipped() -> None:
    rng = random.Random(3)
    d = NormalDelay(0.010, 0.015, limit=0.030)
    values = [d.delay(rng) for _ in range(5000)]
    assert min(values) >= 0.010 and max(values) <= 0.040


def test_reorder_and_duplicate() -> None:
    ch = Channel(random.Random(4), reorder=0.2, reorder_delay=0.045, duplicate=0.1)
    out = ch.run([(i * 0.02, i) for i in range(2000)])
    seqs = [i for _, i in out]
    dups = len(seqs) - len(set(seqs))
    assert dups == pytest.approx(200, rel=0.25)
    overtaken = sum(1 for a, b in zip(seqs, seqs[1:], strict=False) if b < a)
    assert overtaken == pytest.approx(0.2 * 2000, rel=0.2)
