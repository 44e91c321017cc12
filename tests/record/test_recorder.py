"""The Recorder driven with a virtual clock: slots by sequence number, pages, bursts, events."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ptt.errors import RecordingError
from ptt.record.events import read_events
from ptt.record.ogg import read_pages
from ptt.record.opusfile import OpusStream, is_lost_packet, read_opus
from ptt.record.recorder import Recorder, safe_name
from tests.record.conftest import T0

FRAME = 0.02


def stream_of(path: Path) -> OpusStream:
    opus = read_opus(path, strict=True)
    assert len(opus.streams) == 1
    return opus.streams[0]


def talk(
    rec: Recorder,
    packets: list[bytes],
    order: list[int],
    *,
    burst: int = 1,
    group: str = "ops",
    seq0: int = 0,
) -> None:
    for k, i in enumerate(order):
        now = T0 + k * FRAME
        rec.frame(group, burst, (seq0 + i) & 0xFFFF, packets[i], now)
        rec.tick(now)


def test_a_burst_is_stored_bit_for_bit_with_tags_and_events(tmp_path: Path, packets) -> None:
    rec = Recorder(tmp_path)
    path = rec.burst_started("ops", "alice", 7, T0)
    assert path == tmp_path / "ops" / "20240501T120000.000Z-b7-alice.opus"
    talk(rec, packets, list(range(100)), burst=7)
    summary = rec.burst_ended("ops", 7, T0 + 2)
    assert summary is not None and summary.frames == 100 and summary.lost == 0
    assert summary.duration == pytest.approx(2.0)
    rec.close(T0 + 3)
    s = stream_of(path)
    assert [p.data for p in s.packets] == packets[:100]
    assert s.complete and s.head.channels == 1 and s.head.pre_skip == 312
    assert s.head.input_rate == 16000
    assert s.tags.vendor == "ptt"
    for key, value in [
        ("GROUP", "ops"),
        ("TALKER", "alice"),
        ("BURST", "7"),
        ("START", "2024-05-01T12:00:00.000Z"),
    ]:
        assert s.tag(key) == value
    assert (s.tag("ENCODER") or "").startswith("ptt ")
    log = read_events(tmp_path / "ops" / "events.jsonl")
    kinds = [e.kind for e in log.events]
    assert kinds == ["recorder_start", "burst_start", "burst_end", "recorder_stop"]
    end = log.events[2]
    assert end.get("frames") == 100 and end.get("duration_ms") == 2000
    assert end.get("file") == path.name


def test_missing_frames_keep_the_timing(tmp_path: Path, packets) -> None:
    rec = Recorder(tmp_path)
    path = rec.burst_started("ops", "alice", 1, T0, first_seq=0)
    order = [i for i in range(60) if i not in (0, 10, 11, 12, 59)]
    talk(rec, packets, order)
    summary = rec.burst_ended("ops", 1, T0 + 2)
    assert summary is not None and summary.lost == 4 and summary.frames == 55
    s = stream_of(path)
    assert len(s.packets) == 59  # the trailing loss is unknowable: the burst ends at seq 58
    for i, p in enumerate(s.packets):
        assert p.start == 960 * i
        if i in (0, 10, 11, 12):
            assert is_lost_packet(p.data) and len(p.data) == 1 and p.samples == 960
            assert p.data[0] == packets[i + 1 if i == 0 else 9][0] & 0xFC
        else:
            assert p.data == packets[i]


def test_reordered_late_and_duplicate_frames(tmp_path: Path, packets) -> None:
    rec = Recorder(tmp_path)
    path = rec.burst_started("ops", "alice", 1, T0, first_seq=0)
    order = list(range(30))
    order[3], order[4] = order[4], order[3]  # overtaken by one frame: still in its slot
    order.insert(20, 19)  # duplicate
    order.append(2)  # far too late: its page is on disk
    talk(rec, packets, order)
    summary = rec.burst_ended("ops", 1, T0 + 1)
    assert summary is not None
    assert (summary.frames, summary.lost, summary.late, summary.duplicate) == (30, 0, 1, 1)
    assert [p.data for p in stream_of(path).packets] == packets[:30]


def test_sequence_numbers_wrap(tmp_path: Path, packets) -> None:
    rec = Recorder(tmp_path)
    path = rec.burst_started("ops", "alice", 1, T0)
    talk(rec, packets, list(range(40)), seq0=65_520)
    rec.close(T0 + 1)
    assert [p.data for p in stream_of(path).packets] == packets[:40]


def test_first_frame_overtaken_is_still_first(tmp_path: Path, packets) -> None:
    rec = Recorder(tmp_path)
    path = rec.burst_started("ops", "alice", 1, T0)  # first_seq unknown
    talk(rec, packets, [1, 0] + list(range(2, 20)), seq0=500)
    rec.close(T0 + 1)
    assert [p.data for p in stream_of(path).packets] == packets[:20]


def test_invalid_packets_are_dropped_and_their_slot_concealed(tmp_path: Path, packets) -> None:
    rec = Recorder(tmp_path)
    path = rec.burst_started("ops", "alice", 1, T0, first_seq=0)
    for i in range(10):
        rec.frame("ops", 1, i, b"" if i == 4 else packets[i], T0 + i * FRAME)
    summary = rec.burst_ended("ops", 1, T0 + 1)
    assert summary is not None and summary.invalid == 1 and summary.lost == 1
    assert len(stream_of(path).packets) == 10


def test_pages_reach_the_disk_while_the_burst_goes_on(tmp_path: Path, packets) -> None:
    rec = Recorder(tmp_path, page_ms=100, reorder_frames=1)
    path = rec.burst_started("ops", "alice", 1, T0)
    for i in range(6):  # five frames plus the reorder slack: one page
        rec.frame("ops", 1, i, packets[i], T0 + i * FRAME)
    opus = read_opus(path)
    assert len(opus.streams[0].packets) == 5 and not opus.complete
    rec.frame("ops", 1, 6, packets[6], T0 + 6 * FRAME)
    rec.tick(T0 + 6 * FRAME + 0.05)  # the remaining two have not waited a page yet
    assert len(read_opus(path).streams[0].packets) == 5
    rec.tick(T0 + 6 * FRAME + 0.2)  # now they have
    assert len(read_opus(path).streams[0].packets) == 7
    rec.close(T0 + 1)
    assert read_opus(path).complete


def test_idle_bursts_are_ended_by_tick(tmp_path: Path, packets) -> None:
    rec = Recorder(tmp_path, idle_timeout=2.0)
    path = rec.burst_started("ops", "alice", 1, T0)
    talk(rec, packets, list(range(10)))
    assert rec.tick(T0 + 1.0) == []
    ended = rec.tick(T0 + 2.5)
    assert [s.reason for s in ended] == ["idle"] and rec.active_bursts == []
    assert read_opus(path).complete


def test_frames_of_an_unannounced_burst_start_one(tmp_path: Path, packets) -> None:
    with Recorder(tmp_path) as rec:
        talk(rec, packets, list(range(10)), burst=9, seq0=1234)
        assert rec.active_bursts == [("ops", 9)]
    files = list((tmp_path / "ops").glob("*.opus"))
    assert [f.name for f in files] == ["20240501T120000.000Z-b9-unknown.opus"]
    s = stream_of(files[0])
    assert s.tag("TALKER") == "unknown" and s.tag("IMPLICIT") == "1" and len(s.packets) == 10


def test_overlapping_bursts_and_groups(tmp_path: Path, packets) -> None:
    rec = Recorder(tmp_path)
    a = rec.burst_started("ops", "alice", 1, T0)
    b = rec.burst_started("ops", "bob", 2, T0 + 0.1)
    c = rec.burst_started("fire/rescue", "carol", 1, T0)
    for i in range(20):
        for group, burst in (("ops", 1), ("ops", 2), ("fire/rescue", 1)):
            rec.frame(group, burst, i, packets[i], T0 + i * FRAME)
    rec.close(T0 + 1)
    assert c.parent.name == safe_name("fire/rescue") != "fire_rescue"
    for path in (a, b, c):
        assert [p.data for p in stream_of(path).packets] == packets[:20]
    assert stream_of(c).tag("GROUP") == "fire/rescue"


def test_names_never_collide(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    first = rec.burst_started("ops", "alice", 1, T0)
    rec.burst_ended("ops", 1, T0 + 0.5)
    again = rec.burst_started("ops", "alice", 1, T0)  # burst ids restart with a new server
    assert again != first and again.name.endswith("-2.opus")
    assert safe_name("alice") == "alice" and safe_name("a b") != safe_name("a_b")
    assert safe_name("..") not in ("..", ".", "")


def test_names_in_any_script_become_slugs_with_the_group_id(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, group_ids={"\u5fd7\u613f\u8005": 7, "north gate": 3})
    a = rec.burst_started("\u5fd7\u613f\u8005", "\u5f20\u4f1f", 1, T0)  # 志愿者, 张伟
    b = rec.burst_started("north gate", "zo\u00eb", 1, T0)
    c = rec.burst_started("volunteers", "ann", 1, T0)
    rec.event("\u5fd7\u613f\u8005", "floor_grant", T0, user="\u5f20\u4f1f", burst=1)
    rec.close(T0 + 1)
    assert a.parent.name == "group+7" and b.parent.name == "north-gate+3"
    assert c.parent.name == "volunteers"  # already a safe slug: itself, with no id
    assert a.name.endswith(f"-b1-user+{hashlib.sha1('张伟'.encode()).hexdigest()[:6]}.opus")
    assert b.name.endswith("-b1-zoe+" + hashlib.sha1("zoë".encode()).hexdigest()[:6] + ".opus")
    for path in (a, b):
        assert path.name.isascii() and path.parent.name.isascii()
    assert stream_of(a).tag("GROUP") == "\u5fd7\u613f\u8005"
    assert stream_of(a).tag("TALKER") == "\u5f20\u4f1f"
    assert stream_of(b).tag("TALKER") == "zo\u00eb"
    logged = read_events(a.parent / "events.jsonl").events
    assert {e.group for e in logged} == {"\u5fd7\u613f\u8005"}
    assert any(e.fields.get("user") == "\u5f20\u4f1f" for e in logged)


def test_events_and_closing(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    rec.event("ops", "floor_request", T0, user="alice", priority=1)
    with pytest.raises(RecordingError, match="reserved"):
        rec.event("ops", "join", T0, t=5)
    assert rec.burst_ended("ops", 99, T0) is None
    rec.close(T0 + 1)
    rec.close()  # twice is fine
    with pytest.raises(RecordingError, match="closed"):
        rec.frame("ops", 1, 0, b"\x48", T0)
    kinds = [e.kind for e in read_events(tmp_path / "ops" / "events.jsonl").events]
    assert kinds == ["recorder_start", "floor_request", "recorder_stop"]


def test_empty_burst_is_a_valid_file(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    path = rec.burst_started("ops", "alice", 1, T0)
    rec.burst_ended("ops", 1, T0 + 0.1)
    pages = list(read_pages(path.read_bytes()))
    assert len(pages) == 3 and pages[-1].eos
    assert read_opus(path).complete
