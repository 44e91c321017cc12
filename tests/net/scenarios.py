"""Multicast scenarios, each run inside a network namespace of its own by ``tests.net.netns``.

    python -m tests.net.scenarios NAME '{"tmp": "/tmp/x", ...}'   # prints one line of JSON

Never run these outside a namespace: they multicast. Each starts a server (in this process, so
that its counters can be read, or a real ``ptt server`` process), clients as in-process
:class:`~ptt.client.connection.Connection`s, and reports what it measured; the pytest tests in
``tests/e2e/test_multicast*.py`` and ``tests/net`` assert on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ptt.audio.samples import make_speech_wav
from ptt.audio.streams import MemorySink, PacedSink, ToneSource
from ptt.audio.wav import WavSource, read_wav
from ptt.client.connection import Connection, VoicePathChosen
from ptt.client.keys import add_user
from ptt.client.voice import Listener, Talker
from ptt.config import ServerConfig
from ptt.errors import NetError
from ptt.media.sender import Packetizer
from ptt.net.multicast import MulticastOptions, open_sender_socket, resolve_interface
from ptt.protocol.client import Participation
from ptt.server.app import PttServer
from tests.e2e.audiocheck import aligned_correlation
from tests.e2e.serverproc import ServerProcess

TEXT = "Volunteers at gate four, please help the visitors to the east stand. Thank you."
SHORT = "Gate four, east stand."
GROUP = "lan"
RELAY_ONLY = MulticastOptions(enabled=False)

Scenario = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__] = fn
    return fn


# --- helpers -----------------------------------------------------------------------------------


class Server:
    """A PttServer in this process (counters readable) or a ``ptt server`` process."""

    def __init__(self, tmp: Path, process: bool = False,
                 multicast: MulticastOptions | None = None) -> None:
        self.db = tmp / "ptt.db"
        self.process = ServerProcess(self.db) if process else None
        self.app: PttServer | None = None
        self.multicast = multicast

    async def __aenter__(self) -> Server:
        if self.process is not None:
            self.process.start()
        else:
            self.app = PttServer(ServerConfig(host="127.0.0.1", port=0, db=self.db,
                                              record_dir=self.db.parent / "rec"),
                                 iterations=1000, multicast=self.multicast)
            await self.app.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.app is not None:
            self.app.close()
        if self.process is not None:
            self.process.stop()

    @property
    def address(self) -> tuple[str, int]:
        return self.app.address if self.app is not None else self.process.address  # type: ignore[union-attr]

    @property
    def credentials(self) -> dict[str, str]:
        return tomllib.loads((self.db.parent / "coordinator.toml").read_text())

    def counters(self) -> dict[str, Any]:
        return dataclasses.asdict(self.app.counters) if self.app is not None else {}


async def provision(server: Server, users: list[str], mode: str, group: str = GROUP
                    ) -> dict[str, str]:
    cred = server.credentials
    tokens = {}
    async with Connection(server.address, cred["user"], cred["token"], RELAY_ONLY) as coord:
        for u in users:
            tokens[u] = await add_user(coord, u)
        await coord.admin("group.create", {"name": group, "mode": mode})
        await coord.admin("group.add", {"name": group, "users": users})
    return tokens


async def connect(server: Server, tokens: dict[str, str], users: list[str],
                  opts: dict[str, MulticastOptions] | None = None) -> dict[str, Connection]:
    conns = {}
    for u in users:
        c = Connection(server.address, u, tokens[u], (opts or {}).get(u))
        await c.open()
        conns[u] = c
    return conns


async def join_all(conns: dict[str, Connection], group: str = GROUP) -> dict[str, str]:
    """Join everyone; returns each one's voice path once decided."""
    for c in conns.values():
        await c.join(group)
    return {u: await c.wait_voice_path(group) for u, c in conns.items()}


async def close_all(conns: dict[str, Connection]) -> None:
    for c in conns.values():
        await c.close()


