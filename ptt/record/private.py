"""Recordings hold the decrypted voice of encrypted groups: only their owner may read them.

Every folder a recorder makes is created 0700 and every file 0600, whatever the umask; a group
folder or an ``events.jsonl`` left looser by an older ptt is tightened when it is used again. A
recording directory that existed before (``ptt record --out .``) is the user's and keeps its mode:
what is inside it is private anyway.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ptt.config import DIR_MODE, FILE_MODE

__all__ = ["open_private", "private_dir"]


def private_dir(path: Path, *, tighten: bool = True) -> None:
    """Make ``path`` and any missing parents as 0700 folders (OSError as ``mkdir``'s).

    ``tighten``: also take group and other access away from ``path`` if it exists."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another recorder
            pass
    if tighten and not missing and stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(DIR_MODE)


def open_private(path: Path, flags: int) -> int:
    """``os.open(path, flags | O_CREAT)`` as a 0600 file (an existing file is made 0600)."""
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd
