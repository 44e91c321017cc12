"""A node that holds group ownership and prints what happens, one JSON object a line, for the
ownership tests (a real second process, to SIGKILL or SIGSTOP).

    python -m tests.cluster.ownership_runner --etcd URL[,URL...] --node a --groups g1,g2 [--ttl 1]

Lines: ``{"event": "ready", "ttl": ...}`` once the lease is taken and every home read; one per
ownership change (``claimed``, ``learned``, ``vanished``, ``lost``, with ``node`` and ``fencing``
of the group's home when known); and, every ``--stamp-every`` seconds, a ``stamp`` for each group
this node may stamp for (it holds the group and its lease surely lives), as a home stamps every
grant and burst. Every line has ``t``, the system's monotonic clock (the same in every process).
SIGTERM stops it cleanly, releasing its groups.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time

from ptt.cluster.ownership import DEFAULT_TTL, Ownership, OwnershipEvent


def say(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


def report(event: OwnershipEvent) -> None:
    home = event.home
    say(event.change.value, group=event.group, node=home.node if home else None,
        fencing=home.fencing if home else None)


async def run(args: argparse.Namespace) -> None:
    ownership = Ownership(args.etcd.split(","), args.node, ttl=args.ttl, on_event=report)
    done = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, done.set)
    await ownership.start()
    say("ready", ttl=ownership.ttl, node=args.node)
    await ownership.want(args.groups.split(","))
    parent = os.getppid()
    # a test run killed before its cleanup leaves no node behind: it ends with its parent
    while not done.is_set() and os.getppid() == parent:
        for group in sorted(ownership.wanted):
            home = ownership.holds(group)
            if home is not None:
                say("stamp", group=group, node=home.node, fencing=home.fencing)
        try:
            await asyncio.wait_for(done.wait(), args.stamp_every)
        except TimeoutError:
            pass
    await ownership.stop()
    say("stopped")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etcd", required=True, help="etcd endpoints, comma-separated")
    parser.add_argument("--node", required=True)
    parser.add_argument("--groups", required=True, help="group ids to claim, comma-separated")
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL)
    parser.add_argument("--stamp-every", type=float, default=0.05)
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
