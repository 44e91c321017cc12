"""MonitorMixer with real Opus and a virtual clock: both groups heard, ducking, clipping, tones."""

from __future__ import annotations

import numpy as np
import pytest

from ptt.audio.codec import FRAME_SAMPLES, SAMPLE_RATE, OpusEncoder
from ptt.audio.tones import ToneSet, emergency
from ptt.client.monitor import DUCK_DB, BurstNotice, MonitorMixer, burst_notice
from ptt.errors import ValidationError
from ptt.media.sender import Packetizer
from ptt.names import call_group_name
from ptt.protocol import client as cl
from ptt.protocol import messages as m
from ptt.wire.voice import decode_voice

TICK = 0.02
FREQS = {"volunteers": 500.0, "medics": 1500.0}
IDS = {"volunteers": 1, "medics": 2}


def _tone(freq: float, n: int, amp: float = 8000.0) -> list[bytes]:
    t = np.arange(n * FRAME_SAMPLES) / SAMPLE_RATE
    x = np.rint(amp * np.sin(2 * np.pi * freq * t)).astype("<i2")
    return [x[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES].tobytes() for i in range(n)]


def _power(frame: bytes, freq: float) -> float:
    x = np.frombuffer(frame, "<i2").astype(float)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = round(freq * len(x) / SAMPLE_RATE)
    return float(spec[k - 1:k + 2].max())


def _mixer(priority: tuple[str, ...] = (), tones: ToneSet | None = None) -> MonitorMixer:
    mix = MonitorMixer(["volunteers", "medics"], priority, tones or ToneSet.none())
    for name, gid in IDS.items():
        mix.set_group(name, gid)
    return mix


def _play(mix: MonitorMixer, spans: dict[str, tuple[int, int]], total: int,
          amp: float = 8000.0, emergency_in: str | None = None) -> list[bytes]:
    """Each group talks a tone over ``spans[group]`` = (first tick, last tick), announced by
    the floor one tick ahead; returns every mixed frame."""
    packets: dict[str, list[bytes]] = {}
    for name, (a, b) in spans.items():
        enc, pk = OpusEncoder(), Packetizer(IDS[name], 10 + IDS[name], 100 + IDS[name])
        frames = _tone(FREQS[name], b - a, amp)
        packets[name] = [pk.packetize(enc.encode(f), last=i == len(frames) - 1)
                         for i, f in enumerate(frames)]
    out = []
    for i in range(total):
        now = i * TICK
        for name, (a, b) in spans.items():
            if i == a - 1:
                prio = m.Priority.EMERGENCY if name == emergency_in else m.Priority.NORMAL
                mix.talker_changed(name, f"u{IDS[name]}", 100 + IDS[name], prio)
            if a <= i < b:
                mix.receive(*decode_voice(packets[name][i - a]), now)
            if i == b + 1:
                mix.talker_changed(name, None, 0)
        out.append(mix.tick(now))
    return out


def test_two_groups_at_once_are_both_heard_at_full_level() -> None:
    mix = _mixer()
    out = _play(mix, {"volunteers": (1, 60), "medics": (20, 80)}, 95)
    both = out[30:55]  # overlap, after the jitter buffers filled
    alone = out[5:15]
    for f in both:
        assert _power(f, 500) > 0.5 * np.mean([_power(g, 500) for g in alone])
        assert _power(f, 1500) > 0.2 * _power(f, 500)
    assert all(mix.stats(g).frames_ducked == 0 for g in IDS)
    assert mix.stats("volunteers").frames_heard >= 55
    assert mix.stats("medics").frames_heard >= 55
    assert not mix.ducking


def test_a_priority_group_ducks_the_others_by_12_db_while_it_talks() -> None:
    mix = _mixer(priority=("medics",))
    out = _play(mix, {"volunteers": (1, 80), "medics": (25, 55)}, 95)
    before = np.mean([_power(f, 500) for f in out[8:22]])
    during = np.mean([_power(f, 500) for f in out[32:52]])
    after = np.mean([_power(f, 500) for f in out[65:78]])
    ratio_db = 20 * np.log10(during / before)
    assert abs(ratio_db - DUCK_DB) < 1.5, ratio_db
    assert abs(20 * np.log10(after / before)) < 1.5  # the duck is lifted after the burst
    med = mix.stats("medics")
    assert med.frames_ducked == 0 and med.frames_heard >= 28
    assert mix.stats("volunteers").frames_ducked >= 30
    # the medics are at full level: their tone is as loud as the volunteers' was alone
    assert abs(20 * np.log10(np.mean([_power(f, 1500) for f in out[32:52]]) / before)) < 2.0