async def page(talker: Connection, listeners: list[Connection], wav: Path, group: str = GROUP
               ) -> dict[str, Any]:
    """``talker`` sends ``wav`` (real time) to ``listeners``; correlations and counts."""
    original = read_wav(wav)
    stop = asyncio.Event()
    sinks = [MemorySink() for _ in listeners]
    players = [Listener(c, group, PacedSink(s)) for c, s in zip(listeners, sinks)]
    tasks = [asyncio.create_task(p.run(stop)) for p in players]
    granted = await talker.request_floor(group)
    assert granted.state is Participation.HAS_PERMISSION, granted
    links: list[list[Any]] = []  # what the listeners' reports told the talker
    report = await Talker(talker, group, on_link=lambda lk: links.append(
        [lk.listeners, lk.loss, list(lk.settings.offsets)])).send(WavSource(wav, realtime=True))
    await talker.release_floor(group)
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*tasks)
    return {
        "reason": report.reason,
        "frames": len(original) // 640,
        "played": [p.frames_played for p in players],
        "correlation": [round(aligned_correlation(original, s.pcm()), 4) for s in sinks],
        "links": links,
        "receptions": [dataclasses.asdict(p.last_burst) if p.last_burst else None
                       for p in players],
    }


def stats(conns: dict[str, Connection]) -> dict[str, dict[str, int]]:
    return {u: dataclasses.asdict(c.voice_stats) for u, c in conns.items()}


# --- scenarios ---------------------------------------------------------------------------------


@scenario
async def page_three(args: dict[str, Any]) -> dict[str, Any]:
    """Speech paged to three listeners over multicast; the relay forwards nothing."""
    tmp = Path(args["tmp"])
    wav = make_speech_wav(tmp / "speech.wav", TEXT)
    users = ["ann", "bob", "cat", "dan"]
    async with Server(tmp) as server:
        tokens = await provision(server, users, args.get("mode", "multicast"))
        conns = await connect(server, tokens, users)
        try:
            paths = await join_all(conns)
            before = server.counters()
            result = await page(conns["ann"], [conns[u] for u in users[1:]], wav)
            after = server.counters()
        finally:
            await close_all(conns)
    return {**result, "paths": paths, "server_before": before, "server": after,
            "multicast_off": server.app.multicast_off if server.app else None,  # type: ignore[union-attr]
            "stats": stats(conns)}


@scenario
async def mixed(args: dict[str, Any]) -> dict[str, Any]:
    """An auto group with multicast members and a relay member (multicast off on that client):
    a multicast talker heard by the relay member, then the relay member heard over multicast."""
    tmp = Path(args["tmp"])
    wav = make_speech_wav(tmp / "speech.wav", SHORT)
    users = ["ann", "bob", "cat"]
    async with Server(tmp, process=args.get("process", False)) as server:
        tokens = await provision(server, users, "auto")
        conns = await connect(server, tokens, users, {"bob": RELAY_ONLY})
        try:
            paths = await join_all(conns)
            reasons = {u: c.voice_path_reason(GROUP) for u, c in conns.items()}
            c0 = server.counters()
            mcast_talker = await page(conns["ann"], [conns["bob"], conns["cat"]], wav)
            c1 = server.counters()
            relay_talker = await page(conns["bob"], [conns["ann"], conns["cat"]], wav)
            c2 = server.counters()
        finally:
            await close_all(conns)
    return {"paths": paths, "reasons": reasons, "multicast_talker": mcast_talker,
            "relay_talker": relay_talker, "counters": [c0, c1, c2], "stats": stats(conns)}


