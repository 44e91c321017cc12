"""One server per database: an exclusive lock held for the server's whole life.

Two servers on one SQLite file would each keep their own live state (sessions, floors, keys
pushed) and overwrite each other's rows, e.g. the list of clients to tell of a restart. The first
server takes ``fcntl.flock`` on ``<db>.lock`` (next to the database) and writes its pid and,
once bound, its address into it; a second one is refused with a message naming them. The kernel
drops the lock when the process ends, however it ends, so a killed server leaves nothing to clean
up (the file stays, with the last holder's details, and is reused).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ptt.config import FILE_MODE
from ptt.errors import StoreError

__all__ = ["DatabaseLock", "lock_path"]


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


class DatabaseLock:
    """Held from :meth:`acquire` to :meth:`release` (or the end of the process)."""

    def __init__(self, db: Path, fd: int) -> None:
        self.db = db
        self.path = lock_path(db)
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, db: Path) -> DatabaseLock:
        """Lock ``db`` for this process; StoreError naming the holder if another has it."""
        path = lock_path(db)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise StoreError(f"cannot open database {db}: cannot create its lock file {path}: "
                             f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise StoreError(f"database {db} is in use by another ptt server ({holder}); stop "
                             f"it first, or give this one its own --db") from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {path}: {exc.strerror or exc}") from None
        lock = cls(db, fd)
        lock.record(None)
        return lock

    def record(self, address: str | None) -> None:
        """Write this process's pid and ``address`` (once it is bound) for a second server."""
        if self._fd is None:
            return
        text = f"{os.getpid()} {address or ''}".strip() + "\n"
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text.encode(), 0)
        except OSError:
            pass  # the lock holds regardless; only the second server's message is poorer

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def _holder(fd: int) -> str:
    """"pid N, listening on HOST:PORT" from the holder's lock file, as far as it is known."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        text = []
    if not text:
        return "pid unknown"
    pid = f"pid {text[0]}"
    return f"{pid}, listening on {text[1]}" if len(text) > 1 else f"{pid}, still starting"
