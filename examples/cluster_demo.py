"""`make cluster-demo`: three `ptt server --cluster` nodes on this machine, a page across them,
then the group's home node killed and a survivor taking the group over. No sound card needed.

What it does, with the real engines and the real `ptt` command in separate processes, all on
127.0.0.1 (everything it starts is stopped by its PID at the end):

1. starts PostgreSQL, NATS and etcd (`ptt.cluster.engines`; etcd with a 50 ms heartbeat and a
   500 ms election timeout, so a node's 1 s lease is not raised to 2 s and failover is quick);
2. starts nodes a, b and c (`ptt server --cluster`), the group "volunteers" homed on c;
3. the coordinator (made by node a's first start) creates ann, bob and the group through node a;
4. bob listens on node b while ann pages the group from node a with a spoken announcement: the
   floor is decided on c, the voice crosses from a to b;
5. node c is SIGKILLed: a survivor claims the group under etcd with a higher fencing number, and
   bob, on node b, is granted the floor by the new home.

Run it from the repository: `make cluster-demo` (or `.venv/bin/python examples/cluster_demo.py`).
Exit 0 when all of it worked; otherwise one line saying what did not, and exit 1.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

from ptt.children import die_with_parent

sys.path.insert(0, str(Path(__file__).resolve().parent))  # demo.py's helpers, run as a script
from demo import PTT, T0, DemoFailed, floor_story, free_port, run, say  # noqa: E402

NODES = ("a", "b", "c")
HOME = "c"  # the group's home: neither the talker's node nor the listener's
GROUP = "volunteers"
ANN_SAYS = ("This is ann on node a. The north gate opens in ten minutes. "
            "Bob, please bring the radios.")
BOB_SAYS = "Bob here, on node b. Radios are on their way."
WITHIN = 150.0  # the whole demo, engines started; it takes ~30 s on an idle machine
CLAIMED = re.compile(rf"group {GROUP}: claimed .*fencing (\d+)")


class Node:
    """One `ptt server --cluster` process and the lines it logged."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, port: int) -> None:
        self.name, self.proc, self.port = name, proc, port
        self.lines: list[str] = []
        self.task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode().rstrip()
            self.lines.append(line)
            story = floor_story(line)
            if story:
                say(f"node {self.name}", story)
            elif f"group {GROUP}: " in line:  # ownership: claimed, learned, lost
                say(f"node {self.name}", line[line.index(f"group {GROUP}: "):])

    async def wait_for(self, pattern: re.Pattern[str] | str, within: float) -> re.Match[str]:
        pat = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for line in self.lines:
                if m := pat.search(line):
                    return m
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.02)
        last = self.lines[-1] if self.lines else "no output"
        raise DemoFailed(f"node {self.name}: no {pat.pattern!r} "
                         f"within {within:.0f} s (last line: {last})")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.task.cancel()


async def start_node(name: str, tmp: Path, env: dict[str, str], toml: str,
                     nodes: dict[str, Node]) -> None:
    """Start node NAME into NODES (so it is stopped whatever happens next); wait until it listens."""
    d = tmp / f"node-{name}"
    d.mkdir()
    (d / "cluster.toml").write_text(toml.replace("NODE", name))
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        PTT, "server", "--host", "127.0.0.1", "--port", str(port), "--db", str(d / "ptt.db"),
        "--cluster", str(d / "cluster.toml"),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        preexec_fn=die_with_parent)
    node = nodes[name] = Node(name, proc, port)
    await node.wait_for("listening", 30)
    say("demo", f"node {name} listening on 127.0.0.1:{port} (pid {proc.pid})")


def voiced_seconds(path: Path) -> float:
    """Seconds of 20 ms frames with any sound in them (silence is written as zeros)."""
    from ptt.audio.wav import read_wav
    pcm = read_wav(path)
    return sum(1 for i in range(0, len(pcm), 640) if any(pcm[i:i + 640:64])) * 0.02


