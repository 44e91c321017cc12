"""The event log's CPU per line, as a survivor writes it while a dead node's clients move to it.

Each moved client's login writes two lines (``session_started`` and ``joined``). The server's
own logging set-up (``ptt.cli.logs.configure``, INFO, the text format on stderr) writes them to
stderr, which this bench points at a file as the cluster benches do; the lines are written
at once (no event loop), the thread's CPU timed.

    .venv/bin/python bench/bench_event_log.py              # 20,000 logins, ~1 s
    .venv/bin/python bench/bench_event_log.py --logins 5000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptt.cli import logs  # noqa: E402
from ptt.protocol.server import MemberJoined, ServerEvent, SessionStarted  # noqa: E402
from ptt.server.eventlog import LOGGER, EventLogger  # noqa: E402

WALL = 1_764_700_000.0  # the events' wall clock offset (2025-12-02)


def run(logins: int) -> dict[str, object]:
    events: list[ServerEvent] = []
    for i in range(logins):
        events.append(SessionStarted(f"user{i:05d}", 100_000 + i,
                                     ("127.0.0.1", 20_000 + i % 40_000)))
        events.append(MemberJoined(f"g{i // 10:04d}", f"user{i:05d}"))
    with tempfile.TemporaryFile("w+") as out:
        saved, sys.stderr = sys.stderr, out  # the handler writes to whatever stderr is now
        try:
            logs.configure(0, base=logging.INFO)
            writer = EventLogger(logging.getLogger(LOGGER), WALL)
            t0 = time.thread_time()
            for k, ev in enumerate(events):
                writer.on_event(ev, 10.0 + k * 1e-4)  # 10,000 lines a second of event time
            cpu = time.thread_time() - t0
        finally:
            sys.stderr = saved
        out.seek(0)
        written = sum(1 for _ in out)
    return {
        "title": "The event log's CPU per line (a moved client's login: two lines)",
        "command": f".venv/bin/python bench/bench_event_log.py --logins {logins}",
        "lines": len(events),
        "lines written": written,
        "us per line": round(1e6 * cpu / len(events), 2),
        "load average": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=20_000)
    args = parser.parse_args()
    if args.logins < 1:
        parser.error("--logins must be at least 1")
    print(json.dumps(run(args.logins), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
