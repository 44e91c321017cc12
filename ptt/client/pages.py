"""Text pages on the client: sending one, and the inbox of a client that shows them.

::

    inbox = PageInbox(conn, page_device(config_path))   # listen, talk, monitor, desktop
    inbox.on_page.append(show)      # show(ShownPage); then inbox.read(page) once a person saw it

    body, epoch = seal_for(conn, group, text, urgent)   # ptt page: sealed with the group's key

A *page device* is lasting (one per client config, kept in a file beside it), unlike the
session's device id (one per process): the server gives each page device every page once, so
a ``ptt listen`` started again on the same config does not show yesterday's pages again.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ptt.client import keys
from ptt.client.connection import Connection
from ptt.config import client_config_path, write_private
from ptt.crypto.pages import open_page, page_text, seal_page
from ptt.errors import AuthError, ProtocolError, PttError
from ptt.protocol import messages as m

PAGE_DEVICE_FILE = "page-device"


def page_device(config_path: Path | None = None) -> str:
    """This config's lasting page device id, made (random, file 0600) on first use; when the
    file cannot be written, one per host and config path, which is stable too."""
    config = Path(config_path) if config_path is not None else client_config_path()
    path = config.parent / PAGE_DEVICE_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
        if 0 < len(text) <= 64:
            return text
    except OSError:
        pass
    made = f"{os.uname().nodename[:24]}-{secrets.token_hex(6)}"
    try:
        write_private(path, made.encode())
    except (OSError, PttError):
        return f"{os.uname().nodename[:24]}-{abs(hash(str(config.resolve()))) % 10**12}"
    return made


@dataclass(frozen=True, slots=True)
class ShownPage:
    """A page as a person sees it; ``text`` is None when it did not open (no key)."""

    page_id: int
    group: str  # "" for a page to this user
    sender: str
    text: str | None
    urgent: bool
    sent: float  # the server's wall clock, seconds
    problem: str = ""

    def line(self) -> str:
        """One line for a terminal: ``[volunteers] ann: Gate 3 closed``."""
        where = f"[{self.group}]" if self.group else "[to you]"
        mark = " URGENT" if self.urgent else ""
        body = self.text if self.text is not None else f"(cannot read it: {self.problem})"
        sent = time.strftime("%H:%M:%S", time.localtime(self.sent))
        return f"page{mark} {where} {self.sender} ({sent}): {body}"

    def entry(self) -> str:
        """Shorter, for a list: ``URGENT 14:03 bob [volunteers]: Gate 3 closed``."""
        body = self.text if self.text is not None else f"(cannot read it: {self.problem})"
        sent = time.strftime("%H:%M", time.localtime(self.sent))
        where = f" [{self.group}]" if self.group else ""
        return f"{'URGENT ' if self.urgent else ''}{sent} {self.sender}{where}: {body}"


def open_push(conn: Connection, push: m.PagePush) -> ShownPage:
    """The page in ``push``, opened with the group key of its epoch when it is sealed."""
    text: str | None = None
    problem = ""
    try:
        if push.epoch:
            key = keys.VoiceKeys.of(conn).key_of(push.group, push.epoch, push.grant)
            if key is None:
                problem = f"no key of epoch {push.epoch} for '{push.group}'"
            else:
                text = open_page(key, push.sender, push.urgent, push.body)
        else:
            text = page_text(push.body)
    except (AuthError, ProtocolError) as exc:
        problem = str(exc)
    return ShownPage(push.page_id, push.group, push.sender, text, push.urgent,
                     push.sent_ms / 1000, problem)


def seal_for(conn: Connection, group: str, text: str, urgent: bool) -> tuple[bytes, int]:
    """``(body, epoch)`` of a page to ``group`` (joined): sealed with its key, or the UTF-8
    text for a plain group. PttError when the group is keyed and this member holds no key."""
    vk = keys.VoiceKeys.of(conn)
    if not vk.keyed(group):
        return text.encode("utf-8"), 0
    ring = vk.rings.get(group)
    if ring is None or ring.current is None:
        raise PttError(f"no key for '{group}' yet, so you cannot page it: ask a coordinator "
                       f"to run 'ptt group rekey {group}'")
    return seal_page(ring.current, conn.user, urgent, text, os.urandom(12)), ring.current.epoch


class PageInbox:
    """The pages a showing client receives: opened, handed to ``on_page`` callbacks in order;
    :meth:`read` sends the read receipt once a person saw one."""

    def __init__(self, conn: Connection, device: str) -> None:
        self.conn = conn
        self.on_page: list[Callable[[ShownPage], None]] = []
        self.unread: list[ShownPage] = []
        conn.page_handlers.append(self._on_push)
        conn.core.subscribe_pages(device, conn.now())
        conn.flush()

    def _on_push(self, push: m.PagePush) -> None:
        shown = open_push(self.conn, push)
        self.unread.append(shown)
        for cb in list(self.on_page):
            cb(shown)

    def read(self, page: ShownPage) -> None:
        """``page`` was shown to a person: its read receipt goes to the server."""
        if page in self.unread:
            self.unread.remove(page)
        if page.text is not None:
            self.conn.core.page_read(page.page_id, self.conn.now())
            self.conn.flush()
