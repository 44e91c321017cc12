"""Dropped receiver reports are counted under a fixed label, whatever the detail says."""

from __future__ import annotations

from ptt.protocol import server_feedback as sf
from ptt.server.metrics import DATAGRAM_DROPS, _label


def test_receiver_report_drops_map_to_fixed_labels() -> None:
    for kind in (sf.NOT_LISTENING, sf.TOO_OFTEN, sf.PAST_BURST):
        assert _label(kind, DATAGRAM_DROPS) == "receiver_report"
    assert _label(f"{sf.MALFORMED}: lost 51 of 50 frames", DATAGRAM_DROPS) == "malformed"