def test_the_duck_ramps_within_a_frame_no_step() -> None:
    mix = _mixer(priority=("medics",))
    enc, pk = OpusEncoder(), Packetizer(1, 11, 101)
    mix.talker_changed("volunteers", "u1", 101)
    out = []
    for i, frame in enumerate(_tone(500, 60)):
        if i == 30:  # the medics' floor is taken: the duck starts before any of their voice
            mix.talker_changed("medics", "u2", 102)
        mix.receive(*decode_voice(pk.packetize(enc.encode(frame))), i * TICK)
        out.append(mix.tick(i * TICK))
        if i == 30:
            assert mix.ducking
    x = np.frombuffer(b"".join(out[10:]), "<i2").astype(float)
    steady = np.frombuffer(b"".join(out[10:29]), "<i2").astype(float)
    # a 500 Hz tone at 8000 moves about 1571 per sample (more where the codec overshoots, so the
    # bound is the decoded tone's own largest step before the duck); a gain step would jump ~6000
    assert np.abs(np.diff(steady)).max() < 8000 * 2 * np.pi * 500 / SAMPLE_RATE * 1.5
    assert np.abs(np.diff(x)).max() < np.abs(np.diff(steady)).max() * 1.15
    peaks = [np.abs(np.frombuffer(f, "<i2")).max() for f in out]
    assert min(peaks[15:28]) > 3.2 * max(peaks[36:55])  # -12 dB is a factor 3.98


def test_an_emergency_burst_alerts_and_ducks_the_others_without_priority() -> None:
    mix = _mixer(tones=ToneSet(False, False, False, True))
    out = _play(mix, {"volunteers": (1, 90), "medics": (30, 80)}, 100, emergency_in="medics")
    assert mix.stats("medics").alerts == 1 and mix.stats("volunteers").alerts == 0
    assert mix.stats("volunteers").frames_ducked >= 40
    before = np.mean([_power(f, 500) for f in out[10:25]])
    inside = np.mean([_power(f, 500) for f in out[65:78]])
    assert abs(20 * np.log10(inside / before) - DUCK_DB) < 1.5
    # the alert warble (1400 / 950 Hz, 1.2 s) is mixed on top from the announcement on
    alert = len(emergency())
    warble = [max(_power(f, 1400), _power(f, 950)) for f in out]
    assert min(warble[30:29 + alert]) > 10 * max(warble[5:25])


def test_loud_voices_are_clipped_not_wrapped() -> None:
    mix = _mixer()
    out = _play(mix, {"volunteers": (1, 40), "medics": (1, 40)}, 45, amp=30000.0)
    x = np.frombuffer(b"".join(out[10:35]), "<i2").astype(int)
    assert x.max() == 32767 and x.min() == -32768  # saturated at the rails
    # wrap-around would put full-scale jumps between neighbours
    assert np.abs(np.diff(x)).max() < 40000


def test_end_of_burst_tone_and_notices() -> None:
    mix = _mixer(tones=ToneSet(False, False, True, False))
    out = _play(mix, {"volunteers": (1, 20)}, 40)
    tail = out[22:32]
    assert max(_power(f, 1320) for f in tail) > 20 * _power(out[35], 1320)
    me = "disp"
    ev = cl.TalkerChanged("medics", "bob", 7, m.Priority.EMERGENCY)
    assert burst_notice(ev, ["medics"], me) == BurstNotice("medics", "bob", m.Priority.EMERGENCY)
    assert burst_notice(ev, ["medics"], me).line() == "[medics] bob: EMERGENCY"
    assert BurstNotice("volunteers", "ann").line() == "[volunteers] ann talking"
    assert burst_notice(cl.TalkerChanged("medics", None, 0), ["medics"], me) is None
    assert burst_notice(cl.TalkerChanged("medics", me, 3), ["medics"], me) is None
    assert burst_notice(ev, ["volunteers"], me) is None


def test_a_call_with_me_is_noticed_before_the_mixer_has_its_group() -> None:
    # the scan line and the mixer follow the connection in separate tasks
    me = "dora"
    call = call_group_name("ann", me)
    notice = burst_notice(cl.TalkerChanged(call, "ann", 1), ["g1", "g2"], me)
    assert notice is not None and notice.line() == "[call] ann talking"
    others = call_group_name("ann", "bob")
    assert burst_notice(cl.TalkerChanged(others, "ann", 1), ["g1"], me) is None


def test_priority_must_be_a_monitored_group() -> None:
    with pytest.raises(ValidationError, match="drivers"):
        MonitorMixer(["volunteers"], ["drivers"])
    with pytest.raises(ValidationError):
        MonitorMixer([])
