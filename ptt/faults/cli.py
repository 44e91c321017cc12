"""``python -m ptt.faults.proxy``: run the impairment proxy by hand, in front of a real server.

Every impairment option applies to both directions and both kinds of datagram, unless its value is
scoped with ``SCOPE=``, where SCOPE is ``up`` (client -> server), ``down``, ``control``, ``voice``
or a pair like ``down.voice``. More specific scopes win over general ones::

    python -m ptt.faults.proxy --listen 127.0.0.1:7701 --server 127.0.0.1:7700 \\
        --loss 0.2 --jitter 20ms
    python -m ptt.faults.proxy --server 127.0.0.1:7700 --loss control=0.2 \\
        --loss voice=0.05 --burst voice=3 --delay 40ms --duplicate down=0.01

Then point clients at the proxy (``ptt talk ... --server 127.0.0.1:7701``). ``kill -USR1 PID``
starts a blackout (every client loses its network for ``--blackout`` seconds; with
``--blackout-way down`` only what the server sends is lost, ``up`` only what clients send);
``kill -USR2 PID``
moves every client to a new upstream port (a NAT rebinding); the counters are printed every
``--stats`` seconds and at exit.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import click

from ptt.cli.options import HostPortType, SecondsType
from ptt.faults.proxy import Direction, Impairment, ImpairmentProxy, Kind, ProxyConfig, Way
from ptt.wire.voice import HEADER_SIZE, peek_seq

DEFAULT_LISTEN_PORT = 7701
SCOPES: dict[str, list[tuple[Way, Kind]]] = {"": [(w, k) for w in Way for k in Kind]}
for _w in Way:
    SCOPES[_w.value] = [(_w, k) for k in Kind]
    for _k in Kind:
        SCOPES[f"{_w.value}.{_k.value}"] = [(_w, _k)]
for _k in Kind:
    SCOPES[_k.value] = [(w, _k) for w in Way]
    for _w in Way:
        SCOPES[f"{_k.value}.{_w.value}"] = [(_w, _k)]

FRACTION_FIELDS = ("loss", "reorder", "duplicate")
TIME_FIELDS = ("delay", "jitter", "reorder_delay")


def _parse(field: str, raw: str) -> tuple[str, float]:
    scope, _, text = raw.rpartition("=")
    scope = scope.strip().lower()
    if scope not in SCOPES:
        raise click.BadParameter(f"{raw!r}: unknown scope {scope!r}; use one of "
                                 f"{', '.join(s for s in SCOPES if s)}")
    if field in TIME_FIELDS:
        return scope, SecondsType(minimum=-1e-9).convert(text, None, None)
    try:
        value = float(text)
    except ValueError:
        raise click.BadParameter(f"{raw!r}: expected a number") from None
    if field in FRACTION_FIELDS and not 0.0 <= value <= 1.0:
        raise click.BadParameter(f"{raw!r}: expected a fraction from 0 to 1")
    return scope, value


def build_directions(options: dict[str, tuple[str, ...]]) -> tuple[Direction, Direction]:
    """(up, down) from ``{field: ("0.2", "voice=0.05", ...)}``: general values first, then
    one-part scopes, then pairs."""
    settings: list[tuple[int, str, str, float]] = []
    for fld, values in options.items():
        for raw in values:
            scope, value = _parse(fld, raw)
            settings.append((0 if not scope else scope.count(".") + 1, scope, fld, value))
    paths: dict[tuple[Way, Kind], dict[str, float]] = {(w, k): {} for w in Way for k in Kind}
    for _, scope, fld, value in sorted(settings, key=lambda s: s[0]):
        for path in SCOPES[scope]:
            paths[path][fld] = value
    try:
        imp = {p: Impairment(**kw) for p, kw in paths.items()}
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return (Direction(imp[(Way.UP, Kind.CONTROL)], imp[(Way.UP, Kind.VOICE)]),
            Direction(imp[(Way.DOWN, Kind.CONTROL)], imp[(Way.DOWN, Kind.VOICE)]))


def _scoped(name: str, help_text: str) -> Any:
    return click.option(f"--{name.replace('_', '-')}", name, multiple=True, metavar="[SCOPE=]V",
                        help=help_text)


def _describe(d: Direction) -> str:
    def one(i: Impairment) -> str:
        parts = [f"{k}={v:g}" for k, v in asdict(i).items()
                 if v and v != getattr(Impairment(), k)]
        return " ".join(parts) or "clean"
    return f"control: {one(d.control)}; voice: {one(d.voice)}"


@click.command()
@click.option("--listen", type=HostPortType(DEFAULT_LISTEN_PORT), default="127.0.0.1",
              metavar="HOST:PORT",
              help="Where clients send [default: 127.0.0.1:7701].")
@click.option("--server", type=HostPortType(7700), required=True, metavar="HOST:PORT",
              help="The ptt server to forward to.")
@_scoped("loss", "Mean loss fraction, 0..1.")
@_scoped("burst", "Mean loss burst length in datagrams (above 1: Gilbert-Elliott bursts).")
@_scoped("delay", "One-way delay, e.g. 40ms.")
@_scoped("jitter", "Uniform extra delay in [0, JITTER), e.g. 20ms (reorders when large).")
@_scoped("reorder", "Chance of holding a datagram back by --reorder-delay, 0..1.")
@_scoped("reorder_delay", "How long a reordered datagram is held back [default: 45ms].")
@_scoped("duplicate", "Chance of delivering a datagram twice, 0..1.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the loss and delay "
              "draws.")
@click.option("--blackout", "blackout_s", type=SecondsType(), default=10.0, show_default=True,
              metavar="SECONDS", help="Length of the blackout started by SIGUSR1.")
@click.option("--blackout-way", type=click.Choice(["up", "down", "both"]), default="both",
              show_default=True, help="What the blackout drops: up (client -> server), down "
              "(server -> client) or both.")
@click.option("--stats", "stats_s", type=SecondsType(), default=None, metavar="SECONDS",
              help="Print the counters this often.")
@click.option("--duration", type=SecondsType(), default=None, metavar="SECONDS",
              help="Stop by itself after this long.")
@click.option("--trace", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Write one line per voice datagram received: seconds since "
              "the proxy started, up or down, UDP payload bytes.")
@click.option("--fates", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Write one line per voice datagram received to FILE: seconds since the proxy started, up or down, its seq (-1: "
              "too short to have one), lost (by the loss model or a blackout) or ok.")
def main(listen: tuple[str, int], server: tuple[str, int], seed: int, blackout_s: float,
         blackout_way: str, stats_s: float | None, duration: float | None, trace: Path | None,
         fates: Path | None, **scoped: tuple[str, ...]) -> None:
    """Forward UDP between ptt clients and a server, impairing each direction."""
    up, down = build_directions(scoped)
    cfg = ProxyConfig(server=server, listen=listen, up=up, down=down, seed=seed)
    outs: list[IO[str] | None] = []
    try:
        for path in (trace, fates):
            try:
                outs.append(open(path, "w", buffering=1) if path is not None  # noqa: SIM115
                            else None)
            except OSError as exc:
                raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}"
                                           ) from None
        way = None if blackout_way == "both" else Way(blackout_way)
        asyncio.run(_serve(cfg, blackout_s, way, stats_s, duration, *outs))
    except KeyboardInterrupt:
        pass
    finally:
        for out in outs:
            if out is not None:
                out.close()


async def _serve(cfg: ProxyConfig, blackout_s: float, blackout_way: Way | None,
                 stats_s: float | None,
                 duration: float | None, trace: IO[str] | None = None,
                 fates: IO[str] | None = None) -> None:
    proxy = ImpairmentProxy(cfg)
    if trace is not None or fates is not None:
        loop = asyncio.get_running_loop()
        origin = loop.time()

        def tap(now: float, way: Way, kind: Kind, data: bytes, dropped: bool) -> None:
            if kind is not Kind.VOICE:
                return
            if trace is not None:
                trace.write(f"{now - origin:.6f} {way.value} {len(data)}\n")
            if fates is not None:
                seq = peek_seq(data) if len(data) >= HEADER_SIZE else -1
                fates.write(f"{now - origin:.6f} {way.value} {seq} "
                            f"{'lost' if dropped else 'ok'}\n")

        proxy.tap = tap
    try:
        await proxy.start()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {cfg.listen[0]}:{cfg.listen[1]}: "
                                   f"{exc.strerror or exc}") from None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def start_blackout() -> None:
        proxy.blackout(blackout_s, way=blackout_way)
        what = ("cut off" if blackout_way is None else
                "hears nothing back" if blackout_way is Way.DOWN else "is not heard")
        click.echo(f"blackout: every client {what} for {blackout_s:g} s", err=True)

    loop.add_signal_handler(signal.SIGUSR1, start_blackout)

    def rebind() -> None:
        click.echo(f"rebind: {proxy.rebind()} clients now reach the server from a new port",
                   err=True)

    loop.add_signal_handler(signal.SIGUSR2, rebind)
    host, port = proxy.address
    click.echo(f"proxy listening on {host}:{port} -> {cfg.server[0]}:{cfg.server[1]}", err=True)
    click.echo(f"  up   {_describe(cfg.up)}\n  down {_describe(cfg.down)}", err=True)
    try:
        async with asyncio.timeout(duration):
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), stats_s)
                except TimeoutError:
                    click.echo(format_counters(proxy), err=True)
    except TimeoutError:
        pass
    finally:
        proxy.close()
        click.echo(format_counters(proxy), err=True)


def format_counters(proxy: ImpairmentProxy) -> str:
    c = proxy.counters
    lines = [f"clients {c.clients}"]
    for way in Way:
        for kind in Kind:
            n = c.of(way).of(kind)
            lines.append(f"  {way.value:4} {kind.value:7} in {n.received} out {n.forwarded} "
                         f"lost {n.lost} blackout {n.blacked_out} dup {n.duplicated}")
    return "\n".join(lines)


__all__ = ["main", "build_directions", "format_counters"]
