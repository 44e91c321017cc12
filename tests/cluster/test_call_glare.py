"""Call glare with real nodes (issue #17): ann on node a calls bob while bob on node b calls
ann, both ``ptt call --wav`` processes, each node making its own call before it hears of the
other's. The ``Call`` messages cross on the bus: the test holds them by SIGSTOPping the NATS
server of its own (the session's is shared) until both callers were told their call is open,
so the crossing happens every run, not only when two processes start within a millisecond."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptt.cluster.engines import Nats
from tests.acceptance.harness import finish, no_traceback, read_until, tone_wav
from tests.cluster.conftest import EngineStarter
from tests.cluster.test_nodes import Cluster, _start, interrupt, read_log_until

ANN_HZ = 440.0
BOB_HZ = 660.0
PAGE_S = 0.6  # each caller's page


@pytest.fixture
def bus(fresh_engines: EngineStarter) -> Nats:
    return fresh_engines.nats()


@pytest.fixture
def cluster(tmp_path: Path, bus: Nats) -> Iterator[Cluster]:
    yield from _start(tmp_path, bus)


def tone_seconds(path: Path, hz: float) -> float:
    """Seconds of ``path`` (16 kHz mono WAV) in voiced 20 ms frames whose strongest frequency
    is within 50 Hz (a frame's resolution) of ``hz``."""
    import numpy as np

    from ptt.audio.wav import read_wav

    pcm = read_wav(path)
    frames = np.frombuffer(pcm[: len(pcm) // 640 * 640], dtype="<i2").reshape(-1, 320)
    loud = frames[np.abs(frames.astype(np.int32)).max(axis=1) > 1000].astype(np.float64)
    peaks = np.argmax(np.abs(np.fft.rfft(loud * np.hanning(320), axis=1)), axis=1) * 50.0
    return float(np.count_nonzero(np.abs(peaks - hz) <= 50.0)) * 0.02


def test_two_users_calling_each_other_at_once_from_two_nodes_get_one_call(
        cluster: Cluster, bus: Nats, tmp_path: Path) -> None:
    """Both callers are told their call is open while the bus is held (each node made its
    own, under its own id); released, every node keeps one of the two and rings the other's
    sessions into it. Both pages go through that one call: each caller's delivery line says
    the other heard it, and each user's listener (``ptt listen g``, rung into the call on
    the user's node) recorded the other's tone."""
    for node in ("a", "b"):
        read_log_until(cluster.nodes[node], "cluster node")
    heard = {u: tmp_path / f"{u}-heard.wav" for u in ("ann", "bob")}
    listeners = {u: cluster.spawn(u, n, "listen", "g", "--out", str(heard[u]))
                 for u, n in (("ann", "a"), ("bob", "b"))}
    callers = {}
    nats = bus.members[0].process
    assert nats is not None
    try:
        for p in listeners.values():
            read_until(p, "joined g", timeout=20)
        nats.send_signal(signal.SIGSTOP)
        try:
            for u, n, peer, hz in (("ann", "a", "bob", ANN_HZ), ("bob", "b", "ann", BOB_HZ)):
                callers[u] = cluster.spawn(u, n, "call", peer, "--wav",
                                           str(tone_wav(tmp_path / f"{u}.wav", PAGE_S, hz)))
            for u, peer in (("ann", "bob"), ("bob", "ann")):
                read_until(callers[u], f"call open with {peer}", timeout=20)
        finally:
            nats.send_signal(signal.SIGCONT)
        done = {u: finish(p, timeout=30) for u, p in callers.items()}
        for u, peer in (("ann", "bob"), ("bob", "ann")):
            code, out, err = done[u]
            no_traceback(err)
            assert code == 0, (u, out, err)
            assert "floor granted" in out and f"{peer} heard it" in out, (u, out, err)
    finally:
        interrupt(*callers.values(), *listeners.values())
    ann_heard, bob_heard = tone_seconds(heard["ann"], BOB_HZ), tone_seconds(heard["bob"], ANN_HZ)
    print(f"glare: ann's listener heard {ann_heard:.2f} s of bob's {PAGE_S} s, bob's "
          f"{bob_heard:.2f} s of ann's")
    assert min(ann_heard, bob_heard) >= PAGE_S - 0.15, (ann_heard, bob_heard)