@scenario
async def inject(args: dict[str, Any]) -> dict[str, Any]:
    """A member who does not hold the floor multicasts frames: listeners must not play them."""
    tmp = Path(args["tmp"])
    wav = make_speech_wav(tmp / "speech.wav", SHORT)
    users = ["ann", "bob", "eve"]
    async with Server(tmp, process=True) as server:
        tokens = await provision(server, users, "multicast")
        conns = await connect(server, tokens, users)
        ann, bob, eve = conns["ann"], conns["bob"], conns["eve"]
        try:
            paths = await join_all(conns)
            state = eve.core.groups[GROUP].state
            assert state is not None and state.mcast_addr is not None
            dest = (state.mcast_addr, state.mcast_port)
            tx = open_sender_socket(resolve_interface("127.0.0.1"), 1)
            tone = ToneSource(1000.0, -3.0, realtime=False)

            async def forge(burst: int, frames: int) -> None:
                pk = Packetizer(state.group_id, eve.core.session_id, burst, 0)
                for _ in range(frames):
                    tx.sendto(pk.packetize(tone_codec.encode(await tone.read())), dest)  # type: ignore[arg-type]
                    await asyncio.sleep(0.02)

            from ptt.audio.codec import OpusEncoder
            tone_codec = OpusEncoder()
            # 1. nobody holds the floor: eve's frames must not be played
            idle_sink = MemorySink()
            stop = asyncio.Event()
            player = Listener(bob, GROUP, PacedSink(idle_sink))
            task = asyncio.create_task(player.run(stop))
            await forge(12345, 50)
            await asyncio.sleep(0.3)
            stop.set()
            await task
            idle = {"played": player.frames_played, "stats": dataclasses.asdict(bob.voice_stats)}
            # 2. ann talks; eve sends frames claiming ann's burst (with her own session id)
            forger: list[asyncio.Task[None]] = []

            async def when_ann_talks() -> None:
                while ann.core.talk_route(GROUP) is None:
                    await asyncio.sleep(0.01)
                await forge(ann.core.talk_route(GROUP)[2], 100)  # type: ignore[index]

            forger.append(asyncio.create_task(when_ann_talks()))
            during = await page(ann, [bob], wav)
            await asyncio.gather(*forger)
            tx.close()
        finally:
            await close_all(conns)
    return {"paths": paths, "idle": idle, "during": during, "stats": stats(conns),
            "server_log": server.process.output()[-3000:] if server.process else ""}


@scenario
async def late_entry(args: dict[str, Any]) -> dict[str, Any]:
    """Members join while a talker is mid-burst; time from join() to their first audio out."""
    tmp = Path(args["tmp"])
    trials = int(args.get("trials", 3))
    mode = args.get("mode", "multicast")
    users = ["ann"] + [f"m{i}" for i in range(trials)]
    async with Server(tmp, process=args.get("process", True)) as server:
        tokens = await provision(server, users, mode)
        ann = (await connect(server, tokens, ["ann"]))["ann"]
        members = await connect(server, tokens, users[1:])
        conns = {"ann": ann, **members}
        try:
            await join_all({"ann": ann})
            assert (await ann.request_floor(GROUP)).state is Participation.HAS_PERMISSION
            stop_talk = asyncio.Event()
            talk = asyncio.create_task(Talker(ann, GROUP).send(ToneSource(440.0), stop_talk))
            await asyncio.sleep(0.5)
            results = []
            loop = asyncio.get_running_loop()
            for u, c in members.items():
                stop = asyncio.Event()
                player = Listener(c, GROUP, PacedSink(MemorySink()))
                task = asyncio.create_task(player.run(stop))
                await asyncio.sleep(0.1)  # the player is ticking, as a running client's is
                first_packet: list[float] = []
                play = c.on_voice

                def tap(data: bytes, play: Callable[[bytes], None] = play,
                        first_packet: list[float] = first_packet) -> None:
                    if not first_packet:
                        first_packet.append(loop.time())
                    play(data)

                c.on_voice = tap
                t0 = loop.time()
                await c.join(GROUP)
                t_joined = loop.time()
                while player.first_audio_at is None and loop.time() < t0 + 3:
                    await asyncio.sleep(0.005)
                path = await c.wait_voice_path(GROUP)
                stop.set()
                await task
                first = player.first_audio_at

                def ms(t: float | None, t0: float = t0) -> float | None:
                    return None if t is None else round((t - t0) * 1000, 1)

                results.append({"user": u, "path": path, "ms": ms(first),
                                "join_ms": ms(t_joined),
                                "packet_ms": ms(first_packet[0] if first_packet else None)})
            stop_talk.set()
            report = await talk
            await ann.release_floor(GROUP)
        finally:
            await close_all(conns)
    return {"trials": results, "talk": report.reason}


