"""What the replayers send: floor scripts from event logs, and frames from stored bursts."""

from __future__ import annotations

from pathlib import Path

from ptt.audio.codec import FRAME_BYTES, OpusEncoder
from ptt.protocol.messages import Priority
from ptt.record.events import Event
from ptt.record.export import replay_bursts
from ptt.record.recorder import Recorder
from ptt.record.replay import burst_frames, floor_script

T0 = 1_714_564_800.0


def ev(t: float, kind: str, **fields: object) -> Event:
    return Event(T0 + t, "ops", kind, fields)


def test_server_log_gives_requests_and_own_releases_only() -> None:
    script = floor_script([
        ev(0.0, "floor_request", user="ann", priority=0),
        ev(0.0, "floor_grant", user="ann", burst=1),
        ev(0.2, "floor_request", user="cat", priority=2),
        ev(0.2, "floor_revoke", user="ann", burst=1, cause="preempted"),
        ev(0.7, "floor_release", user="ann", burst=1, reason="preempted"),
        ev(1.5, "floor_release", user="cat", burst=2, reason="released"),
    ])
    assert [(round(a.at, 3), a.user, a.action, a.priority) for a in script] == [
        (0.0, "ann", "request", Priority.NORMAL),
        (0.2, "cat", "request", Priority.EMERGENCY),
        (1.5, "cat", "release", Priority.NORMAL),
    ]


def test_member_log_turns_announced_talkers_into_requests_and_releases() -> None:
    script = floor_script([
        ev(1.0, "floor_grant", user="ann", burst=1, seen_by="member"),
        ev(2.0, "floor_grant", user="bob", burst=2, seen_by="member"),
        ev(3.0, "floor_idle", burst=2),
    ])
    assert [(a.at, a.user, a.action) for a in script] == [
        (0.0, "ann", "request"), (1.0, "ann", "release"), (1.0, "bob", "request"),
        (2.0, "bob", "release")]


def test_lost_slots_are_sent_as_lost_frame_packets_at_their_times(tmp_path: Path) -> None:
    enc = OpusEncoder()
    packets = [enc.encode(bytes([i]) * FRAME_BYTES) for i in range(10)]
    with Recorder(tmp_path) as rec:
        rec.burst_started("ops", "ann", 1, T0, first_seq=0)
        for seq, p in enumerate(packets):
            if seq not in (3, 4):
                rec.frame("ops", 1, seq, p, T0 + seq * 0.02)
        rec.burst_ended("ops", 1, T0 + 0.2)
    (rb,) = replay_bursts(tmp_path / "ops")
    frames, converted = burst_frames(rb)
    assert not converted
    assert [round(at, 3) for at, _ in frames] == [round(i * 0.02, 3) for i in range(10)]
    assert [p for _, p in frames if len(p) > 1] == [p for i, p in enumerate(packets)
                                                    if i not in (3, 4)]
    assert [len(frames[i][1]) for i in (3, 4)] == [1, 1]  # TOC only: decoders conceal them
