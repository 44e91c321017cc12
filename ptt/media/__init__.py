"""ptt.media: the voice path between the codec and the sockets, sans-I/O.

::

    talker:    OpusEncoder -> Packetizer (sender.py) ---- voice datagrams ---->
    listener:  BurstReceiver (receiver.py) = parse (packet.py) + JitterBuffer (jitter.py) + decoder
    feedback:  BurstReceiver.loss_report() -> RedundancyPolicy.update() -> Packetizer.redundancy

Nothing here opens a socket, starts a task or reads a clock: callers pass ``now`` and drive the
player's 20 ms ticks. ``impair.py`` holds the seeded loss and jitter models the tests and
``bench/bench_voice_quality.py`` run the real path through.
"""

from ptt.media.jitter import JitterBuffer, JitterConfig, JitterStats, PlayoutItem, Source
from ptt.media.packet import VoicePayload, encode_payload, parse_payload
from ptt.media.receiver import BurstReceiver, LossReport
from ptt.media.sender import DEFAULT_REDUNDANCY, MediaSettings, Packetizer, RedundancyPolicy

__all__ = [
    "DEFAULT_REDUNDANCY",
    "BurstReceiver",
    "JitterBuffer",
    "JitterConfig",
    "JitterStats",
    "LossReport",
    "MediaSettings",
    "Packetizer",
    "PlayoutItem",
    "RedundancyPolicy",
    "Source",
    "VoicePayload",
    "encode_payload",
    "parse_payload",
]