@scenario
async def misconfigured(args: dict[str, Any]) -> dict[str, Any]:
    """Errors and fallbacks on a member's machine: a missing route (``drop_route``: the server
    started with the route, so it offers multicast, and the route is gone before the member
    joins, as on a member's laptop without one) or a missing interface."""
    tmp = Path(args["tmp"])
    users = ["ann"]
    out: dict[str, Any] = {}
    async with Server(tmp) as server:
        tokens = await provision(server, users, "multicast")
        await provision_group(server, "autogroup", "auto", users)
        if args.get("drop_route"):
            subprocess.run(["ip", "route", "del", "224.0.0.0/4", "dev", "lo"], check=True)
        opts = MulticastOptions(interface=args.get("interface", "127.0.0.1"))
        async with Connection(server.address, "ann", tokens["ann"], opts) as ann:
            q = ann.subscribe()
            try:
                await ann.join(GROUP)
                out["multicast_join"] = "joined"
            except NetError as exc:
                out["multicast_join"] = str(exc)
            await ann.join("autogroup")
            out["auto_path"] = await ann.wait_voice_path("autogroup")
            out["auto_reason"] = ann.voice_path_reason("autogroup")
            events = []
            while not q.empty():
                ev = q.get_nowait()
                if isinstance(ev, VoicePathChosen):
                    events.append([ev.group, ev.path, ev.reason])
            out["events"] = events
            out["probes"] = ann.voice_stats.probes
        out["multicast_off"] = server.app.multicast_off  # type: ignore[union-attr]
    return out


@scenario
async def no_echo(args: dict[str, Any]) -> dict[str, Any]:
    """The route is there but the server does not listen on the group (multicast off on the
    server): the probe gets no echo, and after 1 s the group falls back to the relay."""
    tmp = Path(args["tmp"])
    users = ["ann", "bob"]
    async with Server(tmp, multicast=MulticastOptions(enabled=False)) as server:
        tokens = await provision(server, users, args.get("mode", "auto"))
        conns = await connect(server, tokens, users)
        try:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            paths = await join_all(conns)
            fallback_ms = round((loop.time() - t0) * 1000)
            stop = asyncio.Event()
            player = Listener(conns["bob"], GROUP, PacedSink(MemorySink()))
            task = asyncio.create_task(player.run(stop))
            assert (await conns["ann"].request_floor(GROUP)).state is Participation.HAS_PERMISSION
            await Talker(conns["ann"], GROUP).send(ToneSource(440.0, frames=50))
            await asyncio.sleep(0.3)
            stop.set()
            await task
        finally:
            await close_all(conns)
    return {"paths": paths, "fallback_ms": fallback_ms,
            "reasons": {u: c.voice_path_reason(GROUP) for u, c in conns.items()},
            "played": player.frames_played, "server": server.counters(), "stats": stats(conns),
            "multicast_off": server.app.multicast_off}  # type: ignore[union-attr]


@scenario
async def sockets(args: dict[str, Any]) -> dict[str, Any]:
    """ptt.net.multicast's sockets on lo: join, send with TTL and interface, group isolation."""
    import socket

    from ptt.net.multicast import check_multicast, open_member_socket
    opts = MulticastOptions(ttl=int(args.get("ttl", 1)))
    iface = check_multicast("239.255.0.7", opts)
    a = open_member_socket("239.255.0.7", 7814, iface)
    b = open_member_socket("239.255.0.7", 7814, iface)  # a second member on this machine
    other = open_member_socket("239.255.0.8", 7814, iface)  # another group, same port
    tx = open_sender_socket(iface, opts.ttl)
    tx.sendto(b"hello", ("239.255.0.7", 7814))
    await asyncio.sleep(0.1)

    def recv(s: socket.socket) -> str | None:
        try:
            return s.recv(100).decode()
        except BlockingIOError:
            return None

    out = {"iface": [iface.name, iface.address], "a": recv(a), "b": recv(b),
           "other": recv(other),
           "ttl": tx.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL),
           "if": socket.inet_ntoa(tx.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)),
           "source": list(tx.getsockname())}
    for s in (a, b, other, tx):
        s.close()
    return out


