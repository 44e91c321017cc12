"""Loss feedback on the real commands: ``ptt talk --wav`` pages ``ptt listen --out`` through the
impairment proxy (``python -m ptt.faults.proxy``), and the talker's protection follows the
listener's link: more copies within 2 s of the burst's start when the server->listener path loses
20 % of the voice, bare frames within 5 s on a clean path. Seen twice: in the link lines the
talker prints, and in what it puts on the wire: the proxy's ``--trace`` of every voice datagram
(time, direction, UDP payload bytes)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ptt.media.sender import OFFSETS, START_REDUNDANCY
from tests.acceptance.harness import Site, no_traceback
from tests.ports import free_udp_port

TEXT = ("Unit seven, please report to the loading dock at gate four. Emergency crews are standing "
        "by near the north entrance, and the north entrance is now closed.")
COPIES = re.compile(r"link: ([0-9.]+)% loss.* -> (no copies|1 copy|(\d) copies)")


@dataclass
class Lines:
    """A process's output lines as they come, each with the monotonic time it was read."""

    proc: subprocess.Popen[str]
    stream: str = "stdout"
    seen: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in getattr(self.proc, self.stream):
            self.seen.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, needle: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, line in self.seen:
                if needle in line:
                    return t
            time.sleep(0.02)
        raise AssertionError(f"no line with {needle!r} in {timeout} s: {self.seen}")


def ended(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    """(exit code, stderr) once ``proc`` ends by itself; its stdout is a :class:`Lines`'."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"still running after {timeout} s") from None
    assert proc.stderr is not None
    return proc.returncode, proc.stderr.read()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ptt.audio.samples import make_speech_wav

    return make_speech_wav(tmp_path_factory.mktemp("speech") / "notice.wav", TEXT)


def page_through_proxy(site: Site, speech: Path, *proxy_args: str
                       ) -> tuple[float, list[tuple[float, int]], list[tuple[float, str]], str]:
    """ann pages g with ``speech`` while bob listens, both through a proxy with ``proxy_args``.

    Returns (when the floor was granted, [(seconds since ann's first voice datagram, its UDP
    payload bytes)] as the proxy received them, ann's output lines with times, bob's output)."""
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    port = free_udp_port()
    proxy = subprocess.Popen(
        [sys.executable, "-m", "ptt.faults.proxy", "--listen", f"127.0.0.1:{port}",
         "--server", site.address, "--trace", str(site.root / "trace.txt"), *proxy_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    counters = Lines(proxy, "stderr")
    listener = talker = None
    try:
        counters.wait_for("proxy listening", 10.0)
        via = ["--server", f"127.0.0.1:{port}"]
        listener = site.spawn("bob", "listen", "g", "--out", str(site.root / "bob.wav"),
                              "--bursts", "1", *via)
        heard = Lines(listener)
        heard.wait_for("joined", 15.0)
        talker = site.spawn("ann", "talk", "g", "--wav", str(speech), *via)
        said = Lines(talker)
        granted = said.wait_for("floor granted", 15.0)
        for p, bound in ((talker, 40.0), (listener, 15.0)):
            code, err = ended(p, bound)
            assert code == 0, err
            no_traceback(err)
    finally:
        for p in (talker, listener):
            if p is not None and p.poll() is None:
                p.kill()
        proxy.terminate()
        proxy.wait(5.0)
    ups = [(float(t), int(size)) for t, way, size in
           (line.split() for line in (site.root / "trace.txt").read_text().splitlines())
           if way == "up"]
    first = ups[0][0]
    ups = [(t - first, size) for t, size in ups]
    return granted, ups, said.seen, "\n".join(line for _, line in heard.seen)


def copies_of(line: str) -> int | None:
    mo = COPIES.search(line)
    if mo is None:
        return None
    return int(mo.group(3)) if mo.group(3) else {"no copies": 0, "1 copy": 1}[mo.group(2)]


def kbps(ups: list[tuple[float, int]], start: float, end: float) -> float:
    """ann's voice payload rate at the proxy from ``start`` to ``end`` s into the burst."""
    return sum(size for t, size in ups if start <= t < end) * 8 / (end - start) / 1000


@pytest.mark.slow
def test_a_lossy_listener_link_raises_the_talkers_protection_within_2_s(
        site: Site, speech: Path) -> None:
    granted, ups, said, heard = page_through_proxy(site, speech, "--loss", "down.voice=0.2",
                                                   "--seed", "5")
    links = [(t - granted, copies_of(line)) for t, line in said if copies_of(line) is not None]
    assert links, said
    # the first report puts more than the starting copies on every packet, within 2 s
    start = len(OFFSETS[START_REDUNDANCY])
    raised = [t for t, k in links if k is not None and k > start]
    assert raised and raised[0] <= 2.0, links
    assert all(k is not None and k > start for t, k in links if t >= raised[0]), links
    # on the wire: three copies at 20 % loss, paid for by a lower Opus rate (so the bytes need
    # not grow past the two copies of the start)
    later = kbps(ups, 3.0, 7.0)
    assert later <= 110.0, later  # within 110 kbit/s of UDP payload
    assert "lost" in heard and re.search(r"received [0-9.]+% \(\d+ of \d+ frames lost", heard)


@pytest.mark.slow
def test_a_clean_path_drops_to_bare_frames_within_5_s(site: Site, speech: Path) -> None:
    granted, ups, said, heard = page_through_proxy(site, speech)
    links = [(t - granted, copies_of(line)) for t, line in said if copies_of(line) is not None]
    bare = [t for t, k in links if k == 0]
    assert bare and bare[0] <= 5.0, links
    # one stream of bare frames: well below the 80 kbit/s of two copies on every packet
    clean = kbps(ups, 5.0, 8.0)
    assert clean < 50.0, clean
    assert clean < kbps(ups, 0.0, 0.5) * 0.75, clean
    # no loss on the path; a starved listener may still read some packets too late to play
    assert re.search(r"received 100% \(0 of \d+ frames lost(; \d+ came too late to play)?\)",
                     heard), heard
