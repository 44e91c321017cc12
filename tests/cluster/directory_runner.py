"""One node's directory in a process of its own, for tests/cluster/test_directory.py.

    python -m tests.cluster.directory_runner DSN

Follows the directory and prints ``listening`` once it is, then ``change KIND NAME T`` for each
change made elsewhere (T: CLOCK_MONOTONIC, comparable across processes). Reads commands on
stdin: ``user NAME`` adds a user, ``group NAME`` creates a group; ``quit`` ends it.
"""

from __future__ import annotations

import asyncio
import sys
import time

from ptt.cluster.directory import Change, PgDirectory


def say(line: str) -> None:
    print(line, flush=True)


async def main(dsn: str) -> None:
    directory = PgDirectory(dsn)

    def changed(change: Change) -> None:
        say(f"change {change.kind} {change.name} {time.monotonic():.6f}")

    follower = asyncio.create_task(directory.follow(changed))
    await directory.listening.wait()
    say("listening")
    while True:
        line = (await asyncio.to_thread(sys.stdin.readline)).strip()
        if not line or line == "quit":
            break
        what, name = line.split(" ", 1)
        if what == "user":
            directory.add_user(name, "volunteer", b"s" * 16, 1000, b"v" * 32)
        elif what == "group":
            directory.create_group(name)
        say(f"done {line}")
    follower.cancel()
    directory.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
