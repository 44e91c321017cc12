"""bench/run_all.py rewrites only the sections of docs/benchmarks.md of the benchmarks it ran."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import run_all  # noqa: E402

DOC = """# Benchmarks

intro

## Floor
floor figures, explained by hand

## Relay
relay figures

## A figure measured once by hand
kept
"""
HEADINGS = {"floor": {"## Floor"}, "relay": {"## Relay"}}


def test_the_split_keeps_every_byte() -> None:
    head, parts = run_all.split_doc(DOC)
    assert head == "# Benchmarks\n\nintro\n\n" and len(parts) == 3
    assert head + "".join(parts) == DOC


def test_a_run_replaces_its_section_in_place_and_leaves_the_others_as_written() -> None:
    out = run_all.update_doc(DOC, {"relay": "## Relay\nnew relay figures\n"}, HEADINGS)
    assert out == DOC.replace("relay figures", "new relay figures")
    # the same text again changes nothing
    assert run_all.update_doc(out, {"relay": "## Relay\nnew relay figures\n"}, HEADINGS) == out


def test_a_renamed_section_is_found_by_its_old_heading() -> None:
    headings = {**HEADINGS, "floor": {"## Floor", "## Floor requests per second"}}
    out = run_all.update_doc(DOC, {"floor": "## Floor requests per second\nnew\n"}, headings)
    assert "## Floor\n" not in out and out.index("## Floor requests") < out.index("## Relay")


def test_a_new_section_goes_after_the_benchmark_before_it() -> None:
    # floor_access comes between floor and relay in BENCHMARKS
    out = run_all.update_doc(DOC, {"floor_access": "## Access\nfigures\n"}, HEADINGS)
    titles = [line for line in out.splitlines() if line.startswith("## ")]
    assert titles == ["## Floor", "## Access", "## Relay", "## A figure measured once by hand"]
    assert "floor figures, explained by hand\n\n## Access\nfigures\n\n## Relay" in out


def test_a_first_run_writes_the_header() -> None:
    out = run_all.update_doc("", {"relay": "## Relay\nx\n"}, HEADINGS)
    assert out.startswith("# Benchmarks\n") and out.endswith("\n\n## Relay\nx\n")
