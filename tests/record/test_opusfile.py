"""Ogg Opus headers, packet durations, the stream writer and the damage-tolerant reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptt.errors import RecordingError
from ptt.record.ogg import read_pages
from ptt.record.opusfile import (
    OpusFileWriter,
    OpusHead,
    OpusTags,
    frame_count,
    is_lost_packet,
    lost_packet,
    packet_samples,
    parse_opus,
    read_opus,
)

TAGS = OpusTags("ptt", (("GROUP", "ops"), ("TALKER", "alice"), ("BURST", "7")))


def write(path: Path, packets: list[bytes], per_page: int = 5, close: bool = True) -> Path:
    w = OpusFileWriter(path, OpusHead(), TAGS, serial=0xABCD)
    for i in range(0, len(packets), per_page):
        w.write(packets[i : i + per_page])
    if close:
        w.close()
    else:
        w.abandon()
    return path


def test_headers_round_trip() -> None:
    head = OpusHead(channels=1, pre_skip=312, input_rate=16000)
    raw = head.to_bytes()
    assert len(raw) == 19 and raw.startswith(b"OpusHead\x01\x01")
    assert OpusHead.parse(raw) == head
    tags = OpusTags("ptt", (("START", "2024-05-01T12:00:00.000Z"), ("TALKER", "Zoë")))
    again = OpusTags.parse(tags.to_bytes())
    assert again == tags and again.get("talker") == "Zoë" and again.get("missing") is None
    with pytest.raises(RecordingError, match="malformed OpusTags"):
        OpusTags.parse(tags.to_bytes()[:-3])


@pytest.mark.parametrize(
    ("packet", "samples"),
    [
        (bytes([(9 << 3) | 0]) + b"x", 960),  # SILK WB 20 ms
        (bytes([(11 << 3) | 0]) + b"x", 2880),  # SILK WB 60 ms
        (bytes([(13 << 3) | 1]) + b"xy", 1920),  # hybrid 20 ms, two frames
        (bytes([(16 << 3) | 0]) + b"x", 120),  # CELT 2.5 ms
        (bytes([(31 << 3) | 3, 3]) + b"xyz", 2880),  # CELT 20 ms x 3
    ],
)
def test_packet_durations_from_the_toc(packet: bytes, samples: int) -> None:
    assert packet_samples(packet) == samples


def test_invalid_packets_are_rejected() -> None:
    for bad in (b"", bytes([3]), bytes([(31 << 3) | 3, 0]), bytes([(11 << 3) | 3, 3])):
        with pytest.raises(ValueError):
            packet_samples(bad)


def test_lost_frame_packets_keep_the_duration(packets: list[bytes]) -> None:
    lost = lost_packet(packets[0])
    assert len(lost) == 1 and packet_samples(lost) == packet_samples(packets[0]) == 960
    assert is_lost_packet(lost) and not is_lost_packet(packets[0])
    three = bytes([(31 << 3) | 3, 3]) + b"abc"
    assert packet_samples(lost_packet(three)) == 2880 and frame_count(lost_packet(three)) == 3


def test_round_trip_bit_for_bit_with_timing(tmp_path: Path, packets: list[bytes]) -> None:
    path = write(tmp_path / "a.opus", packets)
    opus = read_opus(path, strict=True)
    assert opus.ok and opus.complete and len(opus.streams) == 1
    s = opus.streams[0]
    assert s.serial == 0xABCD and s.head.pre_skip == 312 and s.tags == TAGS
    assert [p.data for p in s.packets] == packets
    assert [p.start for p in s.packets] == [960 * i for i in range(len(packets))]
    assert s.end_granule == 960 * len(packets)
    assert s.duration == pytest.approx(len(packets) * 0.02 - 312 / 48000)


def test_page_layout_is_rfc7845(tmp_path: Path, packets: list[bytes]) -> None:
    pages = list(read_pages(write(tmp_path / "a.opus", packets[:12]).read_bytes()))
    assert pages[0].bos and pages[0].granule == 0 and pages[0].body.startswith(b"OpusHead")
    assert len(pages[0].lacing) == 1  # the ID header alone on the first page
    assert pages[1].granule == 0 and pages[1].body.startswith(b"OpusTags")
    assert [p.granule for p in pages[2:]] == [4800, 9600, 11520, -1]  # 5 + 5 + 2 packets, EOS
    assert pages[-1].eos and not any(p.eos for p in pages[:-1])


def test_writer_refuses_invalid_packets(tmp_path: Path) -> None:
    w = OpusFileWriter(tmp_path / "x.opus", OpusHead(), TAGS)
    with pytest.raises(RecordingError, match="invalid Opus packet"):
        w.write([b""])
    w.close()
    with pytest.raises(RecordingError, match="cannot create"):
        OpusFileWriter(tmp_path / "x.opus", OpusHead(), TAGS)  # never overwrites


def test_truncated_mid_page_keeps_the_readable_part(tmp_path: Path, packets: list[bytes]) -> None:
    data = write(tmp_path / "a.opus", packets).read_bytes()
    pages = list(read_pages(data))
    cut_page = pages[10]
    cut = data[: cut_page.offset + 40]
    opus = parse_opus(cut, "cut.opus")
    problems = opus.all_problems()
    assert len(problems) == 1
    assert f"cut.opus: truncated Ogg page at byte {cut_page.offset}" in problems[0]
    s = opus.streams[0]
    assert not s.complete and not opus.ok
    assert [p.data for p in s.packets] == packets[:40]  # pages 2..9 hold 8 x 5 packets
    with pytest.raises(RecordingError, match="truncated Ogg page"):
        opus.raise_for_problems()


def test_corrupted_byte_leaves_a_timed_hole(tmp_path: Path, packets: list[bytes]) -> None:
    data = bytearray(write(tmp_path / "a.opus", packets).read_bytes())
    bad = list(read_pages(bytes(data)))[5]
    data[bad.offset + bad.size - 3] ^= 0x10
    opus = parse_opus(bytes(data), "bad.opus")
    problems = opus.all_problems()
    assert any(f"corrupted Ogg page at byte {bad.offset}" in p and "CRC" in p for p in problems)
    assert any("page(s) of stream" in p and "missing" in p for p in problems)
    s = opus.streams[0]
    holes = [p for p in s.packets if p.is_hole]
    assert len(holes) == 1 and holes[0].start == 15 * 960 and holes[0].samples == 5 * 960
    kept = [p.data for p in s.packets if not p.is_hole]
    assert kept == packets[:15] + packets[20:]
    assert s.complete and s.end_granule == 960 * len(packets)  # the timeline is intact


def test_strict_reading_raises(tmp_path: Path, packets: list[bytes]) -> None:
    path = tmp_path / "a.opus"
    path.write_bytes(write(tmp_path / "b.opus", packets).read_bytes()[:-30])
    with pytest.raises(RecordingError, match=r"a\.opus: truncated Ogg page at byte \d+"):
        read_opus(path, strict=True)
    with pytest.raises(RecordingError, match="cannot read"):
        read_opus(tmp_path / "missing.opus")


def test_not_ogg_and_empty_files(tmp_path: Path) -> None:
    assert "not an Ogg file" in parse_opus(b"RIFF....WAVE", "x.wav").problems[0]
    assert parse_opus(b"", "e.opus").problems == ["e.opus: empty file"]


def test_a_stream_cut_off_after_its_headers(tmp_path: Path) -> None:
    path = write(tmp_path / "h.opus", [], close=False)
    opus = read_opus(path)
    assert opus.ok and not opus.complete
    assert opus.streams[0].packets == [] and opus.streams[0].duration == 0


def test_chained_streams_are_read_in_order(tmp_path: Path, packets: list[bytes]) -> None:
    a = write(tmp_path / "a.opus", packets[:50]).read_bytes()
    w = OpusFileWriter(tmp_path / "b.opus", OpusHead(), OpusTags("ptt", (("TALKER", "bob"),)))
    w.write(packets[50:80])
    w.close()
    opus = parse_opus(a + (tmp_path / "b.opus").read_bytes(), "chain.opus")
    assert opus.ok and [len(s.packets) for s in opus.streams] == [50, 30]
    assert [s.tag("TALKER") for s in opus.streams] == ["alice", "bob"]


def test_a_lost_first_page_is_reported_once(tmp_path: Path, packets: list[bytes]) -> None:
    data = bytearray(write(tmp_path / "a.opus", packets).read_bytes())
    data[30] ^= 0x01  # inside the OpusHead page
    opus = parse_opus(bytes(data), "h.opus")
    assert opus.streams == []
    assert len(opus.problems) == 2
    assert opus.problems[0].startswith("h.opus: corrupted Ogg page at byte 0")
    assert "skipped: the page with its OpusHead was lost" in opus.problems[1]
