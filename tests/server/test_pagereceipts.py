"""Page receipts gathered between two saves: every receipt once, each device's newest cursor."""

from __future__ import annotations

from ptt.protocol.server import PageDelivered, PageRead
from ptt.server.pagereceipts import ReceiptChanges


def test_receipts_in_order_and_the_newest_cursor_per_device() -> None:
    r = ReceiptChanges()
    r.note(PageDelivered(1, "ann", "phone", 1))
    r.note(PageDelivered(2, "ann", "phone", 2))
    r.note(PageDelivered(2, "ann", "laptop", 0))  # page 1 not had yet: the cursor stays behind
    r.note(PageRead(1, "ann", "phone"))
    delivered, read, cursors = r.take()
    assert delivered == [(1, "ann", "phone"), (2, "ann", "phone"), (2, "ann", "laptop")]
    assert read == [(1, "ann", "phone")]
    assert cursors == {("ann", "phone"): 2, ("ann", "laptop"): 0}
    assert r.take() == ([], [], {})
