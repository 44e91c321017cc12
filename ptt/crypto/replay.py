"""A sliding anti-replay window over 64-bit sequence numbers (RFC 4303 section 3.4.3, RFC 6479).

The receiver remembers the highest sequence number it accepted (``top``) and a bitmap of which of
the ``size`` numbers at and below ``top`` it has seen. A number above ``top`` is new; one at least
``size`` below it is too old to judge and is refused; one inside the window is new exactly when
its bit is clear. Memory is one Python int of ``size`` bits per window, whatever the traffic.

Use it in two steps, so a forged datagram cannot move the window::

    if not window.check(seq):      # cheap, before any cryptography
        drop
    plaintext = open(...)          # AEAD: raises on a forgery
    window.commit(seq)             # only now is ``seq`` spent

RFC 6479 keeps the bitmap in machine words and clears whole words as the window slides, to avoid
shifting; a Python int shifts a 1024-bit bitmap in well under a microsecond, so the simple form is
kept and the behaviour is the same.
"""

from __future__ import annotations

__all__ = ["DEFAULT_WINDOW", "MAX_SEQ", "ReplayWindow"]

DEFAULT_WINDOW = 1024
MAX_SEQ = (1 << 64) - 1


class ReplayWindow:
    """Which sequence numbers a receiver has accepted, within the last ``size`` of them.

    Starts empty: every number from 0 up is new until committed.
    """

    __slots__ = ("_bits", "_mask", "_top", "size")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if size < 1:
            raise ValueError("a replay window holds at least one sequence number")
        self.size = size
        self._mask = (1 << size) - 1
        self._top = -1  # nothing accepted yet
        self._bits = 0  # bit i set: top - i was accepted

    @property
    def top(self) -> int:
        """The highest sequence number accepted so far (-1 before the first)."""
        return self._top

    def check(self, seq: int) -> bool:
        """True when ``seq`` has not been accepted and is not too old to tell; changes nothing."""
        if not 0 <= seq <= MAX_SEQ:
            return False
        if seq > self._top:
            return True
        offset = self._top - seq
        if offset >= self.size:
            return False
        return not self._bits >> offset & 1

    def commit(self, seq: int) -> None:
        """Mark ``seq`` as accepted; call only after the datagram carrying it authenticated.

        Raises ValueError for a number :meth:`check` refuses: committing one would be a bug in the
        caller (it skipped the check or committed twice).
        """
        if not self.check(seq):
            raise ValueError(f"sequence number {seq} is replayed or too old")
        if seq > self._top:
            shift = seq - self._top
            # a jump wider than the window forgets everything below; the shift stays bounded
            self._bits = ((self._bits << shift) & self._mask) | 1 if shift < self.size else 1
            self._top = seq
        else:
            self._bits |= 1 << (self._top - seq)

    def accept(self, seq: int) -> bool:
        """:meth:`check` and :meth:`commit` in one, for callers that already authenticated."""
        if not self.check(seq):
            return False
        self.commit(seq)
        return True
