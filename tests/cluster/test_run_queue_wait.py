"""The renewer's reading of the process's wait for a CPU (``ptt.cluster.lease.RunQueueWait``):
the same sum as reading every thread's ``schedstat`` by path, its threads' descriptors opened
once, those of ended threads closed. Linux only (no engines; ~0.1 s)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ptt.cluster.lease import RunQueueWait

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(),
                                reason="needs Linux's /proc/self/task/*/schedstat")


def _by_path() -> float:
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            total += int(Path(f"/proc/self/task/{tid}/schedstat").read_bytes().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def _spin(seconds: float) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        pass


def test_it_sums_what_each_thread_waited_and_follows_threads_that_come_and_go() -> None:
    wait = RunQueueWait()
    stop = threading.Event()
    threads = [threading.Thread(target=lambda: (_spin(0.05), stop.wait(5))) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.1)  # four threads spinning on fewer cores wait for a CPU
        before, ours, after = _by_path(), wait(), _by_path()
        assert before <= ours <= after  # a sum that only grows while no thread ends
        assert len(wait._fds) >= 4  # this thread and the three: each opened once
        assert ours == pytest.approx(wait(), abs=0.05)  # read again from the start
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    wait()  # the ended threads' descriptors are closed on the next reading
    assert set(wait._fds) == set(os.listdir("/proc/self/task"))
    wait.close()
    assert wait._fds == {}


def test_a_root_that_is_not_there_reads_zero() -> None:
    assert RunQueueWait("/nonexistent/task")() == 0.0
