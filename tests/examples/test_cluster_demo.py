"""`make cluster-demo` runs three cluster nodes over the real engines: this runs the same script
and checks its story (a page across nodes, then the home killed and a survivor granting)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ptt.cluster.engines import EngineError, binary

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cluster_demo_pages_across_nodes_and_fails_over() -> None:
    for engine in ("postgres", "nats-server", "etcd"):
        try:
            binary(engine)
        except EngineError as exc:
            pytest.skip(str(exc))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "cluster_demo.py")],
                          capture_output=True, text=True, timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    # c claims the group, the page is granted by it and seen on every node
    assert re.search(r"node c\s+group volunteers: claimed \(home c, fencing \d+\)", out), out
    for node in "abc":
        assert re.search(rf"node {node}\s+\[volunteers\] floor granted to ann", out), out
    heard = re.search(r"ann on a -> bob on b, group homed on c: ([\d.]+) s heard with sound "
                      r"of ([\d.]+) s paged", out)
    assert heard, out
    assert float(heard.group(1)) >= float(heard.group(2)) - 0.5  # nearly every frame crossed
    over = re.search(r"node c killed; node ([ab]) claimed volunteers after ([\d.]+) s "
                     r"\(fencing (\d+) -> (\d+)\); bob granted by the new home ([\d.]+) s", out)
    assert over, out
    assert int(over.group(4)) > int(over.group(3))
    assert float(over.group(2)) < 5.0  # 1 s leases: ~1.1 s on an idle machine
    assert re.search(rf"node {over.group(1)}\s+\[volunteers\] floor granted to bob", out), out
