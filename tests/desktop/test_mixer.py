"""The group mixer with real Opus: the higher-priority group is heard, mute hands it down."""

from __future__ import annotations

import numpy as np

from ptt.audio.codec import FRAME_SAMPLES, SAMPLE_RATE, OpusEncoder
from ptt.audio.tones import ToneSet
from ptt.desktop.mixer import GroupMixer
from ptt.media.sender import Packetizer

TICK = 0.02


def _tone(freq: float, n: int) -> list[bytes]:
    t = np.arange(n * FRAME_SAMPLES) / SAMPLE_RATE
    x = np.rint(8000 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    return [x[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES].tobytes() for i in range(n)]


def _dominant(frame: bytes) -> float:
    x = np.frombuffer(frame, "<i2").astype(float)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * SAMPLE_RATE / len(x))


def _run(mix: GroupMixer, n: int) -> list[bytes]:
    """Two talkers at once: 'drivers' at 500 Hz (group 1), 'volunteers' at 1500 Hz (group 2)."""
    streams = []
    for gid, freq in ((1, 500.0), (2, 1500.0)):
        enc, pk = OpusEncoder(), Packetizer(gid, 10 + gid, 100 + gid)
        streams.append([pk.packetize(enc.encode(f)) for f in _tone(freq, n)])
    out = []
    for i in range(n + 10):
        now = i * TICK
        for s in streams:
            if i < n:
                mix.receive(s[i], now)
        out.append(mix.tick(now))
    return out


def _mixer(order: list[str]) -> GroupMixer:
    mix = GroupMixer(ToneSet.none())
    mix.set_group("drivers", 1)
    mix.set_group("volunteers", 2)
    mix.set_order(order)
    return mix


def test_higher_priority_group_wins_and_mute_hands_it_down() -> None:
    mix = _mixer(["drivers", "volunteers"])
    out = _run(mix, 50)
    voiced = [f for f in out if np.abs(np.frombuffer(f, "<i2")).max() > 1000]
    assert len(voiced) > 35
    assert all(abs(_dominant(f) - 500) < 100 for f in out[5:45])  # the tail is concealment
    heard_d, dropped_d = mix.stats("drivers")
    heard_v, dropped_v = mix.stats("volunteers")
    assert heard_d > 35 and dropped_d == 0 and heard_v == 0 and dropped_v > 35

    mix = _mixer(["volunteers", "drivers"])
    assert all(abs(_dominant(f) - 1500) < 100 for f in _run(mix, 50)[10:40])

    mix = _mixer(["drivers", "volunteers"])
    mix.set_muted("drivers", True)
    assert all(abs(_dominant(f) - 1500) < 100 for f in _run(mix, 50)[10:40])
    assert mix.stats("drivers")[0] == 0


def test_tones_mix_over_voice_and_end_tone_follows_a_heard_burst() -> None:
    mix = _mixer(["drivers", "volunteers"])
    mix.tones = ToneSet()
    mix.play_tone("talk_permit")
    out = _run(mix, 30)
    assert np.abs(np.frombuffer(out[0], "<i2")).max() > 0  # the permit chirp before any voice
    # after both bursts stop, one end-of-burst tone (for the heard group only) plays
    tail = out[-10:]
    loud = [f for f in tail if np.abs(np.frombuffer(f, "<i2")).max() > 500]
    assert 1 <= len(loud) <= len(ToneSet().frames("end_of_burst"))


def test_opened_frames_play_and_refused_ones_are_counted() -> None:
    """With an opener (VoiceKeys.open_voice in the engine), a sealed stream plays as its
    plaintext and what the opener refuses never reaches a receiver."""
    from ptt.crypto.voice import VoiceKey, VoiceOpener, VoiceSealer
    from ptt.errors import AuthError, ProtocolError
    from ptt.wire.voice import decode_voice

    key = VoiceKey(2, 1, bytes(range(32)))
    sealer, opener = VoiceSealer(key), VoiceOpener(2)
    opener.install(key)

    def open_voice(datagram: bytes) -> tuple[object, bytes] | None:
        try:
            return opener.open(datagram)
        except (AuthError, ProtocolError):  # plain or forged: refused, as VoiceKeys does
            return None

    mix = GroupMixer(opener=open_voice)  # type: ignore[arg-type]
    mix.set_group("volunteers", 2)
    enc, pk = OpusEncoder(), Packetizer(2, 12, 102)
    frames = [pk.packetize(enc.encode(f)) for f in _tone(1500.0, 30)]
    out = []
    for i, datagram in enumerate(frames):
        if i < 10:
            mix.receive(datagram, i * TICK)  # in the clear: refused
        else:
            mix.receive(sealer.seal(*decode_voice(datagram)), i * TICK)
        out.append(mix.tick(i * TICK))
    for i in range(30, 40):
        out.append(mix.tick(i * TICK))
    assert mix.undecryptable == 10
    heard, _ = mix.stats("volunteers")
    assert heard >= 18
    loud = [f for f in out if np.abs(np.frombuffer(f, "<i2")).max() > 2000]
    assert len(loud) >= 18 and abs(_dominant(b"".join(loud[2:])) - 1500.0) < 30
