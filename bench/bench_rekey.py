"""Re-key of a large encrypted group, end to end through a real ``ptt server`` on loopback.

The coordinator's client (in this process, ``ptt.client.keys.rekey``, what ``ptt group rekey``
runs) fetches the members' public keys, wraps and signs one grant per member, and sends them;
the server stores them and pushes each online member its own. Measured: the wall time from the
call until the last of ``--online`` live members got its grant, the bytes the coordinator's
client sent to the server and received for it, and the bytes each online member received.

Users are written into the store before the server starts (lowest iteration count), so setting
up 5,000 takes seconds, not the 30 minutes of 5,000 ``ptt user add`` runs.

    .venv/bin/python bench/bench_rekey.py --members 1000 5000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ptt.client.connection import Connection
from ptt.client.keys import change_members, rekey
from ptt.crypto.identity import identity_from_token
from ptt.protocol import auth
from ptt.protocol import client as cl
from ptt.server.store import Store

PTT = str(Path(sys.executable).with_name("ptt"))


def make_users(db: Path, n: int) -> dict[str, str]:
    store = Store(db)
    tokens = {}
    try:
        for i in range(n + 1):
            name = "coordinator" if i == n else f"m{i:05d}"
            token = auth.new_token(secrets.token_bytes(auth.TOKEN_BYTES))
            creds = auth.make_credentials(token, secrets.token_bytes(auth.SALT_SIZE),
                                          auth.MIN_ITERATIONS)
            store.add_user(name, "coordinator" if i == n else "volunteer", creds.salt,
                           creds.iterations, creds.verifier,
                           identity_from_token(token, name).public.to_bytes())
            tokens[name] = token
        store.create_group("big")
    finally:
        store.close()
    return tokens


class Counter:
    """Bytes and datagrams a Connection sends and receives (its core's in- and output)."""

    def __init__(self, conn: Connection) -> None:
        self.sent = self.received = self.sent_n = self.received_n = 0
        self.sizes: list[int] = []
        core = conn.core
        out, inp = core.datagrams_to_send, core.receive_datagram

        def counted_out() -> list[bytes]:
            data = out()
            self.sent += sum(len(d) for d in data)
            self.sent_n += len(data)
            return data

        def counted_in(data: bytes, now: float) -> None:
            self.received += len(data)
            self.received_n += 1
            self.sizes.append(len(data))
            inp(data, now)

        core.datagrams_to_send = counted_out  # type: ignore[method-assign]
        core.receive_datagram = counted_in  # type: ignore[method-assign]

    def reset(self) -> None:
        self.sent = self.received = self.sent_n = self.received_n = 0
        self.sizes = []


def start_server(db: Path, root: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = 20000 + os.getpid() % 20000
    with open(root / "server.log", "wb") as log:
        server = subprocess.Popen([PTT, "server", "--port", str(port), "--db", str(db)],
                                  stdout=log, stderr=log)
    deadline = time.monotonic() + 20
    while b"listening on" not in (root / "server.log").read_bytes():
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError((root / "server.log").read_text())
        time.sleep(0.05)
    return server, port


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def crypto_floor(n: int) -> float:
    """The machine's floor for a re-key of ``n`` members, in the same minute: the wall time of
    what no grant can do without, one X25519 and one Ed25519 signature per member, in one
    process (about two thirds of the coordinator's CPU per grant)."""
    eph, peer = X25519PrivateKey.generate(), X25519PrivateKey.generate().public_key()
    signer = Ed25519PrivateKey.generate()
    body = bytes(200)
    t0 = time.perf_counter()
    for _ in range(n):
        eph.exchange(peer)
        signer.sign(body)
    return time.perf_counter() - t0


async def run(n: int, online: int, tokens: dict[str, str], port: int, root: Path,
              server_pid: int) -> dict[str, object]:
    addr = ("127.0.0.1", port)
    coord = Connection(addr, "coordinator", tokens["coordinator"])
    await coord.open()
    pins = root / "pins"
    members = sorted(u for u in tokens if u != "coordinator")
    t0 = time.perf_counter()
    await change_members(coord, "big", add=members, pins=pins)
    add_time = time.perf_counter() - t0
    live = []
    for user in members[:online]:
        c = Connection(addr, user, tokens[user])
        await c.open()
        await c.join("big")
        live.append((c, Counter(c), c.subscribe()))
    counter = Counter(coord)
    await asyncio.sleep(0.5)  # joins settled
    for _, cnt, _ in live:
        cnt.reset()
    floor = crypto_floor(n)
    server_cpu0, cpu0, load0 = _cpu(server_pid), time.process_time(), os.getloadavg()[0]
    t0 = time.perf_counter()
    epoch = await rekey(coord, "big", pins=pins)
    answered = time.perf_counter() - t0
    client_cpu = time.process_time() - cpu0
    for c, _, q in live:
        await c.wait_for(q, lambda e: isinstance(e, cl.KeyGrantReceived) and e.epoch == epoch,
                         10.0, "no grant")
    delivered = time.perf_counter() - t0
    server_cpu = _cpu(server_pid) - server_cpu0
    await asyncio.sleep(0.2)  # the members' acks counted too
    result = {
        "members": n, "add_s": add_time, "rekey_answered_s": answered,
        "rekey_all_online_have_it_s": delivered,
        "crypto_floor_s": floor, "ratio_to_floor": delivered / floor,
        "coordinator_cpu_s": client_cpu, "server_cpu_s": server_cpu,
        "load_average": round(load0, 2),
        "coordinator_sent_bytes": counter.sent, "coordinator_sent_datagrams": counter.sent_n,
        "coordinator_received_bytes": counter.received,
        "member_received_bytes": max(cnt.received for _, cnt, _ in live),
        "member_received_datagrams": max(cnt.received_n for _, cnt, _ in live),
        "member_sent_bytes": max(cnt.sent for _, cnt, _ in live),
        "member_datagram_sizes": "/".join(map(str, live[0][1].sizes)),
    }
    for c, _, _ in live:
        await c.close()
    await coord.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--members", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--online", type=int, default=3, help="live members that must get the grant")
    args = ap.parse_args()
    for n in args.members:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            t0 = time.perf_counter()
            tokens = make_users(root / "ptt.db", n)
            setup = time.perf_counter() - t0
            server, port = start_server(root / "ptt.db", root)
            try:
                r = {"setup_s": setup,
                     **asyncio.run(run(n, args.online, tokens, port, root, server.pid))}
            finally:
                server.terminate()
                server.wait(10)
        print("  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
