"""Where a server process's CPU went, from py-spy's collapsed stacks (``--format raw``).

    .venv/bin/python bench/profile_summary.py DIR/cluster-a.txt [more files] [--top 25]

Per file: the samples that ran (py-spy records only those unless ``--idle``), their share by
*part* (the innermost frame in a ptt module or in a library named below decides: the event
loop's own work, NATS, etcd/gRPC, the server's datagram path, the cluster routing...), and
the functions with the most samples of their own (self time).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

# (part, a substring of a frame's file path); the first that matches from the innermost frame
# outward names the sample's part. ptt's own modules are named by their path below ptt/.
LIBRARIES = (
    ("nats (client library)", "/nats/"),
    ("etcd (aetcd, gRPC, protobuf)", "/aetcd/"),
    ("etcd (aetcd, gRPC, protobuf)", "/grpc/"),
    ("etcd (aetcd, gRPC, protobuf)", "/google/protobuf"),
    ("psycopg", "/psycopg"),
    ("msgpack", "/msgpack/"),
)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


def parse(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    """Each stack (outermost frame first) as (function, file) pairs, with its sample count."""
    out = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for f in stack.split(";"):
            m = _FRAME.match(f)
            frames.append((m["func"], m["file"]) if m else (f, ""))
        out.append((frames, int(count)))
    return out


def part_of(frames: list[tuple[str, str]]) -> str:
    for func, file in reversed(frames):
        path = "/" + file  # py-spy names files relative to sys.path when it can
        for part, marker in LIBRARIES:
            if marker in path:
                return part
        if "/ptt/" in path:
            return "ptt/" + path.rsplit("/ptt/", 1)[1]
        if "/bench_" in path or path.startswith("/bench"):
            break  # the bench's own frames: what sits under them is the loop's
    leaf = frames[-1][1] if frames else ""
    if "asyncio" in leaf or "selectors" in leaf:
        return "asyncio (the loop itself)"
    return "other: " + (leaf.rsplit("/", 1)[-1] or "?")


def summary(path: Path, top: int) -> str:
    stacks = parse(path)
    total = sum(c for _, c in stacks) or 1
    parts: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, c in stacks:
        parts[part_of(frames)] += c
        if frames:
            func, file = frames[-1]
            own[f"{func} ({file.rsplit('/', 2)[-2:][-1] if file else '?'})"] += c
    lines = [f"{path.name}: {total} samples that ran"]
    lines.append("  by part:")
    lines += [f"    {100 * c / total:5.1f}%  {p}" for p, c in parts.most_common(top)]
    lines.append("  self time:")
    lines += [f"    {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    for f in args.files:
        if not f.is_file():
            print(f"profile_summary: no such file: {f}", file=sys.stderr)
            return 2
        print(summary(f, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
