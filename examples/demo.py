"""`make demo`: a whole paging session on this machine, no sound card needed.

What it does, with the real `ptt` command in separate processes, all on 127.0.0.1:

1. starts `ptt server` with a temporary SQLite database (it creates the coordinator account);
2. the coordinator creates the group "volunteers" with ann, bob and cat, and joins it
   listen-only to monitor it;
3. cat and the coordinator listen, each writing what they hear to a WAV file;
4. ann pages the group with a spoken announcement; while she talks bob asks for the floor, is
   queued, and is granted it when ann releases; then bob pages his reply;
5. it prints the floor events as they happen and a summary, then stops everything.

Run it from the repository: `make demo` (or `.venv/bin/python examples/demo.py`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from ptt.children import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
PTT = str(Path(sys.executable).with_name("ptt"))
ANN_SAYS = ("Attention volunteers. The east gate opens in ten minutes. "
            "Please take your positions at the ticket lanes.")
BOB_SAYS = "Copy that, east gate team is in position."
T0 = time.monotonic()


class DemoFailed(Exception):
    """A step of the demo did not do what it shows; main() turns it into one line and exit 1
    (a SystemExit raised inside a task escapes asyncio with a traceback of the task)."""


def say(who: str, line: str) -> None:
    print(f"{time.monotonic() - T0:6.2f}s  {who:<12} {line}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def floor_story(log_line: str) -> str | None:
    """The server's event log line (``event=floor_granted group=... user=...``) told in words."""
    if "event=" not in log_line:
        return None
    f = dict(kv.split("=", 1) for kv in log_line.split("ptt.events: ", 1)[-1].split() if "=" in kv)
    ev, group, user = f.get("event"), f.get("group"), f.get("user")
    if ev == "floor_granted":
        return f"[{group}] floor granted to {user} (burst {f.get('burst')})"
    if ev == "floor_queued":
        return f"[{group}] {user} queued at #{f.get('position')}"
    if ev == "floor_denied":
        return f"[{group}] floor denied to {user} ({f.get('cause')})"
    if ev == "floor_revoked":
        return f"[{group}] floor revoked from {user} ({f.get('cause')})"
    if ev == "floor_idle":
        return f"[{group}] floor idle"
    return None


async def run(args: list[str], env: dict[str, str], who: str | None = None) -> str:
    """Run `ptt ARGS`; echo its lines as WHO when given; fail loudly with its error line."""
    proc = await asyncio.create_subprocess_exec(
        PTT, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        preexec_fn=die_with_parent)
    lines = []
    assert proc.stdout is not None
    async for raw in proc.stdout:
        line = raw.decode().rstrip()
        lines.append(line)
        if who:
            say(who, line)
    if await proc.wait() != 0:
        raise DemoFailed(f"ptt {' '.join(args[:3])}: {lines[-1] if lines else '?'}")
    return "\n".join(lines)


