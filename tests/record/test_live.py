"""LiveRecording: voice datagrams as the relay forwards them -> Ogg Opus files (no network)."""

from __future__ import annotations

from pathlib import Path

from ptt.audio.codec import FRAME_BYTES, OpusEncoder
from ptt.media.sender import Packetizer
from ptt.record.catalog import load
from ptt.record.live import LiveRecording
from ptt.wire.voice import decode_voice

T0 = 1_714_564_800.0


def frames(n: int) -> list[bytes]:
    enc = OpusEncoder()
    return [enc.encode(bytes([i % 7]) * FRAME_BYTES) for i in range(n)]


def test_lost_frames_are_recovered_from_redundant_copies(tmp_path: Path) -> None:
    opus = frames(30)
    pk = Packetizer(group_id=3, sender=9, burst_id=5, redundancy=2)  # copies at offsets 1, 3
    datagrams = [pk.packetize(p, last=i == len(opus) - 1) for i, p in enumerate(opus)]
    live = LiveRecording(tmp_path)
    lost = {4, 10, 11, 20}  # each one still rides in a later packet (offset 1 or 3)
    for i, d in enumerate(datagrams):
        if i in lost:
            continue
        header, payload = decode_voice(d)
        live.voice("ops", "ann", header, payload, T0 + 0.05 + i * 0.02)
    live.tick(T0 + 2)  # the END_OF_BURST frame ended it, after its grace
    live.close(T0 + 3)
    (summary,) = live.finished
    assert (summary.frames, summary.lost, summary.late) == (30, 0, 0)
    session = load(tmp_path / "ops")
    (burst,) = session.bursts
    assert [p.data for p in burst.stream.packets] == opus  # every packet, bit for bit
    assert burst.talker == "ann" and abs(burst.start - (T0 + 0.05)) < 1e-3


def test_a_late_joiner_keeps_the_burst_timing_and_stragglers_start_nothing(tmp_path: Path
                                                                           ) -> None:
    opus = frames(20)
    pk = Packetizer(group_id=3, sender=9, burst_id=7, redundancy=0)
    datagrams = [pk.packetize(p, last=i == 19) for i, p in enumerate(opus)]
    live = LiveRecording(tmp_path)
    for i in range(5, 20):  # joined at frame 5
        header, payload = decode_voice(datagrams[i])
        live.voice("ops", "bob", header, payload, T0 + i * 0.02)
    live.end_burst("ops", 7, T0 + 1)
    header, payload = decode_voice(datagrams[19])
    live.voice("ops", "bob", header, payload, T0 + 1.1)  # a duplicate after the end
    live.close(T0 + 2)
    assert len(live.finished) == 1 and live.finished[0].lost == 5
    (burst,) = load(tmp_path / "ops").bursts
    assert abs(burst.start - T0) < 1e-3  # frame 0's time, though frame 5 came first
    assert [p.data for p in burst.stream.packets][5:] == opus[5:]
    assert len(list((tmp_path / "ops").glob("*.opus"))) == 1
