"""One group's playout channel with real Opus: receive, one frame per tick, loss reports, burst
ends, and the frame opener's drop counts."""

from __future__ import annotations

import numpy as np

from ptt.audio.codec import FRAME_SAMPLES, SAMPLE_RATE, OpusEncoder
from ptt.errors import ProtocolError
from ptt.media.playout import FrameOpener, PlayoutChannel, Tick
from ptt.media.receiver import FIRST_REPORT
from ptt.media.sender import Packetizer
from ptt.wire.voice import VoiceFlags, VoiceHeader, decode_voice

TICK = 0.02
GROUP_ID = 7


def _burst(n: int, *, group_id: int = GROUP_ID, burst_id: int = 300, freq: float = 800.0,
           end: bool = True) -> list[bytes]:
    """``n`` frames of a sine as voice datagrams; with ``end`` the last carries END_OF_BURST."""
    t = np.arange(n * FRAME_SAMPLES) / SAMPLE_RATE
    pcm = np.rint(8000 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()
    size = FRAME_SAMPLES * 2
    enc, pk = OpusEncoder(), Packetizer(group_id, 12, burst_id)
    return [pk.packetize(enc.encode(pcm[i * size:(i + 1) * size]), last=end and i == n - 1)
            for i in range(n)]


def _play(ch: PlayoutChannel, frames: list[bytes | None], extra: int = 20) -> list[Tick]:
    """Each datagram arrives on its tick (None: lost); the channel ticks ``extra`` times more."""
    opener = FrameOpener()
    ticks = []
    for i in range(len(frames) + extra):
        now = i * TICK
        datagram = frames[i] if i < len(frames) else None
        if datagram is not None:
            opened = opener.open(datagram)
            assert opened is not None
            ch.receive(*opened, now)
        ticks.append(ch.tick(now))
    return ticks


def _loud(pcm: bytes | None) -> bool:
    return pcm is not None and int(np.abs(np.frombuffer(pcm, "<i2")).max()) > 2000


def test_a_burst_plays_in_order_and_ends_on_its_last_frame() -> None:
    ch = PlayoutChannel("volunteers")
    ch.group_id = GROUP_ID
    ticks = _play(ch, list(_burst(50)))
    played = [t for t in ticks if t.pcm is not None]
    assert len(played) == 50
    assert [t.item.seq for t in played if t.item is not None] == list(range(50))
    assert sum(_loud(t.pcm) for t in played) >= 45
    ends = [i for i, t in enumerate(ticks) if t.ended is not None]
    assert len(ends) == 1 and ticks[ends[0]].last  # on the END_OF_BURST frame itself
    reception = ticks[ends[0]].ended
    assert reception is not None and reception.frames == 50 and reception.lost == 0
    assert not ch.playing and not ch.sounding


def test_a_lost_end_of_burst_ends_the_burst_when_the_buffer_runs_out() -> None:
    ch = PlayoutChannel("volunteers")
    ch.group_id = GROUP_ID
    frames: list[bytes | None] = list(_burst(30, end=False))
    ticks = _play(ch, frames, extra=40)
    ends = [t for t in ticks if t.ended is not None]
    assert len(ends) == 1 and ends[0].pcm is None
    assert ends[0].ended is not None and ends[0].ended.frames >= 30
    assert not ch.playing


def test_lost_frames_are_concealed_counted_and_reported() -> None:
    ch = PlayoutChannel("volunteers")
    ch.group_id = GROUP_ID
    frames: list[bytes | None] = list(_burst(100))
    for i in range(10, 100, 10):  # 9 single losses
        frames[i] = None
    ticks = _play(ch, frames)
    reports = [t.report for t in ticks if t.report is not None]
    # the first report comes FIRST_REPORT into the burst, then about once a second
    assert reports and all(burst == 300 for burst, _ in reports)
    first_at = next(i for i, t in enumerate(ticks) if t.report is not None) * TICK
    assert FIRST_REPORT - 2 * TICK <= first_at <= FIRST_REPORT + 0.2
    end = next(t.ended for t in ticks if t.ended is not None)
    assert end is not None and end.frames == 100
    assert end.lost == ch.receiver.stats.lost == 9  # missing packets, however restored
    assert len([t for t in ticks if t.pcm is not None]) == 100  # every slot played


def test_only_the_expected_burst_and_group_play() -> None:
    ch = PlayoutChannel("volunteers")
    ch.group_id = GROUP_ID
    ch.expect(301)
    other_group = _burst(20, group_id=GROUP_ID + 1, burst_id=301)
    other_burst = _burst(20, burst_id=300)
    opener = FrameOpener()
    for i, datagram in enumerate(other_group + other_burst):
        opened = opener.open(datagram)
        assert opened is not None
        assert not ch.receive(*opened, i * TICK)
    assert ch.receiver.foreign == 40 and ch.current_burst is None
    ticks = _play(ch, list(_burst(20, burst_id=301)))
    assert sum(t.pcm is not None for t in ticks) == 20 and ch.current_burst == (12, 301)


def test_talker_stopped_ends_the_burst_after_the_frames_held() -> None:
    ch = PlayoutChannel("volunteers")
    ch.group_id = GROUP_ID
    ticks = _play(ch, list(_burst(10, end=False)), extra=0)
    ch.talker_stopped()
    rest = [ch.tick((10 + i) * TICK) for i in range(10)]
    assert sum(t.pcm is not None for t in ticks + rest) == 10
    assert sum(t.ended is not None for t in ticks + rest) == 1


def test_pop_leaves_the_burst_end_to_the_caller() -> None:
    ch = PlayoutChannel("volunteers")
    ch.group_id = GROUP_ID
    opener = FrameOpener()
    ticks = []
    for i, datagram in enumerate(_burst(10) + [b""] * 10):
        if datagram:
            opened = opener.open(datagram)
            assert opened is not None
            ch.receive(*opened, i * TICK)
        ticks.append(ch.pop(i * TICK))
    assert sum(t.pcm is not None for t in ticks) == 10 and sum(t.last for t in ticks) == 1
    assert all(t.ended is None for t in ticks) and not ch.playing
    assert ch.finish_burst().frames == 10


def test_the_frame_opener_counts_each_drop_by_its_reason() -> None:
    plain = _burst(3)
    refused = _burst(3, burst_id=301)

    opened_by_opener = []

    def open_voice(datagram: bytes) -> tuple[VoiceHeader, bytes] | None:
        """Refuses burst 301 and what is not voice, as ``VoiceKeys.open_voice`` refuses."""
        opened_by_opener.append(datagram)
        try:
            header, payload = decode_voice(datagram)
        except ProtocolError:
            return None
        return None if header.burst_id == 301 else (header, payload)

    frames = FrameOpener(open_voice)
    assert frames.open(b"V\x01garbage") is None
    assert frames.open(b"") is None
    opened = frames.open(plain[0])
    assert opened is not None and opened == decode_voice(plain[0])
    assert frames.open(refused[0]) is None
    assert frames.open(plain[1], wanted=lambda group_id: group_id != GROUP_ID) is None
    # a group the caller does not play is not offered to the opener: its refusal is not ours
    assert frames.open(refused[1], wanted=lambda group_id: False) is None
    assert (frames.malformed, frames.undecryptable, frames.foreign) == (2, 1, 2)
    assert refused[1] not in opened_by_opener and plain[1] not in opened_by_opener
    assert frames.open(refused[2], wanted=lambda group_id: True) is None
    assert frames.open(b"V" * 30, wanted=lambda group_id: True) is None  # not voice: not opened
    assert (frames.malformed, frames.undecryptable, frames.foreign) == (3, 2, 2)
    header = opened[0]
    assert header.group_id == GROUP_ID and header.flags == VoiceFlags.NONE
