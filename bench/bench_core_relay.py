"""The server core's per-frame relay cost on its own: no sockets, no asyncio, CPU time.

    .venv/bin/python bench/bench_core_relay.py [--members 200] [--frames 2000] [--repeats 25]

A SimNet group (``tests/protocol/simnet.py``) of ``--members`` logs in and joins; one member takes
the floor, and its MAC-ed voice frames are fed to ``ServerCore.receive_datagram`` as the adapter
does per frame (then ``relayed`` and ``has_output``). Prints the best and the median of
``--repeats`` runs, in microseconds of this process's CPU time per frame; the frame's relay cost
per forwarded packet is that divided by the members - 1 it goes to.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptt.wire.voice import VoiceHeader, add_mac, encode_voice  # noqa: E402
from tests.protocol.simnet import SimNet  # noqa: E402
from tests.protocol.test_client_server import connect_all  # noqa: E402


def run(members: int, frames: int, repeats: int) -> tuple[float, float]:
    net = SimNet(seed=1)
    users = [f"u{i}" for i in range(members)]
    for u in users:
        net.add_user(u)
    connect_all(net, {"g": users})
    net.run_until(net.now + 3.0)
    talker = net.clients[users[0]]
    talker.request_floor("g", net.now)
    net.run_until(net.now + 0.5)
    route = talker.talk_route("g")
    if route is None:
        raise SystemExit("the talker did not get the floor")
    data = [add_mac(talker.voice_key, encode_voice(VoiceHeader(*route, i, 0), b"\x00" * 80))
            for i in range(1, frames + 1)]
    core, addr, now = net.server, net.addrs[users[0]], net.now
    runs = []
    for _ in range(repeats):
        t0 = time.process_time()
        for i, frame in enumerate(data):
            targets = core.receive_datagram(frame, addr, now + i * 1e-5)
            _ = core.relayed
            core.has_output()
        runs.append((time.process_time() - t0) / frames * 1e6)
        if targets is None or len(targets) != members - 1:
            raise SystemExit(f"the relay refused the frames: {targets!r}")
    return min(runs), statistics.median(runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=200)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=25)
    args = ap.parse_args()
    best, median = run(args.members, args.frames, args.repeats)
    print(f"receive_datagram + relayed + has_output, {args.members} members: "
          f"best {best:.2f} us/frame, median {median:.2f} us/frame "
          f"({best / (args.members - 1) * 1000:.1f} ns per forwarded packet)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
