"""A server's recorded groups without a server: its events and relayed voice -> files and
events.jsonl (what ``ptt server --record`` writes)."""

from __future__ import annotations

from pathlib import Path

from ptt.audio.codec import FRAME_BYTES, OpusEncoder
from ptt.media.sender import Packetizer
from ptt.protocol import floor as fl
from ptt.protocol import messages as m
from ptt.protocol.server import FloorEvent, FloorRequested, MemberJoined
from ptt.record.catalog import load
from ptt.record.events import read_events
from ptt.record.live import LiveRecording
from ptt.record.server import ServerGroupsRecording
from ptt.wire.voice import VoiceFlags, decode_voice

T0 = 1_714_564_800.0


def _voice(burst_id: int, n: int, flags: VoiceFlags = VoiceFlags.NONE) -> list[bytes]:
    enc = OpusEncoder()
    pk = Packetizer(group_id=3, sender=9, burst_id=burst_id, offsets=())
    out = [pk.packetize(enc.encode(bytes([i % 5]) * FRAME_BYTES)) for i in range(n)]
    if flags:  # a sealed group's frames carry the flag; the payload is not Opus then
        out = [d[:2] + bytes([d[2] | flags]) + d[3:] for d in out]
    return out


def test_floor_events_of_recorded_groups_and_their_voice_are_recorded(tmp_path: Path) -> None:
    live = LiveRecording(tmp_path)
    rec = ServerGroupsRecording(live)
    rec.record({"ops", "vault"}, {"vault"}, T0)
    rec.event(FloorRequested("ops", "ann", m.Priority.NORMAL), T0)
    rec.event(FloorEvent(fl.Granted("ops", "ann", 5, m.Priority.NORMAL, 30.0, False)), T0)
    rec.event(MemberJoined("drivers", "cat"), T0)  # not recorded
    for i, d in enumerate(_voice(5, 10)):
        rec.voice("ops", "ann", *decode_voice(d), T0 + 0.05 + i * 0.02)
    rec.event(FloorRequested("ops", "bob", m.Priority.HIGH), T0 + 0.5)
    rec.event(FloorEvent(fl.Revoked("ops", "ann", 5, m.RevokeCause.PREEMPTED, 0.5)), T0 + 0.5)
    rec.event(FloorEvent(fl.Idle("ops", 5)), T0 + 1.0)
    for i, d in enumerate(_voice(8, 3)):  # end-to-end encrypted: noted once, never stored
        rec.voice("vault", "bob", *decode_voice(d), T0 + 1.1 + i * 0.02)
    for i, d in enumerate(_voice(9, 10)):  # open when ops stops recording: ended there
        rec.voice("ops", "ann", *decode_voice(d), T0 + 2.0 + i * 0.02)
    rec.record({"vault"}, {"vault"}, T0 + 2.5)
    rec.event(FloorRequested("ops", "ann", m.Priority.NORMAL), T0 + 2.6)  # no longer recorded
    live.close(T0 + 3.0)
    ops = load(tmp_path / "ops")
    assert [(b.talker, b.burst_id, len(b.stream.packets)) for b in ops.bursts] == [
        ("ann", 5, 10), ("ann", 9, 10)]
    events = [e for e in read_events(tmp_path / "ops" / "events.jsonl").events
              if e.kind.startswith(("floor_", "join"))]  # the recorder's own lines left out
    kinds = [(e.kind, e.get("user")) for e in events]
    assert kinds[:4] == [("floor_request", "ann"), ("floor_grant", "ann"),
                         ("floor_request", "bob"), ("floor_revoke", "ann")]
    assert [e.get("by") for e in events if e.kind == "floor_revoke"] == ["bob"]
    assert kinds.count(("floor_request", "ann")) == 1
    vault = read_events(tmp_path / "vault" / "events.jsonl").events
    assert [(e.kind, e.get("burst")) for e in vault if e.kind.startswith("voice")] == [
        ("voice_encrypted", 8)]
    assert not list((tmp_path / "vault").glob("*.opus"))
