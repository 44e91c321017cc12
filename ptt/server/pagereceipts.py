"""Text pages' receipts and device cursors, gathered for the store.

Every device's acknowledgement (delivered, with its new cursor) and read receipt of a page comes
as a core event (``PageDelivered``, ``PageRead``); a page to 2,000 members brings thousands within
a second. :class:`ReceiptChanges` gathers them, and the adapter hands the store what it took once
per PAGES_SAVE_EVERY, in one transaction (``PageStore.save_receipts``). Sans-I/O.
"""

from __future__ import annotations

from ptt.protocol.server import PageDelivered, PageRead

PAGES_SAVE_EVERY = 0.1  # s: page receipts and cursors reach the store this often at most


class ReceiptChanges:
    """Receipts (page id, user, device) and each device's newest cursor since the last save."""

    def __init__(self) -> None:
        self._delivered: list[tuple[int, str, str]] = []
        self._read: list[tuple[int, str, str]] = []
        self._cursors: dict[tuple[str, str], int] = {}

    def note(self, ev: PageDelivered | PageRead) -> None:
        if isinstance(ev, PageDelivered):
            self._delivered.append((ev.page_id, ev.user, ev.device))
            self._cursors[(ev.user, ev.device)] = ev.cursor
        else:
            self._read.append((ev.page_id, ev.user, ev.device))

    def take(self) -> tuple[list[tuple[int, str, str]], list[tuple[int, str, str]],
                            dict[tuple[str, str], int]]:
        """What the store has not heard yet, ``(delivered, read, cursors)``; forgotten here."""
        taken = self._delivered, self._read, self._cursors
        self._delivered, self._read, self._cursors = [], [], {}
        return taken
