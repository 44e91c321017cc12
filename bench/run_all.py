"""Run every benchmark and rewrite docs/benchmarks.md with the figures, commands and machine.

    make bench                                  # all of them, full size
    .venv/bin/python bench/run_all.py --quick   # small sizes, to check the harness
    .venv/bin/python bench/run_all.py floor relay   # only some

Each benchmark module has ``run(quick: bool) -> dict``. The dict may hold ``title``, ``command``,
``target``, ``notes``, ``rows`` (a list of dicts, rendered as a table) and any other scalar figures
(rendered as a key/value table). Results are kept per benchmark in docs/bench-results.json; a run
rewrites only the sections of docs/benchmarks.md of the benchmarks it ran, in place, and leaves
every other section as written (figures measured by hand, explanations added since).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from loadgen import machine_line as machine  # noqa: E402  (the same line every bench prints)

DOC = ROOT / "docs" / "benchmarks.md"
STORE = ROOT / "docs" / "bench-results.json"

# name -> module; order is the order of docs/benchmarks.md
BENCHMARKS = {
    "floor": "bench_floor",
    "floor_access": "bench_floor_access",
    "relay": "bench_relay",
    "fanout": "bench_fanout",
    "voice_quality": "bench_voice_quality",
    "talk_wire": "bench_talk_wire",
    "mouth_to_ear": "bench_mouth_to_ear",
    "late_entry": "bench_late_entry",
    "multicast": "bench_multicast",
    "crypto": "bench_crypto",
    "voice_auth": "bench_voice_auth",
    "load": "bench_load",
    "idle": "bench_idle",
    "memory": "bench_memory",
    "fuzz": "bench_fuzz",
    "login_flood": "bench_login_flood",
    "pages": "bench_pages",
    "cluster_failover": "bench_cluster_failover",
    "cluster": "bench_cluster",
}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v == 0 or 0.01 <= abs(v) < 1e6:
            return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
        return f"{v:.3g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    cols = list(dict.fromkeys(k for r in rows for k in r))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return out + [""]


def render(name: str, res: dict[str, Any]) -> str:
    out = [f"## {res.get('title', name)}", ""]
    if "error" in res:
        out += [f"Not measured in the last run: `{res['error']}`", ""]
    if res.get("target"):
        out += [f"Target: {res['target']}", ""]
    out += _table(res.get("rows") or [])
    # further tables of the same benchmark, each under its own heading, with its own notes
    for extra in res.get("tables", []):
        out += [f"### {extra['title']}", ""] + _table(extra.get("rows") or [])
        if extra.get("notes"):
            out += [str(extra["notes"]), ""]
    scalars = {k: v for k, v in res.items()
               if k not in ("title", "command", "target", "notes", "rows", "tables", "error",
                            "when", "machine", "quick")
               and isinstance(v, (int, float, str, bool))}
    if scalars:
        out += ["| figure | value |", "|---|---|"]
        out += [f"| {k} | {_fmt(v)} |" for k, v in scalars.items()]
        out.append("")
    if res.get("notes"):
        out += [str(res["notes"]), ""]
    cmd = res.get("command", f".venv/bin/python bench/{BENCHMARKS[name]}.py")
    out += [f"Command: `{cmd}`", "",
            f"Measured {res.get('when', '?')} on {res.get('machine', '?')}"
            + (" (quick mode)" if res.get("quick") else "") + ".", ""]
    return "\n".join(out)


HEADER = "\n".join([
    "# Benchmarks",
    "",
    "Speed and quality targets of ptt, measured by the scripts in `bench/`. `make bench` runs",
    "them all and rewrites this file (`bench/run_all.py`); each section names the command",
    "that produced it and the machine it ran on. Targets come from the issues; anchors are",
    "peers measured on the same machine (see ../shared/TESTING.md).",
    "",
    "",
])


def split_doc(doc: str) -> tuple[str, list[str]]:
    """``doc``'s text before its first ``## `` heading, and its ``## `` sections, each with its
    text up to the next one: ``doc == head + "".join(sections)``."""
    starts = [m.start() for m in re.finditer(r"^## ", doc, re.MULTILINE)]
    bounds = starts + [len(doc)]
    head = doc[:starts[0]] if starts else doc
    return head, [doc[a:b] for a, b in zip(bounds, bounds[1:])]


def update_doc(doc: str, sections: dict[str, str], headings: dict[str, set[str]]) -> str:
    """``doc`` with the sections of the benchmarks just run (``sections``: name -> new text)
    replaced where they stand.

    ``headings`` gives each benchmark's possible headings (its title now and before a run that
    changed it). Every other section stays as written: the document owns the text, and a run
    owns only the sections it measured again. A section not in ``doc`` yet goes after the
    nearest earlier benchmark's section (BENCHMARKS order), else before all of them."""
    head, parts = split_doc(doc)
    if not head.strip():
        head = HEADER
    placed: dict[str, int] = {}
    for name in BENCHMARKS:
        for i, part in enumerate(parts):
            if part.splitlines()[0] in headings.get(name, {f"## {name}"}):
                placed[name] = i
                break
    order = list(BENCHMARKS)
    for name in order:
        if name not in sections:
            continue
        text = sections[name].rstrip("\n") + "\n\n"
        if name in placed:
            parts[placed[name]] = text
            continue
        before = [placed[n] for n in order[:order.index(name)] if n in placed]
        at = max(before) + 1 if before else 0
        parts.insert(at, text)
        placed = {n: i + (i >= at) for n, i in placed.items()}
        placed[name] = at
    return (head + "".join(parts)).rstrip("\n") + "\n"


def write_doc(results: dict[str, dict[str, Any]], ran: dict[str, str | None]) -> None:
    """Rewrite the sections of the benchmarks in ``ran`` (name -> its title before the run)."""
    headings = {name: {f"## {res.get('title') or name}"} for name, res in results.items()}
    for name, old in ran.items():
        headings[name].add(f"## {old or name}")
    doc = DOC.read_text() if DOC.exists() else ""
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(update_doc(doc, {n: render(n, results[n]) for n in ran}, headings))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"some of: {', '.join(BENCHMARKS)}")
    ap.add_argument("--quick", action="store_true", help="small sizes (checks the harness)")
    args = ap.parse_args()
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, Any]] = json.loads(STORE.read_text()) if STORE.exists() else {}
    ran: dict[str, str | None] = {}
    failed = 0
    for name in args.names or list(BENCHMARKS):
        module = BENCHMARKS[name]
        if not (ROOT / "bench" / f"{module}.py").exists():
            continue
        print(f"== {name} ({module})", flush=True)
        t0 = time.monotonic()
        try:
            res = importlib.import_module(module).run(quick=args.quick)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            res = {"error": f"{type(exc).__name__}: {exc}"}
            failed += 1
        res.update(when=time.strftime("%Y-%m-%d"), machine=machine(), quick=args.quick)
        res.setdefault("command", f".venv/bin/python bench/{module}.py"
                       + (" --quick" if args.quick else ""))
        ran[name] = results.get(name, {}).get("title")
        results[name] = res
        print(f"   done in {time.monotonic() - t0:.1f} s", flush=True)
        STORE.write_text(json.dumps(results, indent=1, default=str))
        write_doc(results, ran)
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
