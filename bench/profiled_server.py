"""``ptt`` under cProfile switched on and off by signals: the survivors' profile in
bench_access_failover (``--cprofile DIR``).

    python bench/profiled_server.py OUT.prof server --db ... --cluster ...

SIGUSR1 starts the profiler, SIGUSR2 stops it and writes its stats to OUT.prof (pstats). Only
the main thread is profiled (the event loop: logins, the bus's callbacks); the lease renewer
and etcd threads run untouched, where py-spy, pausing every thread per sample, slowed them
(docs/benchmarks.md). cProfile adds its own cost to every Python call, so the shares, not the
absolute times, are what it tells.
"""

from __future__ import annotations

import cProfile
import signal
import sys
from typing import Any

from ptt.cli.entry import main


def _install(out: str) -> None:
    prof = cProfile.Profile()

    def start(*_: Any) -> None:
        prof.enable()

    def stop(*_: Any) -> None:
        prof.disable()
        prof.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit("usage: profiled_server.py OUT.prof ptt-arguments...")
    _install(sys.argv[1])
    sys.argv = ["ptt", *sys.argv[2:]]
    sys.exit(main())
