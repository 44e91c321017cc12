"""Text pages on the server: checked, stored by the adapter, delivered once per device, receipts.

::

    sender             core                          adapter (store)        member devices
    PageSend  ----->   member? size? rate?
                       PageSubmitted event  ----->   INSERT (committed)
                       page_stored(ev, id, ms) <---
    <-- PageAccepted   PagePush (reliable)  ----------------------------->  Ack = delivered
                       PageDelivered event  ----->   receipt + cursor
                       <------------------------------------------------  PageReceipt = read
    <-- PageReport     (after the online members' acks, at most PAGE_REPORT_WAIT)

The answer comes only after the adapter committed the page, so a server killed after it loses
nothing it accepted. Pages go to sessions that show them (``PageSubscribe``: listen, talk, the
monitor, the desktop), for the groups they joined, and to their user for direct pages. Each
subscription names the client's lasting *page device*: a device is pushed a page until it
acknowledges it once, and its *cursor* is the newest page id up to which it has had every page
addressed to it, so a device that logs in later is given, in order, only what it missed.

The recipients of a group page are the members when it was sent (not the sender): a member
added later does not get the group's older pages, and a removed member is not pushed anything
after its removal (nor can it open later pages: the group is re-keyed without it). A page of a
keyed group travels with the recipient's grant of the key epoch it was sealed with, so a page
sent before a re-key still opens on a device that comes online after it. The core keeps what
is retained in memory; the adapter loads it at start (``load_page``) and forgets what expired
(``forget_pages``): the core reads no clock.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ptt.crypto.pages import MAX_PAGE_BODY, page_text
from ptt.errors import ProtocolError
from ptt.protocol import messages as m
from ptt.protocol.messages import encoder_of
from ptt.protocol.server_events import PageDelivered, PageRead, PageStored, PageSubmitted
from ptt.protocol.server_outbox import Outbox
from ptt.protocol.server_state import PageEntry, ServerState
from ptt.protocol.session import Session

PAGE_REPORT_WAIT = 1.0  # after the page is stored, how long the online devices' acks are awaited
PAGE_RATE = 0.5  # pages a second one sender may send, sustained
PAGE_BURST = 10  # and at once
PAGE_LIST_OP = "page.list"
PAGE_LIST_BYTES = 40_000  # of page entries in one page.list answer (newest first)
PAGE_LIST_MAX = 200
PAGE_ENCODERS = 64  # pages whose push encoding is kept (the newest, being delivered)


@dataclass(slots=True)
class _Report:
    page_id: int
    sender_sid: int
    deadline: float
    online: frozenset[str]
    offline: frozenset[str]
    waiting: set[str] = field(default_factory=set)  # online members without it yet


class Pages:
    """PageSend in, PagePush out to each device once, receipts and the sender's report."""

    def __init__(self, state: ServerState, out: Outbox) -> None:
        self.state = state
        self.out = out
        self.pages: dict[int, PageEntry] = {}
        self._page_ids: list[int] = []  # ascending: the order of delivery
        self._page_subs: dict[int, str] = {}  # session id -> its page device
        self._cursors: dict[tuple[str, str], int] = {}  # (user, device) -> cursor
        self._page_flight: dict[tuple[int, int], tuple[int, str, str]] = {}  # key -> page, device
        self._pushed: dict[int, set[int]] = {}  # session id -> the page in flight to it
        self._page_queue: dict[int, deque[int]] = {}  # session id -> pages waiting their turn
        self._page_reports: dict[int, _Report] = {}  # by page id, in deadline order
        self._page_budget: dict[str, tuple[float, float]] = {}  # sender -> (tokens, when)
        self._old_grants: dict[tuple[str, int], dict[str, bytes]] = {}  # (group, epoch) -> grants
        # page id -> the store's receipt counts when a comparison last found this node's as many
        self._whole_at: dict[int, tuple[int, int]] = {}
        self._page_storing: set[tuple[int, int]] = set()  # (session, txn) at the adapter now
        # each page's PagePush encoded once but for its txn and grant (a push to 2,000
        # members encoded field by field spent half the fan-out's time there)
        self._page_encoders: dict[int, Callable[[int, object], bytes]] = {}

    # --- the adapter's calls --------------------------------------------------------------------

    def load_page(self, page: PageEntry, cursors: dict[tuple[str, str], int] | None = None
                  ) -> None:
        """A retained page from the store (at start, in id order), with its receipts."""
        self.pages[page.page_id] = page
        if not self._page_ids or page.page_id > self._page_ids[-1]:
            self._page_ids.append(page.page_id)
        else:
            bisect.insort(self._page_ids, page.page_id)
        for k, v in (cursors or {}).items():
            self._cursors[k] = max(v, self._cursors.get(k, 0))

    def load_cursors(self, cursors: dict[tuple[str, str], int]) -> None:
        self._cursors.update(cursors)

    def keep_grants(self, group: str, epoch: int, grants: dict[str, bytes]) -> None:
        """Grants of an epoch of ``group`` that retained pages were sealed with."""
        self._old_grants[(group, epoch)] = dict(grants)

    def forget_pages(self, page_ids: list[int]) -> None:
        """Pages whose retention ended (the adapter deleted them from the store)."""
        gone = set(page_ids)
        for pid in gone:
            self.pages.pop(pid, None)
            self._page_reports.pop(pid, None)
        self._page_ids = [p for p in self._page_ids if p not in gone]
        used = {(p.group, p.epoch) for p in self.pages.values()}
        for key in [k for k in self._old_grants if k not in used]:
            g = self.state.groups.get(key[0])
            if g is None or g.key_epoch != key[1]:
                del self._old_grants[key]

    def page_stored(self, ev: PageSubmitted, page_id: int, sent_ms: int, now: float) -> None:
        """The adapter committed the page ``ev`` asked for: answer, push, await the acks."""
        self._page_storing.discard((ev.session_id, ev.txn))
        page = PageEntry(page_id, ev.group, ev.user, ev.to, ev.body, ev.epoch, ev.urgent,
                         sent_ms, ev.recipients)
        self.load_page(page)
        self.out.emit(PageStored(page))
        online = self._offer_all(page, now)
        home = self.state.home
        if home is not None and home.shared_pages:
            # a cluster's node: the other nodes deliver it to their users
            home.page_stored(page, now)
            online |= self._online_elsewhere(page)
        sender = self.state.sessions.by_id.get(ev.session_id)
        if sender is not None and sender.addr == ev.addr:
            self.out.answer(sender, ev.txn, m.PageAccepted(ev.txn, page_id, len(ev.recipients),
                                                        len(online)), now)
        self._page_reports[page_id] = _Report(page_id, ev.session_id, now + PAGE_REPORT_WAIT,
                                              frozenset(online),
                                              frozenset(ev.recipients - online), online)
        self._page_report_check(page_id, now)

    def _offer_all(self, page: PageEntry, now: float) -> set[str]:
        """``page`` to every device here that shows it now; the users of those devices."""
        online: set[str] = set()
        for user in page.recipients:
            for s in self.state.sessions.devices(user):
                if self._shows(s, page):
                    online.add(user)
                    self._offer(s, page, now)
        return online

    def _online_elsewhere(self, page: PageEntry) -> set[str]:
        """The recipients the roster shows online on another node of the cluster."""
        if page.group:
            g = self.state.groups.get(page.group)
            return set() if g is None else {u for u in g.remote if u in page.recipients}
        return {page.to} if any(page.to in g.remote
                                for g in self.state.groups.values()) else set()

    # --- pages and receipts from the other nodes of a cluster -------------------------------

    def remote_page(self, page: PageEntry, now: float) -> None:
        """A page another node stored in the shared store: kept, and pushed to the devices
        here that show it. Pages from two nodes may come in another order than their ids: a
        device's cursor here is moved back below one that came late and it has not had."""
        if page.page_id in self.pages:
            return
        late = bool(self._page_ids) and page.page_id < self._page_ids[-1]
        self.load_page(page)
        if late:
            for (user, device), cursor in list(self._cursors.items()):
                if (cursor >= page.page_id and user in page.recipients
                        and device not in page.delivered.get(user, ())):
                    self._cursors[(user, device)] = page.page_id - 1
        self._offer_all(page, now)

    def remote_receipts(self, marks: list[tuple[int, str, str, bool]], now: float) -> None:
        """Receipts (page, user, device, read?) of devices on other nodes: a device that had a
        page there is not given it here, and the reports and lists count it."""
        for pid, user, device, read in marks:
            page = self.pages.get(pid)
            if page is None or user not in page.recipients:
                continue
            if read:
                page.read.setdefault(user, set()).add(device)
                continue
            devices = page.delivered.setdefault(user, set())
            if device in devices:
                continue
            devices.add(device)
            self._advance(user, device)
            report = self._page_reports.get(pid)
            if report is not None:
                report.waiting.discard(user)
                if not report.waiting:
                    self._page_report_check(pid, now)

    def receipts_short(self, counts: Mapping[int, tuple[int, int]]) -> list[int]:
        """The pages kept here whose receipts (devices that had them, devices that read them)
        are fewer than ``counts``, the shared store's: marks another node wrote there whose
        ``PageReceipts`` message was lost on the bus. The adapter reads those pages' receipts
        from the store (:meth:`stored_receipts`)."""
        pages = self.pages
        short: list[int] = []
        # a page whose store counts did not change since a comparison found it whole is not
        # counted again: a page to 2,000 members holds thousands of marks, and most retained
        # pages take no more receipts
        seen, self._whole_at = self._whole_at, {}
        for pid, kinds in counts.items():
            page = pages.get(pid)
            if page is None:
                continue
            if seen.get(pid) != kinds and (sum(map(len, page.delivered.values())) < kinds[0]
                                           or sum(map(len, page.read.values())) < kinds[1]):
                short.append(pid)
            else:
                self._whole_at[pid] = kinds
        return short

    def stored_receipts(self, pages: Iterable[PageEntry], now: float) -> None:
        """Every receipt the shared store has of ``pages`` (kept here already), taken as
        another node's (:meth:`remote_receipts`: those known here change nothing)."""
        self.remote_receipts([(p.page_id, user, device, read) for p in pages
                              for read, marks in ((False, p.delivered), (True, p.read))
                              for user, devices in marks.items() for device in devices], now)

    def page_failed(self, ev: PageSubmitted, message: str, now: float) -> None:
        """The adapter could not store the page: the sender is told it was not accepted."""
        self._page_storing.discard((ev.session_id, ev.txn))
        sender = self.state.sessions.by_id.get(ev.session_id)
        if sender is not None:
            self.out.answer(sender, ev.txn, m.Error(ev.txn, m.ErrorCode.INTERNAL, message), now)

    def page_cursor(self, user: str, device: str) -> int:
        return self._cursors.get((user, device), 0)

    # --- requests ---------------------------------------------------------------------------

    def on_page_send(self, s: Session, msg: m.PageSend, now: float) -> None:
        if (s.session_id, msg.txn) in self._page_storing:
            return  # a resend while the adapter stores the first copy: it answers once
        refusal = self._page_refusal(s, msg, now)
        if refusal is not None:
            code, text = refusal
            self.out.answer(s, msg.txn, m.Error(msg.txn, code, text), now)
            return
        if msg.group:
            g = self.state.groups[msg.group]
            recipients = frozenset(u for u in g.members if u != s.user)
        else:
            recipients = frozenset({msg.to})
        self._page_storing.add((s.session_id, msg.txn))
        self.out.emit(PageSubmitted(s.session_id, s.user, msg.txn, s.addr, msg.group,
                                          msg.to, bytes(msg.body), msg.epoch, msg.urgent,
                                          recipients))

    def _page_refusal(self, s: Session, msg: m.PageSend, now: float
                      ) -> tuple[m.ErrorCode, str] | None:
        if len(msg.body) > MAX_PAGE_BODY:  # before anything looks inside it
            return m.ErrorCode.INVALID, f"page too long: {len(msg.body)} bytes"
        if bool(msg.group) == bool(msg.to):
            return m.ErrorCode.BAD_REQUEST, "a page goes to a group or to a user"
        if msg.group:
            g = self.state.groups.get(msg.group)
            if g is None or g.private or s.user not in g.members:
                # the same answer as an unknown group: a page reveals no group it is not in
                return m.ErrorCode.NOT_MEMBER, f"you are not a member of '{msg.group}'"
            if g.members.get(s.user):
                return m.ErrorCode.FORBIDDEN, f"you are a listen-only member of '{msg.group}'"
            keyed = g.key_epoch > 0
            if keyed and msg.epoch != g.key_epoch:
                return m.ErrorCode.CONFLICT, (f"'{msg.group}' has key epoch {g.key_epoch} now: "
                                              f"send again")
            if not keyed and msg.epoch:
                return m.ErrorCode.INVALID, f"'{msg.group}' is plain: a page there is not sealed"
        else:
            refusal = self.state.call_refusal(s, msg.to)
            if refusal is not None:
                return m.ErrorCode.NOT_FOUND, refusal.replace("call", "page")
            if msg.epoch:
                return m.ErrorCode.INVALID, "a direct page is not sealed with a group key"
        if not msg.epoch:
            try:
                page_text(msg.body)
            except ProtocolError as exc:
                return m.ErrorCode.INVALID, str(exc)
        if msg.urgent and s.role not in self.state.config.emergency_roles:
            return m.ErrorCode.FORBIDDEN, "your role may not send urgent pages"
        tokens, when = self._page_budget.get(s.user, (float(PAGE_BURST), now))
        tokens = min(float(PAGE_BURST), tokens + (now - when) * PAGE_RATE)
        if tokens < 1.0:
            wait = (1.0 - tokens) / PAGE_RATE
            self._page_budget[s.user] = (tokens, now)
            return m.ErrorCode.RATE_LIMITED, f"too many pages: wait {wait:.0f} s"
        self._page_budget[s.user] = (tokens - 1.0, now)
        return None

    def retire_grants(self, group: str, epoch: int, grants: dict[str, bytes]) -> None:
        """``group``'s key moves past ``epoch``: its grants stay while pages sealed with it do."""
        if any(p.group == group and p.epoch == epoch for p in self.pages.values()):
            self._old_grants[(group, epoch)] = dict(grants)

    def on_page_subscribe(self, s: Session, msg: m.PageSubscribe, now: float) -> None:
        self.out.answer(s, msg.txn, m.Ack(msg.txn), now)
        self._page_subs[s.session_id] = msg.device[:100] or s.device
        self._push_missed(s, now)

    def on_page_receipt(self, s: Session, msg: m.PageReceipt, now: float) -> None:
        self.out.answer(s, msg.txn, m.Ack(msg.txn), now)
        page = self.pages.get(msg.page_id)
        device = self._page_subs.get(s.session_id)
        if page is None or device is None or s.user not in page.recipients:
            self.out.drop(s.addr, f"read receipt for a page not sent here: {msg.page_id}")
            return
        readers = page.read.setdefault(s.user, set())
        if device not in readers:
            readers.add(device)
            self.out.emit(PageRead(page.page_id, s.user, device))
            if self.state.home is not None:
                self.state.home.page_receipt(page.page_id, s.user, device, True, now)

    # --- delivery ---------------------------------------------------------------------------

    def _shows(self, s: Session, page: PageEntry) -> bool:
        """Does session ``s`` show ``page`` now: subscribed, in its group, not had it yet?"""
        device = self._page_subs.get(s.session_id)
        if (device is None or page.page_id in self._pushed.get(s.session_id, ())
                or page.page_id in self._page_queue.get(s.session_id, ())):
            return False
        if page.group:
            g = self.state.groups.get(page.group)
            if page.group not in s.joined or g is None or s.user not in g.members:
                return False
        return device not in page.delivered.get(s.user, ())

    def _offer(self, s: Session, page: PageEntry, now: float) -> None:
        """One page in flight per session, the next after its ack: a device is shown its
        pages in order, whatever the network reorders."""
        if self._pushed.get(s.session_id):
            self._page_queue.setdefault(s.session_id, deque()).append(page.page_id)
        else:
            self._push(s, page, now)

    def _push_next(self, s: Session, now: float) -> None:
        queue = self._page_queue.get(s.session_id)
        while queue:
            page = self.pages.get(queue.popleft())
            if page is not None and self._shows(s, page):
                self._push(s, page, now)
                return

    def _push(self, s: Session, page: PageEntry, now: float) -> None:
        grant = b""
        if page.epoch:
            g = self.state.groups.get(page.group)
            if g is not None and g.key_epoch == page.epoch:
                grant = g.grants.get(s.user, b"")
            else:
                grant = self._old_grants.get((page.group, page.epoch), {}).get(s.user, b"")
        encode = self._page_encoders.get(page.page_id)
        if encode is None:
            if len(self._page_encoders) >= PAGE_ENCODERS:
                self._page_encoders.clear()
            encode = self._page_encoders[page.page_id] = encoder_of(m.PagePush(
                0, page.page_id, page.group, page.sender, page.to, page.body, page.epoch,
                page.urgent, page.sent_ms, b""))
        key = self.out.send_reliable_bytes(s, lambda txn: encode(txn, grant), now)
        self._page_flight[key] = (page.page_id, s.user, self._page_subs[s.session_id])
        self._pushed.setdefault(s.session_id, set()).add(page.page_id)

    def _push_missed(self, s: Session, now: float) -> None:
        """Everything ``s``'s device has not had yet, oldest first."""
        device = self._page_subs.get(s.session_id)
        if device is None:
            return
        start = bisect.bisect_right(self._page_ids, self._cursors.get((s.user, device), 0))
        for pid in self._page_ids[start:]:
            page = self.pages[pid]
            if s.user in page.recipients and self._shows(s, page):
                self._offer(s, page, now)

    def joined(self, s: Session, now: float) -> None:
        """``s`` joined a group: the pages of it its device missed come now."""
        if s.session_id in self._page_subs:
            self._push_missed(s, now)

    def session_ended(self, s: Session) -> None:
        self._page_subs.pop(s.session_id, None)
        self._pushed.pop(s.session_id, None)
        self._page_queue.pop(s.session_id, None)
        for key in [k for k in self._page_flight if k[0] == s.session_id]:
            del self._page_flight[key]

    def on_acked(self, key: tuple[int, int], now: float) -> None:
        flight = self._page_flight.pop(key, None)
        if flight is None:
            return
        pid, user, device = flight
        pushed = self._pushed.get(key[0])
        if pushed is not None:
            pushed.discard(pid)
        s = self.state.sessions.by_id.get(key[0])
        if s is not None:
            self._push_next(s, now)
        page = self.pages.get(pid)
        if page is None:
            return
        devices = page.delivered.setdefault(user, set())
        if device in devices:
            return  # another session of the same device had it first
        devices.add(device)
        cursor = self._advance(user, device)
        self.out.emit(PageDelivered(pid, user, device, cursor))
        if self.state.home is not None:
            self.state.home.page_receipt(pid, user, device, False, now)
        report = self._page_reports.get(pid)
        if report is not None:
            report.waiting.discard(user)
            if not report.waiting:
                self._page_report_check(pid, now)

    def _advance(self, user: str, device: str) -> int:
        """Move the device's cursor past every page it has had, in order."""
        cursor = self._cursors.get((user, device), 0)
        start = bisect.bisect_right(self._page_ids, cursor)
        for pid in self._page_ids[start:]:
            page = self.pages[pid]
            if user in page.recipients and device not in page.delivered.get(user, ()):
                break
            cursor = pid
        self._cursors[(user, device)] = cursor
        return cursor

    # --- the sender's report ----------------------------------------------------------------

    def _page_report_check(self, pid: int, now: float) -> None:
        r = self._page_reports[pid]
        page = self.pages.get(pid)
        if page is None:
            del self._page_reports[pid]
            return
        if now >= r.deadline or not r.waiting:
            del self._page_reports[pid]
            delivered = sorted(u for u in page.recipients if page.delivered.get(u))
            pending = sorted(u for u in r.online if not page.delivered.get(u))
            offline = sorted(u for u in r.offline if not page.delivered.get(u))
            s = self.state.sessions.by_id.get(r.sender_sid)
            if s is not None:
                self.out.send_reliable(s, lambda txn: m.PageReport(
                    txn, pid, page.group or page.to, delivered, pending, offline), now)

    def get_timer(self) -> float | None:
        if not self._page_reports:
            return None
        return next(iter(self._page_reports.values())).deadline

    def handle_timer(self, now: float) -> None:
        while self._page_reports:
            r = next(iter(self._page_reports.values()))
            if now < r.deadline:
                return
            self._page_report_check(r.page_id, now)

    # --- listing ----------------------------------------------------------------------------

    def on_page_list(self, s: Session, msg: m.Admin, now: float) -> None:
        """``page.list``: the recent pages of a group the caller is in (any page for a
        coordinator), or the caller's direct pages; newest first, with their receipt counts
        and the caller's grants for the epochs they were sealed with."""
        group = msg.args.get("group") or ""
        limit = msg.args.get("limit", 20)
        if not isinstance(group, str):
            self.out.answer(s, msg.txn, m.Error(msg.txn, m.ErrorCode.BAD_REQUEST,
                                             "group must be a name"), now)
            return
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            limit = 20
        if group:
            g = self.state.groups.get(group)
            if g is None or g.private or (s.user not in g.members
                                          and s.role != m.Role.COORDINATOR):
                self.out.answer(s, msg.txn, m.Error(msg.txn, m.ErrorCode.NOT_FOUND,
                                                 f"unknown group '{group}'"), now)
                return
            chosen = [p for p in self.pages.values() if p.group == g.name]
        else:
            chosen = [p for p in self.pages.values()
                      if not p.group and s.user in (p.sender, p.to)]
        entries: list[dict[str, str | int | bool | bytes | None]] = []
        grants: dict[str, bytes] = {}
        size = 0
        for p in sorted(chosen, key=lambda p: -p.page_id)[:min(limit, PAGE_LIST_MAX)]:
            size += len(p.body) + 200
            if size > PAGE_LIST_BYTES:
                break
            entries.append(self._page_entry(p))
            if p.epoch and str(p.epoch) not in grants:
                g = self.state.groups.get(p.group)
                grant = (g.grants.get(s.user, b"") if g is not None and g.key_epoch == p.epoch
                         else self._old_grants.get((p.group, p.epoch), {}).get(s.user, b""))
                if grant:
                    grants[str(p.epoch)] = grant
        self.out.answer(s, msg.txn, m.AdminResponse(msg.txn, {"pages": entries,
                                                          "grants": grants}), now)

    @staticmethod
    def _page_entry(p: PageEntry) -> dict[str, str | int | bool | bytes | None]:
        devices = sum(len(d) for d in p.delivered.values())
        return {"id": p.page_id, "group": p.group, "sender": p.sender, "to": p.to,
                "sent_ms": p.sent_ms, "urgent": p.urgent, "epoch": p.epoch, "body": p.body,
                "recipients": len(p.recipients),
                "delivered": sum(1 for u in p.recipients if p.delivered.get(u)),
                "read": sum(1 for u in p.recipients if p.read.get(u)),
                "devices_delivered": devices,
                "devices_read": sum(len(d) for d in p.read.values()),
                "unread": ",".join(sorted(u for u in p.recipients if not p.read.get(u))[:50])}