@scenario
async def mode_change(args: dict[str, Any]) -> dict[str, Any]:
    """A coordinator switches a multicast group to relay while members are on multicast: the
    server stops listening, a talker still multicasting loses the floor to T1, probes again,
    gets no echo and talks through the relay from then on."""
    tmp = Path(args["tmp"])
    users = ["ann", "bob"]
    async with Server(tmp) as server:
        tokens = await provision(server, users, "auto")
        conns = await connect(server, tokens, users)
        ann, bob = conns["ann"], conns["bob"]
        try:
            before = await join_all(conns)
            cred = server.credentials
            async with Connection(server.address, cred["user"], cred["token"], RELAY_ONLY) as co:
                await co.admin("group.update", {"name": GROUP, "mode": "relay"})
            assert (await ann.request_floor(GROUP)).state is Participation.HAS_PERMISSION
            first = await Talker(ann, GROUP).send(ToneSource(440.0, frames=150))
            after = await ann.wait_voice_path(GROUP, timeout=5)
            reason = ann.voice_path_reason(GROUP)
            stop = asyncio.Event()
            player = Listener(bob, GROUP, PacedSink(MemorySink()))
            task = asyncio.create_task(player.run(stop))
            assert (await ann.request_floor(GROUP)).state is Participation.HAS_PERMISSION
            second = await Talker(ann, GROUP).send(ToneSource(440.0, frames=50))
            await ann.release_floor(GROUP)
            await asyncio.sleep(0.3)
            stop.set()
            await task
        finally:
            await close_all(conns)
    return {"before": before, "first": first.reason, "after": after, "reason": reason,
            "second": second.reason, "played": player.frames_played,
            "server": server.counters()}


@scenario
async def record_multicast(args: dict[str, Any]) -> dict[str, Any]:
    """`ptt record`'s GroupRecorder as a member of a multicast group: what it stores is what the
    talker multicast, with the relay idle."""
    from ptt.client.recorder import GroupRecorder
    from ptt.record.catalog import scan

    tmp = Path(args["tmp"])
    wav = make_speech_wav(tmp / "speech.wav", TEXT)
    users = ["ann", "bob"]
    async with Server(tmp) as server:
        tokens = await provision(server, users, "multicast")
        conns = await connect(server, tokens, users)
        try:
            paths = await join_all(conns)
            stop = asyncio.Event()
            recorder = GroupRecorder(conns["bob"], GROUP, tmp / "rec")
            task = asyncio.create_task(recorder.run(stop))
            granted = await conns["ann"].request_floor(GROUP)
            assert granted.state is Participation.HAS_PERMISSION, granted
            report = await Talker(conns["ann"], GROUP).send(WavSource(wav, realtime=True))
            await conns["ann"].release_floor(GROUP)
            await asyncio.sleep(0.8)
            stop.set()
            recorded = await task
            after = server.counters()
        finally:
            await close_all(conns)
    sessions = scan(tmp / "rec")
    bursts = [b for sess in sessions for b in sess.bursts]
    return {"paths": paths, "sent_frames": report.frames, "server": after,
            "recorded_bursts": recorded.bursts, "recorded_seconds": recorded.seconds,
            "lost": recorded.lost, "files": [{"talker": b.talker, "seconds": b.duration}
                                             for b in bursts],
            "problems": [pr for sess in sessions for pr in sess.problems]}


async def provision_group(server: Server, group: str, mode: str, users: list[str]) -> None:
    cred = server.credentials
    async with Connection(server.address, cred["user"], cred["token"], RELAY_ONLY) as coord:
        await coord.admin("group.create", {"name": group, "mode": mode})
        await coord.admin("group.add", {"name": group, "users": users})


def main() -> None:
    name = sys.argv[1]
    args = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    if "tmp" not in args:
        args["tmp"] = tempfile.mkdtemp(prefix=f"ptt-{name}-")
    t0 = time.monotonic()
    result = asyncio.run(SCENARIOS[name](args))
    result["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
