"""The burst receiver with the real libopus: recovery lands exactly where it should.

The talker's packets are decoded twice: by the receiver (through the jitter buffer, with some
packets dropped) and by a reference decoder fed the same calls in the same order. Redundancy
gives back the very packet, so the PCM is bit-identical to decoding the original stream; FEC and
PLC are checked against the reference decoder making the same decode_fec/conceal call.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from ptt.audio.codec import FRAME_BYTES, OpusDecoder, OpusEncoder, packet_has_fec
from ptt.audio.samples import SHORT_TEXT, speech_pcm
from ptt.media.impair import BernoulliLoss, Channel, UniformDelay
from ptt.media.jitter import FRAME_SECONDS, JitterConfig, Source
from ptt.media.receiver import BurstReceiver
from ptt.media.sender import Packetizer
from ptt.wire.voice import VoiceFlags, VoiceHeader, encode_voice

F = FRAME_SECONDS
PHASE = 0.0071


@pytest.fixture(scope="module")
def speech_frames() -> list[bytes]:
    pcm = speech_pcm(SHORT_TEXT)  # about 3.5 s
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def encode(frames: list[bytes], fec: bool = False, loss: int = 0) -> list[bytes]:
    enc = OpusEncoder(bitrate=32_000, fec=fec, expected_loss=loss)
    return [enc.encode(f) for f in frames]


def datagrams(packets: list[bytes], redundancy: int, burst_id: int = 5) -> list[bytes]:
    pk = Packetizer(group_id=1, sender=2, burst_id=burst_id, redundancy=redundancy)
    return [pk.packetize(p, last=i == len(packets) - 1) for i, p in enumerate(packets)]


def play(
    grams: list[bytes],
    drop: set[int],
    jitter: JitterConfig | None = None,
    delay: float = 0.003,
) -> tuple[BurstReceiver, list[tuple[Source, int, bytes]]]:
    """Deliver all datagrams but ``drop`` at a steady delay; (receiver, [(source, seq, pcm)])."""
    rx = BurstReceiver(OpusDecoder(), group_id=1, jitter=jitter)
    pending = [(i * F + delay, g) for i, g in enumerate(grams) if i not in drop]
    out = []
    for tick in range(len(grams) + 60):
        now = tick * F + PHASE
        while pending and pending[0][0] <= now:
            t, g = pending.pop(0)
            rx.receive(g, t)
        pcm = rx.pop(now)
        if pcm is not None:
            item = rx.last_item
            assert item is not None
            out.append((item.source, item.seq, pcm))
    return rx, out


def reference(packets: list[bytes]) -> list[bytes]:
    dec = OpusDecoder()
    return [dec.decode(p) for p in packets]


def corr(a: bytes, b: bytes) -> float:
    x = np.frombuffer(a, "<i2").astype(float)
    y = np.frombuffer(b, "<i2").astype(float)
    d = np.linalg.norm(x) * np.linalg.norm(y)
    return float(x @ y / d) if d else 0.0


def test_redundancy_recovers_bit_identical_pcm(speech_frames: list[bytes]) -> None:
    packets = encode(speech_frames)
    drop = {20, 40, 41, 60, 100, 101}
    # a steady 80 ms: every copy (offsets 1 and 3) is in time, and no frame is inserted or
    # dropped to steer the delay, which would step the decoder through other states
    steady = JitterConfig(initial_delay=0.080, min_delay=0.080, max_lookahead=0)
    rx, out = play(datagrams(packets, 2), drop, steady)
    played = [(s, q, pcm) for s, q, pcm in out]
    assert [q for _, q, _ in played] == list(range(len(packets)))
    assert {q for s, q, _ in played if s is Source.REDUNDANCY} == drop
    assert all(s is Source.RECEIVED for s, q, _ in played if q not in drop)
    ref = reference(packets)
    assert [pcm for _, _, pcm in played] == ref  # every frame, the repaired ones included
    assert rx.stats.recovered_redundancy == len(drop)
    assert rx.stats.recovered_fec == rx.stats.concealed == 0


def test_fec_used_only_when_no_copy_exists(speech_frames: list[bytes]) -> None:
    packets = encode(speech_frames, fec=True, loss=20)
    lost = next(i for i in range(20, len(packets) - 1) if packet_has_fec(packets[i + 1]))
    # without redundancy the next packet's FEC rebuilds the frame
    _, out = play(datagrams(packets, 0), {lost})
    by_seq = {q: (s, pcm) for s, q, pcm in out if s is not Source.INSERTED}
    assert by_seq[lost][0] is Source.FEC
    dec = OpusDecoder()
    for p in packets[:lost]:
        dec.decode(p)
    fec_pcm = dec.decode_fec(packets[lost + 1])
    assert by_seq[lost][1] == fec_pcm
    assert by_seq[lost + 1] == (Source.RECEIVED, dec.decode(packets[lost + 1]))
    # FEC is a real rebuild of the lost frame, better than concealment
    plc = OpusDecoder()
    for p in packets[:lost]:
        plc.decode(p)
    original = reference(packets)[lost]
    plc_pcm = plc.conceal()
    assert fec_pcm != plc_pcm
    assert corr(fec_pcm, original) > corr(plc_pcm, original) + 0.2
    # with redundancy the exact copy wins, even though the FEC is there too
    _, out = play(datagrams(packets, 1), {lost})
    by_seq = {q: (s, pcm) for s, q, pcm in out if s is not Source.INSERTED}
    assert by_seq[lost] == (Source.REDUNDANCY, reference(packets)[lost])


def test_concealment_last_then_fec_then_exact(speech_frames: list[bytes]) -> None:
    packets = encode(speech_frames, fec=True, loss=20)
    a = 30
    # frames a and a+1 lost, no redundancy: a has nothing (its FEC rode in lost a+1) -> PLC;
    # a+1 comes back from a+2's FEC
    _, out = play(datagrams(packets, 0), {a, a + 1}, JitterConfig(initial_delay=0.060))
    by_seq = {q: (s, pcm) for s, q, pcm in out if s is not Source.INSERTED}
    assert by_seq[a][0] is Source.CONCEALED
    assert by_seq[a + 1][0] is Source.FEC
    dec = OpusDecoder()
    for p in packets[:a]:
        dec.decode(p)
    assert by_seq[a][1] == dec.conceal()
    assert by_seq[a + 1][1] == dec.decode_fec(packets[a + 2])
    assert by_seq[a + 2] == (Source.RECEIVED, dec.decode(packets[a + 2]))


def test_speech_round_trip_through_loss_and_jitter(speech_frames: list[bytes]) -> None:
    packets = encode(speech_frames)
    grams = datagrams(packets, 2)
    ch = Channel(random.Random(9), BernoulliLoss(0.10), UniformDelay(0.002, 0.040))
    arrivals = ch.run([(i * F, g) for i, g in enumerate(grams)])
    rx = BurstReceiver(OpusDecoder(), group_id=1)
    out = []
    for tick in range(len(grams) + 60):
        now = tick * F + PHASE
        while arrivals and arrivals[0][0] <= now:
            t, g = arrivals.pop(0)
            rx.receive(g, t)
        pcm = rx.pop(now)
        if pcm is not None and rx.last_item is not None:
            if rx.last_item.source is not Source.INSERTED:
                out.append(pcm)
    assert len(out) == len(packets)
    # the decoder's own delay is the same either way, so frame-by-frame PCM compares directly
    clean = b"".join(reference(packets))
    assert corr(b"".join(out), clean) > 0.97
    assert rx.stats.lost > 0.05 * len(packets)
    assert rx.stats.concealed <= 0.02 * len(packets)
    assert rx.buffer.ended


# -- burst selection ---------------------------------------------------------------------------


class FakeDecoder:
    def __init__(self) -> None:
        self.resets = 0

    def decode(self, packet: bytes) -> bytes:
        return packet.ljust(FRAME_BYTES, b"\0")

    def decode_fec(self, next_packet: bytes) -> bytes:
        return b"F" * FRAME_BYTES

    def conceal(self) -> bytes:
        return b"C" * FRAME_BYTES

    def reset(self) -> None:
        self.resets += 1


def gram(burst: int, seq: int, group: int = 1, sender: int = 2, flags: VoiceFlags = VoiceFlags.NONE,
         payload: bytes | None = None) -> bytes:
    body = b"\x00" + b"B%dS%d" % (burst, seq) if payload is None else payload
    return encode_voice(VoiceHeader(group, sender, burst, seq, seq * 320, flags), body)


def test_locks_onto_the_first_burst_and_moves_to_a_newer_one() -> None:
    dec = FakeDecoder()
    rx = BurstReceiver(dec, group_id=1)
    assert rx.receive(gram(7, 0), 0.0)
    assert rx.current_burst == (2, 7)
    assert rx.receive(gram(8, 0, sender=3), 0.01)  # a new talker's burst takes over
    assert rx.current_burst == (3, 8)
    assert dec.resets == 2
    assert not rx.receive(gram(7, 1), 0.02)  # stragglers of the old one cannot come back
    assert rx.current_burst == (3, 8)
    assert rx.foreign == 1


def test_expect_plays_only_the_announced_burst() -> None:
    rx = BurstReceiver(FakeDecoder(), group_id=1)
    rx.expect(9)
    assert not rx.receive(gram(8, 0), 0.0)
    assert rx.receive(gram(9, 0), 0.0)
    assert rx.current_burst == (2, 9)
    assert rx.foreign == 1


def test_other_groups_probes_and_garbage_are_dropped() -> None:
    rx = BurstReceiver(FakeDecoder(), group_id=1)
    assert not rx.receive(gram(1, 0, group=2), 0.0)
    assert not rx.receive(gram(1, 0, flags=VoiceFlags.PROBE), 0.0)
    assert not rx.receive(b"V\x01garbage", 0.0)
    assert not rx.receive(gram(1, 0, payload=b"\x01\x05ab"), 0.0)  # payload shorter than told
    assert rx.malformed == 2 and rx.foreign == 1
    assert rx.pop(1.0) is None


def test_undecodable_packet_is_concealed() -> None:
    rx = BurstReceiver(OpusDecoder(), group_id=1)
    rx.receive(gram(1, 0, payload=b"\x00\xff\xff\xff", flags=VoiceFlags.END_OF_BURST), 0.0)
    pcm = rx.pop(0.1)
    assert pcm is not None and len(pcm) == FRAME_BYTES
    assert rx.undecodable == 1


def _deliver(rx: BurstReceiver, sent: list[int], now: float, last: int) -> None:
    """The packets of ``sent`` that arrive (2 ms after their frame's time) in the 20 ms tick
    ending at ``now``; ``last`` carries END_OF_BURST."""
    for i in sent:
        if i * F + 0.002 <= now < i * F + 0.002 + F:
            flags = VoiceFlags.END_OF_BURST if i == last else VoiceFlags.NONE
            rx.receive(gram(1, i, flags=flags), i * F + 0.002)


def test_loss_report_covers_the_period_since_the_last_one() -> None:
    rx = BurstReceiver(FakeDecoder(), group_id=1)
    sent = [i for i in range(40) if i not in (5, 6, 7, 20)]
    for tick in range(60):
        now = tick * F + PHASE
        _deliver(rx, sent, now, last=39)
        rx.pop(now)
        if tick == 15:
            first = rx.loss_report()
    second = rx.loss_report()
    assert first.frames > 0 and second.frames > 0
    assert first.frames + second.frames == 40
    assert first.loss_fraction * first.frames == pytest.approx(3)  # frames 5-7, one run of 3
    assert first.mean_loss_run == pytest.approx(3.0)
    assert second.loss_fraction * second.frames == pytest.approx(1)
    assert second.mean_loss_run == pytest.approx(1.0)
    assert rx.loss_report().frames == 0
    assert rx.ended and not rx.playing


def test_a_run_of_loss_across_two_reports_is_one_run_in_the_second() -> None:
    # frames 8-13 lost; the first report falls inside the run and covers the frames before it.
    # The second has the whole run: it says the losses come in a run (mean 0 would tell the
    # talker nothing about runs), as long as it is (two runs of 3 would read short)
    rx = BurstReceiver(FakeDecoder(), group_id=1)
    sent = [i for i in range(40) if not 8 <= i <= 13]
    reports = []
    for tick in range(60):
        now = tick * F + PHASE
        _deliver(rx, sent, now, last=39)
        item = rx.pop(now)
        if item is not None and rx.last_item is not None and rx.last_item.seq == 10:
            reports.append(rx.loss_report())  # frames 8-10 played lost by now
    reports.append(rx.loss_report())
    first, second = reports
    assert (first.frames, first.lost, first.runs) == (8, 0, 0)
    assert (second.frames, second.lost, second.runs, second.mean_loss_run) == (32, 6, 1, 6.0)


def test_packets_that_come_too_late_are_reported_late_not_lost() -> None:
    """A stall of the listener's own process: packets 10-19 are read only at once, after they
    fell due; packet 30 never comes. The talker is told of one lost frame, and ten late."""
    rx = BurstReceiver(FakeDecoder(), group_id=1)
    held = list(range(10, 20))
    for tick in range(60):
        now = tick * F + PHASE
        for i in range(40):
            if i in held or i == 30:
                continue
            if i * F + 0.002 <= now < i * F + 0.002 + F:
                flags = VoiceFlags.END_OF_BURST if i == 39 else VoiceFlags.NONE
                rx.receive(gram(1, i, flags=flags), i * F + 0.002)
        if tick == 24:  # the stall ends: what waited in the socket is read
            for i in held:
                rx.receive(gram(1, i), now)
        rx.pop(now)
    report = rx.loss_report()
    assert report.frames == 40
    assert report.late >= 5  # frames 10-19 that fell due before tick 24
    assert report.lost == 1 and report.runs == 1  # frame 30: the network's only loss
    assert report.loss_fraction == pytest.approx(1 / 40)


def test_fec_decode_of_a_packet_without_fec_is_counted_as_concealment(
    speech_frames: list[bytes],
) -> None:
    packets = encode(speech_frames, fec=False)
    rx, out = play(datagrams(packets, 0), {25})
    assert rx.stats.recovered_fec == 1
    assert rx.fec_empty == 1  # the next packet carried no FEC data: libopus concealed