async def demo(tmp: Path) -> None:
    from ptt.audio.samples import make_speech_wav
    from ptt.audio.wav import read_wav, wav_info

    env = dict(os.environ, HOME=str(tmp), XDG_CONFIG_HOME=str(tmp / "config"),
               XDG_DATA_HOME=str(tmp / "data"), PYTHONUNBUFFERED="1")
    port = free_port()
    db = tmp / "ptt.db"
    say("demo", f"starting ptt server on 127.0.0.1:{port} (database {db})")
    server = await asyncio.create_subprocess_exec(
        PTT, "server", "--host", "127.0.0.1", "--port", str(port), "--db", str(db),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        preexec_fn=die_with_parent)
    assert server.stdout is not None
    while True:  # wait until it listens
        line = (await server.stdout.readline()).decode()
        if not line:
            raise DemoFailed("the server did not start")
        if "listening" in line:
            break

    async def server_log() -> None:  # the server's floor decisions, as they happen
        assert server.stdout is not None
        async for raw in server.stdout:
            line = floor_story(raw.decode())
            if line:
                say("server", line)

    log_task = asyncio.create_task(server_log())
    ann_wav, bob_wav = tmp / "ann-says.wav", tmp / "bob-says.wav"
    clips = asyncio.gather(asyncio.to_thread(make_speech_wav, ann_wav, ANN_SAYS),
                           asyncio.to_thread(make_speech_wav, bob_wav, BOB_SAYS))
    try:
        cfg = {u: str(tmp / f"{u}.toml") for u in ("coordinator", "ann", "bob", "cat")}
        await run(["login", "--credentials", str(tmp / "coordinator.toml"),
                   "--config", cfg["coordinator"]], env)
        coord = ["--config", cfg["coordinator"]]
        await run([*coord[:2], "group", "create", "volunteers", "--max-talk", "30"], env,
                  "coordinator")
        logins = []
        for u in ("ann", "bob", "cat"):  # one coordinator command at a time: one session each
            handover = tmp / f"{u}-credentials.toml"  # mode 0600: the token never on a command line
            await run([*coord, "user", "add", u, "--credentials-out", str(handover)], env)
            say("coordinator", f"added user {u} (its token went into {handover.name}, mode 0600)")
            logins.append(run(["login", "--credentials", str(handover), "--config", cfg[u]], env))
        await asyncio.gather(*logins)
        await run([*coord, "group", "add", "volunteers", "ann", "bob", "cat"], env, "coordinator")
        await run([*coord, "group", "add", "volunteers", "coordinator", "--listen-only"], env)

        await clips  # spoken by espeak-ng while the accounts were made

        outs = {u: tmp / f"heard-by-{u}.wav" for u in ("cat", "coordinator")}
        listeners = [asyncio.create_task(run(["--config", cfg[u], "listen", "volunteers",
                                              "--out", str(outs[u]), "--bursts", "2",
                                              "--duration", "25"], env, f"{u} hears"))
                     for u in outs]
        await asyncio.sleep(1.0)  # listeners are in
        ann = asyncio.create_task(run(["--config", cfg["ann"], "talk", "volunteers", "--wav",
                                       str(ann_wav)], env, "ann"))
        await asyncio.sleep(1.0)  # bob keys up while ann is still talking: he is queued
        bob = asyncio.create_task(run(["--config", cfg["bob"], "talk", "volunteers", "--wav",
                                       str(bob_wav)], env, "bob"))
        said = dict(zip(("ann", "bob"), await asyncio.gather(ann, bob), strict=True))
        await asyncio.gather(*listeners)
        shown = await run([*coord, "group", "show", "volunteers"], env)

        print()
        print("Summary")
        print("-------")
        sent = wav_info(ann_wav).duration + wav_info(bob_wav).duration
        print(f"paged: ann {wav_info(ann_wav).duration:.1f} s, then bob "
              f"{wav_info(bob_wav).duration:.1f} s (queued behind ann, granted on her release)")
        for u, text in said.items():  # each page's delivery report, as its talker was told
            report = next((x for x in text.splitlines() if x.startswith("heard by")),
                          "no delivery report")
            print(f"{u}'s page: {report}")
            if "not confirmed: bob" in report:  # true, and a newcomer would read it as a fault
                print("  (bob was queued with a file to send: `ptt talk --wav` plays nothing, so "
                      "his laptop could not confirm what it did not play)")
        for u, path in outs.items():
            pcm = read_wav(path)
            voiced = sum(1 for i in range(0, len(pcm), 640) if any(pcm[i:i + 640:64]))
            print(f"{u:<12} wrote {path.name}: {len(pcm) / 32000:.1f} s, "
                  f"{voiced * 0.02:.1f} s with sound (of {sent:.1f} s paged)")
        print()
        print(shown)
        keep = ROOT / "artifacts" / "demo"
        keep.mkdir(parents=True, exist_ok=True)
        for path in [*outs.values(), ann_wav, bob_wav]:
            shutil.copy(path, keep / path.name)
        print(f"\nWAV files kept in {keep.relative_to(ROOT)}/ ; total {time.monotonic() - T0:.1f} s")
    finally:
        server.terminate()
        await server.wait()
        log_task.cancel()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ptt-demo-") as tmp:
        try:
            asyncio.run(demo(Path(tmp)))
        except DemoFailed as exc:
            raise SystemExit(f"demo failed: {exc}") from None


if __name__ == "__main__":
    main()