async def demo(tmp: Path, engines: dict[str, str]) -> None:
    from ptt.audio.samples import make_speech_wav
    from ptt.audio.wav import wav_info

    env = dict(os.environ, HOME=str(tmp), XDG_CONFIG_HOME=str(tmp / "config"),
               XDG_DATA_HOME=str(tmp / "data"), PYTHONUNBUFFERED="1")
    toml = (f'node = "NODE"\nnodes = ["a", "b", "c"]\nnats = ["{engines["nats"]}"]\n'
            f'etcd = ["{engines["etcd"]}"]\npostgres = "{engines["postgres"]}"\n'
            # clients stay on the node the demo logs them in to, so that the page crosses
            # nodes (by default a Welcome moves a client to its group's home)
            'steer = false\n'
            f'[homes]\n{GROUP} = "{HOME}"\n')
    ann_wav, bob_wav = tmp / "ann-says.wav", tmp / "bob-says.wav"
    clips = asyncio.gather(asyncio.to_thread(make_speech_wav, ann_wav, ANN_SAYS),
                           asyncio.to_thread(make_speech_wav, bob_wav, BOB_SAYS))
    nodes: dict[str, Node] = {}
    try:
        # a first: on the empty directory it creates the coordinator; then b and c together
        await start_node("a", tmp, env, toml, nodes)
        await asyncio.gather(*(start_node(n, tmp, env, toml, nodes) for n in ("b", "c")))
        at = {n: dict(env, PTT_SERVER=f"127.0.0.1:{node.port}") for n, node in nodes.items()}

        cfg = {u: str(tmp / f"{u}.toml") for u in ("coordinator", "ann", "bob")}
        await run(["login", "--credentials", str(tmp / "node-a" / "coordinator.toml"),
                   "--config", cfg["coordinator"]], at["a"])
        coord = ["--config", cfg["coordinator"]]
        await run([*coord, "group", "create", GROUP, "--max-talk", "30"], at["a"],
                  "coordinator")
        for u in ("ann", "bob"):  # one coordinator command at a time: one session each
            handover = tmp / f"{u}-credentials.toml"  # mode 0600: the token never on a command line
            await run([*coord, "user", "add", u, "--credentials-out", str(handover)], at["a"])
            say("coordinator", f"added user {u} through node a")
            await run(["login", "--credentials", str(handover), "--config", cfg[u]], at["a"])
        await run([*coord, "group", "add", GROUP, "ann", "bob"], at["a"], "coordinator")

        fencing = int((await nodes[HOME].wait_for(CLAIMED, 20)).group(1))
        for n in ("a", "b"):
            await nodes[n].wait_for(f"group {GROUP}: learned", 20)
        await clips

        heard = tmp / "heard-by-bob.wav"
        listener = asyncio.create_task(run(["--config", cfg["bob"], "listen", GROUP,
                                            "--out", str(heard), "--bursts", "1",
                                            "--duration", "25"], at["b"], "bob on b hears"))
        await asyncio.sleep(1.0)  # bob has joined
        await run(["--config", cfg["ann"], "talk", GROUP, "--wav", str(ann_wav)], at["a"],
                  "ann on a")
        await listener
        paged, got = wav_info(ann_wav).duration, voiced_seconds(heard)
        say("demo", f"bob on node b heard {got:.1f} s with sound of ann's {paged:.1f} s page "
                    f"(floor decided on node {HOME})")
        if got < paged - 1.0:
            raise DemoFailed(f"bob heard only {got:.1f} s of a {paged:.1f} s page")

        say("demo", f"killing node {HOME} (SIGKILL, pid {nodes[HOME].proc.pid}), "
                    f"home of {GROUP} with fencing number {fencing}")
        killed = time.monotonic()
        nodes[HOME].proc.send_signal(signal.SIGKILL)
        await nodes[HOME].proc.wait()
        winners = [asyncio.create_task(nodes[n].wait_for(CLAIMED, 20)) for n in ("a", "b")]
        done, pending = await asyncio.wait(winners, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        new_home = "a" if winners[0] in done else "b"
        new_fencing = int(next(iter(done)).result().group(1))
        claimed_after = time.monotonic() - killed
        if new_fencing <= fencing:
            raise DemoFailed(f"node {new_home} claimed {GROUP} with fencing "
                             f"{new_fencing}, not above {fencing}")
        bob = asyncio.create_task(run(["--config", cfg["bob"], "talk", GROUP, "--wav",
                                       str(bob_wav)], at["b"], "bob on b"))
        await nodes[new_home].wait_for(rf"event=floor_granted group={GROUP} .*user=bob\b", 20)
        granted_after = time.monotonic() - killed
        if "floor granted" not in await bob:
            raise DemoFailed("bob was not granted the floor after the failover")

        print()
        print("Summary")
        print("-------")
        print(f"page across nodes: ann on a -> bob on b, group homed on {HOME}: "
              f"{got:.1f} s heard with sound of {paged:.1f} s paged")
        print(f"failover: node {HOME} killed; node {new_home} claimed {GROUP} after "
              f"{claimed_after:.2f} s (fencing {fencing} -> {new_fencing}); "
              f"bob granted by the new home {granted_after:.2f} s after the kill")
        print(f"total {time.monotonic() - T0:.1f} s")
    finally:
        await asyncio.gather(*(node.stop() for node in nodes.values()))


def main() -> None:
    from ptt.cluster.engines import Engine, start_etcd, start_nats, start_postgres
    from ptt.errors import PttError

    with tempfile.TemporaryDirectory(prefix="ptt-cluster-demo-") as tmp:
        started: list[Engine] = []
        try:
            # from the main thread: an engine dies with the thread that started it
            pg = start_postgres(Path(tmp) / "postgres")
            started.append(pg)
            say("demo", f"PostgreSQL at {pg.dsn}")
            nats = start_nats(Path(tmp) / "nats")
            started.append(nats)
            say("demo", f"NATS at {nats.url}")
            etcd = start_etcd(Path(tmp) / "etcd", heartbeat_ms=50, election_ms=500)
            started.append(etcd)
            say("demo", f"etcd at {etcd.endpoint} (heartbeat 50 ms, election 500 ms)")
            engines = {"postgres": pg.dsn, "nats": nats.url, "etcd": etcd.endpoint}
            asyncio.run(asyncio.wait_for(demo(Path(tmp), engines), WITHIN))
        except TimeoutError:
            raise SystemExit(f"demo failed: not done within {WITHIN:.0f} s") from None
        except (DemoFailed, PttError) as exc:
            raise SystemExit(f"demo failed: {exc}") from None
        finally:
            for engine in reversed(started):
                engine.stop()


if __name__ == "__main__":
    main()
