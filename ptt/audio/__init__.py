"""ptt.audio: the sound end of the voice path.

- :mod:`~ptt.audio.codec`: Opus encoder/decoder (16 kHz mono, 20 ms frames, in-band FEC, PLC)
- :mod:`~ptt.audio.streams`: the FrameSource / FrameSink / ClockedSink protocols, silence, tones
- :mod:`~ptt.audio.devices`: PyAudio capture and playback, device listing
- :mod:`~ptt.audio.wav`: WAV file source and sink, any PCM WAV in
- :mod:`~ptt.audio.tones`: talk-permit, busy, end-of-burst and emergency tones
- :mod:`~ptt.audio.levels`: RMS/peak meters and a terminal VU bar
- :mod:`~ptt.audio.resample`: numpy sample-rate conversion
- :mod:`~ptt.audio.samples`: espeak-ng speech for tests and benchmarks
- :mod:`~ptt.audio.pulse`: a private headless PulseAudio for tests and the demo

A frame is ``FRAME_BYTES`` (640) bytes: 20 ms of 16-bit little-endian mono PCM at ``SAMPLE_RATE``.
"""

from ptt.audio.codec import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE

__all__ = ["FRAME_BYTES", "FRAME_MS", "FRAME_SAMPLES", "FRAME_SECONDS", "SAMPLE_RATE"]
