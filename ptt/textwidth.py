"""How wide text is on a terminal, so tables line up when names are written in any script.

A character of an East Asian wide or full-width class (``张``, ``Ｚ``) takes two terminal cells,
a combining mark or a format character (the decomposed ``e`` + U+0308, a zero-width joiner) none,
everything else one: the rule of ``wcwidth(3)``, from Python's own Unicode database so that the
widths follow the interpreter's Unicode version. Control characters never reach here (names
refuse them; other cells are ptt's own text).
"""

from __future__ import annotations

import unicodedata

__all__ = ["display_width", "ljust", "rjust"]


def _cells(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Terminal cells ``text`` takes: ``display_width("张伟") == 4``, ``display_width("zoë") == 3``."""
    if text.isascii():
        return len(text)
    return sum(_cells(c) for c in text)


def ljust(text: str, width: int) -> str:
    """``text`` padded with spaces on the right to ``width`` terminal cells."""
    return text + " " * max(0, width - display_width(text))


def rjust(text: str, width: int) -> str:
    """``text`` padded with spaces on the left to ``width`` terminal cells."""
    return " " * max(0, width - display_width(text)) + text
