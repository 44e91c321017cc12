"""A group's voice carries talker signatures only where members may hear it on a multicast
address: the 64 bytes of an Ed25519 signature (25.6 kbit/s, more than half of what a clean path
sends) buy nothing on the relay, where the server forwards the floor holder's frames alone. On
this machine multicast does not reach (no route to the group address: the server bridges
nothing, the talker falls back to the relay), so a relay group and an auto group send the same
bytes; where the server bridges a group or the talker multicasts, frames are signed
(tests/client/test_connection_keys.py, tests/security/test_talker_forgery_live.py). Seen at a
proxy in front of both talker and listener: ``ptt talk --wav`` into a relay group and into an
auto group, the same speech."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptt.audio.samples import make_speech_wav
from ptt.crypto.voice import SIGNATURE_SIZE
from tests.acceptance.harness import Site, page_heard, start_proxy, stop_proxy

TEXT = "Gate two is clear. Send the next bus to the north lot."
HEADER_ONLY = 40  # bytes: a voice header with no frame (a probe, a holder notice) is no longer


def first_frames(site: Site, group: str, wav: Path, tmp: Path) -> tuple[int, int]:
    """UDP payloads of the first voice frame the talker sends and the listener gets in
    ``group`` (one page of ``wav``): it carries no copies (nothing precedes it) and the same
    Opus packet each time, so two groups' differ only by what the group adds."""
    trace = tmp / f"trace-{group}.txt"
    proxy, addr = start_proxy(site.address, trace=trace)
    try:
        page_heard(site, "ann", "bob", group, wav, tmp / f"listen-{group}.log",
                   listen_args=("--out", str(tmp / f"{group}.wav"), "--duration", "60"),
                   listener_env=site.env("bob", PTT_SERVER=addr),
                   talker_env=site.env("ann", PTT_SERVER=addr), tail=0.5)
    finally:
        stop_proxy(proxy)
    lines = [line.split() for line in trace.read_text().splitlines()]
    up = [int(n) for _, way, n in lines if way == "up"]
    down = [int(n) for _, way, n in lines if way == "down"]
    assert len(up) > 50 and len(down) > 50, (up, down)
    # the server's holder notices (header only) come before the voice in an auto group
    return (next(n for n in up if n > HEADER_ONLY), next(n for n in down if n > HEADER_ONLY))


@pytest.mark.slow
def test_voice_no_multicast_listener_can_hear_is_not_signed(site: Site, tmp_path: Path) -> None:
    site.add_users("ann", "bob")
    site.group("relayed", "ann", "bob", mode="relay")
    site.group("either", "ann", "bob")  # auto: multicast where it works
    wav = make_speech_wav(tmp_path / "speech.wav", TEXT)
    relayed = first_frames(site, "relayed", wav, tmp_path)
    either = first_frames(site, "either", wav, tmp_path)
    assert either[0] == relayed[0], (relayed, either)  # the talker does not sign
    assert either[1] == relayed[1], (relayed, either)  # nor does the listener get a signature
    assert relayed[0] < 200 - SIGNATURE_SIZE, relayed  # a bare first frame: header, Opus, tag
