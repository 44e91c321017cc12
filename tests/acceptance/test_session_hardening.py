"""A talker's session survives what does not prove it over: a spoofed NO_SESSION from its own
address, and a NAT that moves its source port mid-page. Real server, real `ptt` processes."""

from __future__ import annotations

import re
import signal
import socket
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest

from ptt.audio.samples import make_speech_wav
from tests.acceptance.harness import Site, finish, no_traceback, read_until
from tests.e2e.audiocheck import aligned_correlation
from tests.e2e.serverproc import free_udp_port

TEXT = "Unit seven, please report to the loading dock at gate four. Repeat, gate four."


def pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes())


def talker_address(site: Site, user: str, timeout: float = 10.0) -> tuple[str, int]:
    """Where the server sees ``user``'s latest session (its session_started log line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.findall(rf"session_started user={user} .*?addr=([\d.]+):(\d+)",
                           site.server.output())
        if found:
            return found[-1][0], int(found[-1][1])
        time.sleep(0.05)
    raise AssertionError(f"no session_started for {user}:\n{site.server.output()}")


def spoofed_udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4 packet carrying UDP from ``src`` (any 127.x address and port) to ``dst``; the
    kernel fills in the IP checksum and length, a zero UDP checksum means none."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64,
                     socket.IPPROTO_UDP, 0, socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    return ip + udp


def unknown_session_datagram(session_id: int) -> bytes:
    """30 bytes shaped as a sealed datagram naming a session the server does not know: what
    draws a plain NO_SESSION back to whoever it claims to come from."""
    return bytes([0x53, 1]) + session_id.to_bytes(4, "big") + bytes(8) + bytes(16)


@pytest.fixture
def paging_site(site: Site, tmp_path: Path) -> tuple[Site, Path]:
    site.add_users("ann", "bob")
    site.group("g", "ann", "bob")
    return site, make_speech_wav(tmp_path / "speech.wav", TEXT)


@pytest.mark.skipif(not hasattr(socket, "SOCK_RAW") or __import__("os").geteuid() != 0,
                    reason="spoofing a source address needs a raw socket (root)")
def test_a_spoofed_no_session_from_the_talkers_address_does_not_end_its_page(
        paging_site: tuple[Site, Path], tmp_path: Path) -> None:
    site, speech = paging_site
    out = tmp_path / "bob.wav"
    bob = site.spawn("bob", "listen", "g", "--out", str(out), "--bursts", "1")
    read_until(bob, "g")
    ann = site.spawn("ann", "talk", "g", "--wav", str(speech))
    read_until(ann, "floor granted", timeout=15)
    ann_addr = talker_address(site, "ann")
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sent = 0
    try:
        time.sleep(0.5)  # into the page
        deadline = time.monotonic() + 3.0
        while ann.poll() is None and time.monotonic() < deadline:  # bounded: ~30 datagrams
            raw.sendto(spoofed_udp(ann_addr, site.server.address,
                                   unknown_session_datagram(0x5EED0000 + sent)),
                       (site.server.address[0], 0))
            sent += 1
            time.sleep(0.1)
    finally:
        raw.close()
    code, stdout, stderr = finish(ann, timeout=40)
    assert code == 0, f"{stdout}\n{stderr}"
    assert sent >= 10
    assert "floor lost" not in stdout + stderr
    assert "done: sent" in stdout
    code, _, bob_err = finish(bob, timeout=20)
    assert code == 0, bob_err
    no_traceback(stderr + bob_err)
    corr = aligned_correlation(pcm(speech), pcm(out))
    assert corr >= 0.9


def test_a_talker_whose_nat_moves_its_port_mid_page_keeps_talking(
        paging_site: tuple[Site, Path], tmp_path: Path) -> None:
    site, speech = paging_site
    port = free_udp_port()
    proxy = subprocess.Popen(
        [sys.executable, "-m", "ptt.faults.proxy", "--listen", f"127.0.0.1:{port}",
         "--server", site.address], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proxy.stderr is not None
        assert "proxy listening" in proxy.stderr.readline()
        out = tmp_path / "bob.wav"
        bob = site.spawn("bob", "listen", "g", "--out", str(out), "--bursts", "1")
        read_until(bob, "g")
        ann = site.spawn("ann", "talk", "g", "--wav", str(speech),
                         env=site.env("ann", PTT_SERVER=f"127.0.0.1:{port}"))
        read_until(ann, "floor granted", timeout=15)
        time.sleep(1.0)  # into the page
        proxy.send_signal(signal.SIGUSR2)
        said = [proxy.stderr.readline() for _ in range(3)]  # after the two config lines
        assert any("rebind: 1 clients" in line for line in said), said
        code, stdout, stderr = finish(ann, timeout=40)
        assert code == 0, f"{stdout}\n{stderr}"
        assert "floor lost" not in stdout + stderr
        code, _, bob_err = finish(bob, timeout=20)
        assert code == 0, bob_err
        no_traceback(stderr + bob_err)
        # the whole page was heard but for a gap of a few frames at most
        corr = aligned_correlation(pcm(speech), pcm(out))
        assert corr >= 0.9
        moved = re.findall(r"ann's client moved to 127\.0\.0\.1:(\d+)", site.server.output())
        assert len(moved) == 1, site.server.output()
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.communicate(timeout=10)
