"""Ogg pages: CRC, lacing, flags, granules, and a reader that stops or resyncs at damage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptt.record.ogg import (
    FLAG_BOS,
    FLAG_CONTINUED,
    FLAG_EOS,
    NO_GRANULE,
    Damage,
    OggError,
    OggStreamWriter,
    Page,
    crc32_ogg,
    lace,
    packets_from_pages,
    parse_page,
    read_pages,
    scan_pages,
)


def crc_bitwise(data: bytes) -> int:
    """RFC 3533's checksum the slow way: poly 0x04c11db7, init 0, MSB first, no final XOR."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


@given(st.binary(max_size=600))
def test_fast_crc_matches_the_bitwise_definition(data: bytes) -> None:
    assert crc32_ogg(data) == crc_bitwise(data)


def test_crc_of_a_known_page_from_libogg(tool, espeak_wav, tmp_path) -> None:
    # pages written by libogg (through opusenc) must pass our CRC check unchanged
    from tests.record.conftest import run

    out = tmp_path / "s.opus"
    assert run(tool("opusenc"), "--quiet", espeak_wav, out).returncode == 0
    data = out.read_bytes()
    pages = list(read_pages(data))
    assert pages[0].bos and pages[-1].eos
    assert all(p.to_bytes() == data[p.offset : p.end] for p in pages)


@pytest.mark.parametrize(
    ("length", "values"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (254, b"\xfe"),
        (255, b"\xff\x00"),
        (256, b"\xff\x01"),
        (510, b"\xff\xff\x00"),
    ],
)
def test_lacing(length: int, values: bytes) -> None:
    assert lace(length) == values


def test_pages_carry_flags_granules_and_sequence_numbers() -> None:
    w = OggStreamWriter(0x1234)
    first = w.pages([(b"head", 0)])
    second = w.pages([(b"a" * 10, 960), (b"b" * 20, 1920)])
    last = w.pages([], eos=True)
    pages = list(read_pages(first + second + last))
    assert [p.sequence for p in pages] == [0, 1, 2]
    assert [p.serial for p in pages] == [0x1234] * 3
    assert pages[0].flags == FLAG_BOS and pages[0].granule == 0
    assert pages[1].flags == 0 and pages[1].granule == 1920
    assert pages[2].flags == FLAG_EOS and pages[2].granule == NO_GRANULE and not pages[2].body
    assert [d for _, d in packets_from_pages(pages)] == [b"head", b"a" * 10, b"b" * 20]


def test_a_long_packet_spans_pages_with_the_continued_flag() -> None:
    w = OggStreamWriter(7)
    big = bytes(range(256)) * 300  # 76800 bytes: more than one page can hold
    data = w.pages([(b"x", 0)]) + w.pages([(big, 5000), (b"tail", 6000)], eos=True)
    pages = list(read_pages(data))
    assert len(pages) == 3
    assert pages[1].granule == NO_GRANULE  # no packet ends on it
    assert pages[2].continued and pages[2].eos and pages[2].granule == 6000
    assert pages[1].flags & FLAG_CONTINUED == 0
    assert [d for _, d in packets_from_pages(pages)] == [b"x", big, b"tail"]


@settings(max_examples=60)
@given(st.lists(st.binary(max_size=2000), min_size=1, max_size=40))
def test_any_packets_round_trip(packets: list[bytes]) -> None:
    w = OggStreamWriter(99)
    laid = [(p, i) for i, p in enumerate(packets)]
    data = w.pages(laid[:1]) + w.pages(laid[1:], eos=True)
    pages = list(read_pages(data))
    assert [d for _, d in packets_from_pages(pages)] == packets
    assert pages[-1].eos and all(len(p.lacing) <= 255 for p in pages)


def _three_pages() -> bytes:
    w = OggStreamWriter(5)
    return b"".join(
        [w.pages([(b"A" * 100, 1)]), w.pages([(b"B" * 100, 2)]), w.pages([(b"C" * 100, 3)])]
    )


def test_truncated_page_raises_after_yielding_the_good_ones() -> None:
    data = _three_pages()
    cut = data[: len(data) - 40]
    got: list[Page] = []
    with pytest.raises(OggError) as info:
        got.extend(read_pages(cut))
    assert len(got) == 2
    assert info.value.reason == "truncated"
    assert info.value.offset == got[-1].end
    assert f"truncated Ogg page at byte {got[-1].end}" in str(info.value)


def test_corrupted_byte_fails_the_crc_and_names_the_page() -> None:
    data = bytearray(_three_pages())
    second = parse_page(bytes(data)).end
    data[second + 50] ^= 0x01
    with pytest.raises(OggError) as info:
        list(read_pages(bytes(data)))
    assert info.value.reason == "crc" and info.value.offset == second
    assert "CRC mismatch" in str(info.value) and "page 1" in str(info.value)


def test_scan_resyncs_after_damage() -> None:
    data = bytearray(_three_pages())
    second = parse_page(bytes(data)).end
    data[second + 50] ^= 0x01
    items = list(scan_pages(bytes(data)))
    assert [type(i).__name__ for i in items] == ["Page", "Damage", "Page"]
    damage = items[1]
    assert isinstance(damage, Damage) and damage.offset == second
    assert "reading resumes at byte" in damage.message
    assert [i.granule for i in items if isinstance(i, Page)] == [1, 3]


def test_garbage_is_not_an_ogg_page() -> None:
    with pytest.raises(OggError, match="no Ogg page at byte 0"):
        list(read_pages(b"RIFF" + bytes(100)))
    items = list(scan_pages(b"junk" + _three_pages()))
    assert isinstance(items[0], Damage) and items[0].reason == "garbage" and items[0].end == 4
    assert sum(isinstance(i, Page) for i in items) == 3
