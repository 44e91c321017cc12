"""A group as a member sees it, recorded without a network: the member's client events and opened
voice frames -> Ogg Opus files and events.jsonl."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ptt.audio.codec import FRAME_BYTES, OpusEncoder
from ptt.media.sender import Packetizer
from ptt.protocol import client as cl
from ptt.protocol import messages as m
from ptt.record.catalog import load
from ptt.record.events import read_events
from ptt.record.live import LiveRecording
from ptt.record.member import MemberRecording
from ptt.wire.voice import VoiceFlags, decode_voice

T0 = 1_714_564_800.0


def _burst(burst_id: int, n: int) -> tuple[list[bytes], list[bytes]]:
    enc = OpusEncoder()
    opus = [enc.encode(bytes([i % 5]) * FRAME_BYTES) for i in range(n)]
    pk = Packetizer(group_id=3, sender=9, burst_id=burst_id, offsets=())
    return opus, [pk.packetize(p) for p in opus]


def test_announced_talkers_bursts_and_events_are_recorded(tmp_path: Path) -> None:
    live = LiveRecording(tmp_path)
    rec = MemberRecording(live, "ops", "rec")
    rec.event(cl.TalkerChanged("ops", "ann", 5, m.Priority.NORMAL), T0)
    rec.event(cl.TalkerChanged("drivers", "cat", 8), T0)  # another group: left out
    ann, datagrams = _burst(5, 20)
    for i, d in enumerate(datagrams):
        header, payload = decode_voice(d)
        if i % 2:  # an encrypted group's opened frame keeps its flag: stored as plain Opus
            header = dataclasses.replace(header, flags=header.flags | VoiceFlags.ENCRYPTED)
        rec.voice(header, payload, T0 + 0.05 + i * 0.02)
    rec.event(cl.TalkerChanged("ops", None, 5), T0 + 1.0)  # idle: the burst ends (after grace)
    # a burst whose announcement was missed takes its talker from the member's current view
    bob, datagrams = _burst(6, 10)
    for i, d in enumerate(datagrams):
        rec.voice(*decode_voice(d), T0 + 2.0 + i * 0.02, current=("bob", 6))
    rec.event(cl.PresenceChanged("ops", "cat", True), T0 + 2.5)
    rec.event(cl.Disconnected("timeout"), T0 + 3.0)
    rec.event(cl.Connected(1, m.Role.VOLUNTEER, ["ops"]), T0 + 4.0)
    rec.page("ann", 17, True, T0 + 4.5, None, "no key")
    live.tick(T0 + 5.0)
    live.close(T0 + 6.0)
    session = load(tmp_path / "ops")
    assert [(b.talker, b.burst_id) for b in session.bursts] == [("ann", 5), ("bob", 6)]
    assert [p.data for p in session.bursts[0].stream.packets] == ann
    assert [p.data for p in session.bursts[1].stream.packets] == bob
    kinds = [(e.kind, e.get("user")) for e in read_events(tmp_path / "ops" / "events.jsonl").events]
    for expected in [("floor_grant", "ann"), ("floor_idle", None), ("join", "cat"),
                     ("disconnected", None), ("reconnected", None), ("page", "ann")]:
        assert expected in kinds, (expected, kinds)
    assert ("floor_grant", "cat") not in kinds
