"""The Tk window: groups, the big push-to-talk button, state, VU meter, emergency, settings.

Tk runs in the main thread and never waits on the network: commands go to the
:class:`~ptt.desktop.engine.Engine` (non-blocking), and its events are drained every
:data:`POLL_MS` by an ``after()`` tick, folded into the :class:`~ptt.desktop.model.DesktopModel`
and drawn. Mouse button 1 on the big button and the space bar anywhere in the window are one
button (:class:`~ptt.desktop.hold.PushToTalk`, which filters X11 auto-repeat)::

    root = tk.Tk()
    win = DesktopWindow(root, load_client_config())
    root.mainloop()          # win.close() on exit releases the floor and logs out
"""

from __future__ import annotations

import queue
import time
import tkinter as tk
import tkinter.font as tkfont
from collections import deque
from functools import partial
from pathlib import Path
from tkinter import ttk

from ptt.audio.levels import SILENCE_DBFS
from ptt.config import ClientConfig
from ptt.desktop.engine import AudioFactory, Engine
from ptt.desktop.hold import Edge, Input, PushToTalk
from ptt.desktop.model import DesktopModel, TalkState, View
from ptt.desktop.settings import ConfirmDialog, SettingsDialog

__all__ = ["CJK_FAMILIES", "DesktopWindow", "LatencyProbe", "ui_font_family"]

POLL_MS = 15  # engine events reach the screen within a frame or so
MESSAGE_ROWS = 3  # text pages visible in the list (it scrolls)
UNREAD_BG = "#fdebd0"  # an unread page's row; an unread urgent one is red
URGENT_BG = "#e74c3c"
RENDER_MS = 100  # the talk-time bar moves without any event
PROBE_MS = 20
VU_FLOOR_DBFS = -60.0
MAX_EVENTS_PER_POLL = 200  # a flood (e.g. 50 level updates/s after a stall) cannot hog Tk
TITLE = "ptt"
WIDTH_PX = 480  # the window's fixed width: text wraps, it never pushes the window wider
OFFLINE_FG = "#a6acaf"  # greyed: presence and a talk button that cannot work offline
OFFLINE_BG = "#e5e7e9"
# Names are written in any script (``志愿者``, ``张伟``): the window's text uses the first family
# here that the machine has, each of which draws Latin, Greek, Cyrillic and CJK alike. Debian's
# fonts-wqy-zenhei (7.5 MB, in the Makefile's packages) gives the first; fonts-noto-cjk (57 MB)
# the second.
CJK_FAMILIES = ("WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans SC", "Droid Sans Fallback")
LATIN_FAMILY = "DejaVu Sans"  # without any of those: Latin text right, CJK left to fallback
_NAMED_FONTS = ("TkDefaultFont", "TkTextFont", "TkMenuFont", "TkHeadingFont", "TkCaptionFont",
                "TkSmallCaptionFont", "TkIconFont", "TkTooltipFont")


def ui_font_family(root: tk.Misc) -> str:
    """The family the window writes with: the first of :data:`CJK_FAMILIES` installed."""
    available = set(tkfont.families(root))
    return next((f for f in CJK_FAMILIES if f in available), LATIN_FAMILY)


class LatencyProbe:
    """Measures how late Tk runs an ``after()`` callback: the window's responsiveness.

    Every ``period_ms`` it asks to be called back and records the delay beyond the period.
    """

    def __init__(self, root: tk.Misc, period_ms: int = PROBE_MS, keep: int = 5000) -> None:
        self.root = root
        self.period_ms = period_ms
        self.samples: deque[float] = deque(maxlen=keep)  # seconds late
        self._due = 0.0
        self._job: str | None = None

    def start(self) -> None:
        self.samples.clear()
        self._arm()

    def stop(self) -> None:
        if self._job is not None:
            self.root.after_cancel(self._job)
            self._job = None

    def percentile(self, p: float) -> float:
        xs = sorted(self.samples)
        if not xs:
            return 0.0
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]

    def _arm(self) -> None:
        self._due = time.perf_counter() + self.period_ms / 1000
        self._job = self.root.after(self.period_ms, self._fire)

    def _fire(self) -> None:
        self.samples.append(max(0.0, time.perf_counter() - self._due))
        self._arm()


class DesktopWindow:
    """The whole window on ``root``; starts its engine at once."""

    def __init__(self, root: tk.Tk, config: ClientConfig, *, config_path: Path | None = None,
                 audio: AudioFactory | None = None) -> None:
        self.root = root
        self.config = config
        self.config_path = config_path
        self.audio = audio
        self.model = DesktopModel(config.user or "")
        self.hold = PushToTalk()
        self.probe = LatencyProbe(root)
        self.confirm: ConfirmDialog | None = None
        self.settings: SettingsDialog | None = None
        self.emergency_active = False
        self._rows: dict[str, dict[str, tk.Widget]] = {}
        self._row_order: list[str] = []
        self._shown: dict[str, object] = {}
        self._jobs: list[str] = []
        self._hold_job: str | None = None
        self._build()
        self.engine = Engine(config, audio, config_path=config_path)
        self.engine.start()
        self._jobs.append(root.after(POLL_MS, self._poll))
        self._jobs.append(root.after(RENDER_MS, self._tick))
        root.protocol("WM_DELETE_WINDOW", self.close)

    # --- building -------------------------------------------------------------------------------

    def _build(self) -> None:
        r = self.root
        family = self.font_family = ui_font_family(r)
        for name in _NAMED_FONTS:  # every widget's default, dialogs included
            tkfont.nametofont(name, r).configure(family=family)
        r.title(f"{TITLE}: {self.config.user or 'not logged in'}")
        r.configure(padx=10, pady=10, width=WIDTH_PX)
        r.minsize(WIDTH_PX, 1)
        r.maxsize(WIDTH_PX, 10_000)
        wrap = WIDTH_PX - 30
        # width=1: a label asks for no width of its own (it fills the window's), so a long
        # text wraps at ``wrap`` instead of widening the window
        self.conn_label = tk.Label(r, text="starting…", anchor="w", fg="#555", width=1,
                                   wraplength=wrap, justify="left")
        self.conn_label.pack(fill="x")
        box = tk.LabelFrame(r, text="Groups (top one wins when several talk)", padx=6, pady=4)
        box.pack(fill="x", pady=(6, 6))
        self.groups_frame = box
        self.messages_box = tk.LabelFrame(r, text="Messages", padx=6, pady=4)
        self.messages_box.pack(fill="x", pady=(0, 6))
        self.messages = tk.Listbox(self.messages_box, height=MESSAGE_ROWS, width=1,
                                   activestyle="none", takefocus=0)
        self.messages.pack(side="left", fill="x", expand=True)
        self.messages.bind("<ButtonRelease-1>", lambda e: self.read_messages())
        self.read_button = tk.Button(self.messages_box, text="Read", takefocus=0,
                                     command=self.read_messages)
        self.read_button.pack(side="right", padx=(6, 0))
        self.talk_var = tk.StringVar(r)
        self.talk_var.trace_add("write", lambda *_: self.model.select(self.talk_var.get()))
        self.headline = tk.Label(r, text="", font=(family, 18, "bold"), fg="white",
                                 bg="#34495e", pady=8, width=1, wraplength=wrap)
        self.headline.pack(fill="x")
        self.detail = tk.Label(r, text="", anchor="w", width=1, wraplength=wrap,
                               justify="left")
        self.detail.pack(fill="x")
        self.talk_bar = ttk.Progressbar(r, maximum=1000, mode="determinate")
        self.talk_bar.pack(fill="x", pady=(4, 2))
        self.vu = tk.Canvas(r, height=14, bg="#222", highlightthickness=0)
        self.vu.pack(fill="x", pady=(2, 8))
        self._vu_bar = self.vu.create_rectangle(0, 0, 0, 14, fill="#2ecc71", width=0)
        self.ptt_button = tk.Label(r, text="HOLD TO TALK\n(mouse or space bar)",
                                   font=(family, 20, "bold"), width=1, height=4,
                                   relief="raised", bd=4, bg="#d5dbdb", cursor="hand2")
        self.ptt_button.pack(fill="both", expand=True)
        self.ptt_button.bind("<ButtonPress-1>", lambda e: self._press(Input.MOUSE))
        self.ptt_button.bind("<ButtonRelease-1>", lambda e: self._release(Input.MOUSE))
        r.bind("<KeyPress-space>", lambda e: self._press(Input.KEY))
        r.bind("<KeyRelease-space>", lambda e: self._release(Input.KEY))
        r.bind("<FocusOut>", self._focus_out)
        bottom = tk.Frame(r)
        bottom.pack(fill="x", pady=(8, 0))
        self.emergency_button = tk.Button(bottom, text="EMERGENCY", fg="white", bg="#c0392b",
                                          activebackground="#e74c3c", takefocus=0,
                                          command=self.ask_emergency)
        self.emergency_button.pack(side="left")
        self.settings_button = tk.Button(bottom, text="Settings…", takefocus=0,
                                         command=self.open_settings)
        self.settings_button.pack(side="right")

    def _rebuild_groups(self) -> None:
        for w in self.groups_frame.winfo_children():
            w.destroy()
        self._rows.clear()
        for i, name in enumerate(self.model.order):
            row = self.model.groups[name]
            sel = tk.Radiobutton(self.groups_frame, text=self.model.label(name), value=name,
                                 variable=self.talk_var, takefocus=0, anchor="w", width=14)
            sel.grid(row=i, column=0, sticky="w")
            online = tk.Label(self.groups_frame, text=row.online_text(), anchor="w", fg="#555",
                              width=1, wraplength=WIDTH_PX - 260, justify="left")
            online.grid(row=i, column=1, sticky="we", padx=6)
            muted = tk.BooleanVar(self.groups_frame, value=row.muted)

            def on_mute(n: str = name, v: tk.BooleanVar = muted) -> None:
                self.set_muted(n, v.get())

            mute = tk.Checkbutton(self.groups_frame, text="mute", variable=muted, takefocus=0,
                                  command=on_mute)
            mute.grid(row=i, column=2)
            up = tk.Button(self.groups_frame, text="▲", takefocus=0, padx=2, pady=0,
                           command=partial(self.raise_priority, name),
                           state="normal" if i else "disabled")
            up.grid(row=i, column=3)
            self._rows[name] = {"select": sel, "online": online, "mute": mute, "up": up}
            setattr(mute, "var", muted)  # keep the variable alive with its widget
        self.groups_frame.columnconfigure(1, weight=1)
        self._row_order = self.model.order
        if self.model.talk_group is not None and self.talk_var.get() != self.model.talk_group:
            self.talk_var.set(self.model.talk_group)

    # --- input ----------------------------------------------------------------------------------

    def _press(self, which: Input) -> None:
        if not self.model.connected:
            return  # greyed: nothing to key while offline
        self._edges(self.hold.press(which, time.monotonic()))
        if which is Input.MOUSE:
            self.ptt_button.configure(relief="sunken")

    def _release(self, which: Input) -> None:
        self._edges(self.hold.release(which, time.monotonic()))
        if which is Input.MOUSE:
            self.ptt_button.configure(relief="raised")
        self._arm_hold_poll()

    def _arm_hold_poll(self) -> None:
        due = self.hold.deadline()
        if due is None:
            return
        if self._hold_job is not None:
            self.root.after_cancel(self._hold_job)
        ms = max(1, int((due - time.monotonic()) * 1000) + 1)
        self._hold_job = self.root.after(ms, self._hold_poll)

    def _hold_poll(self) -> None:
        self._hold_job = None
        self._edges(self.hold.poll(time.monotonic()))
        self._arm_hold_poll()

    def _focus_out(self, event: tk.Event) -> None:
        if event.widget is self.root:  # a key released elsewhere would never reach us
            self._edges(self.hold.reset())

    def _edges(self, edges: list[Edge]) -> None:
        for edge in edges:
            target = self.model.talk_target(time.monotonic())
            if edge is Edge.DOWN and target is not None:
                self.engine.ptt_down(target)
            elif edge is Edge.UP:
                self.engine.ptt_up()
        if edges:
            self._render()

    # --- actions --------------------------------------------------------------------------------

    def ask_emergency(self) -> None:
        """Emergency button: ask first (an emergency call interrupts the group), or end one."""
        group = self.model.talk_group
        if self.emergency_active:
            self.emergency_active = False
            self.engine.end_emergency()
            self.emergency_button.configure(text="EMERGENCY")
            return
        if group is None or self.confirm is not None:
            return
        self.confirm = ConfirmDialog(
            self.root, "Emergency call",
            f"Send an EMERGENCY call to '{group}'?\nIt interrupts whoever is talking and "
            f"keeps your microphone open until you end it.",
            yes="Send emergency", on_answer=lambda ok: self._emergency_answer(group, ok))

    def _emergency_answer(self, group: str, ok: bool) -> None:
        self.confirm = None
        if ok:
            self.emergency_active = True
            self.emergency_button.configure(text="END EMERGENCY")
            self.engine.emergency(group)

    def read_messages(self) -> None:
        """The person looked at the message list: its pages are read (receipts go out)."""
        read = self.model.mark_read()
        if read:
            self.engine.read_pages(read)
            self._render()

    def set_muted(self, group: str, muted: bool) -> None:
        self.model.set_muted(group, muted)
        self.engine.set_muted(group, muted)
        self._render()

    def raise_priority(self, group: str) -> None:
        self.model.raise_priority(group)
        self.engine.set_order(self.model.order)
        self._render()

    def open_settings(self) -> None:
        if self.settings is None or not self.settings.top.winfo_exists():
            self.settings = SettingsDialog(self.root, self.config_path, self._settings_saved)

    def _settings_saved(self, config: ClientConfig) -> None:
        """New settings take effect at once: a new engine logs in with them."""
        self.engine.stop()
        self.config = config
        self.model = DesktopModel(config.user or "")
        self.root.title(f"{TITLE}: {config.user or 'not logged in'}")
        self.engine = Engine(config, self.audio, config_path=self.config_path)
        self.engine.start()
        self._rebuild_groups()
        self._render()

    def close(self) -> None:
        self.probe.stop()
        for job in self._jobs:
            self.root.after_cancel(job)
        self._jobs.clear()
        self.engine.stop()
        self.root.destroy()

    # --- drawing --------------------------------------------------------------------------------

    def _poll(self) -> None:
        now = time.monotonic()
        n = 0
        try:
            while n < MAX_EVENTS_PER_POLL:
                self.model.apply(self.engine.events.get_nowait(), now)
                n += 1
        except queue.Empty:
            pass
        if n:
            self._render()
        self._jobs[0] = self.root.after(POLL_MS, self._poll)

    def _tick(self) -> None:
        self._render()
        self._jobs[1] = self.root.after(RENDER_MS, self._tick)

    def _set(self, key: str, widget: tk.Widget, **opts: object) -> None:
        # reconfigure only on change: each configure is a Tcl round trip and a redraw
        if self._shown.get(key) != opts:
            self._shown[key] = opts
            widget.configure(**opts)  # type: ignore[call-arg]

    def view(self) -> View:
        return self.model.view(time.monotonic())

    def _render_messages(self) -> None:
        m = self.model
        unread = {p.page_id for p in m.unread}
        shown = [(p.page_id, p.page_id in unread) for p in m.messages]
        if self._shown.get("messages") != shown:
            self._shown["messages"] = shown
            self.messages.delete(0, "end")
            for i, p in enumerate(m.messages):
                self.messages.insert("end", p.entry())
                if p.page_id in unread:
                    self.messages.itemconfigure(i, bg=URGENT_BG if p.urgent else UNREAD_BG,
                                                fg="white" if p.urgent else "black")
        self._set("messages_title", self.messages_box, text=m.messages_title,
                  fg="#c0392b" if any(p.urgent for p in m.unread) else "black")
        self._set("read", self.read_button, state="normal" if m.unread else "disabled")

    def _render(self) -> None:
        v = self.view()
        if self.model.order != self._row_order:
            self._rebuild_groups()
        online = self.model.connected
        for name, row in self.model.groups.items():
            w = self._rows.get(name)
            if w is not None:
                talker = f"  ({row.talker} talking)" if row.talker and online else ""
                self._set(f"online:{name}", w["online"], text=row.online_text(online) + talker,
                          fg="#555" if online else OFFLINE_FG)
        self._set("conn", self.conn_label, text=v.connection)
        self._render_messages()
        self._set("headline", self.headline, text=v.headline, bg=v.colour)
        self._set("detail", self.detail, text=v.detail)
        talking = v.state is TalkState.TALKING
        if not online:
            self._set("button", self.ptt_button, bg=OFFLINE_BG, fg=OFFLINE_FG, cursor="",
                      text="OFFLINE\nwaiting for the server")
        else:
            self._set("button", self.ptt_button, fg="black", cursor="hand2", bg="#58d68d"
                      if talking else ("#f5cba7" if v.state in (TalkState.REQUESTING,
                                                                TalkState.QUEUED)
                                       else "#d5dbdb"),
                      text="TALKING…\nrelease to stop" if talking
                      else "HOLD TO TALK\n(mouse or space bar)")
        self._set("emergency", self.emergency_button,
                  state="normal" if online else "disabled")
        frac = v.remaining_fraction
        self._set("bar", self.talk_bar, value=0 if frac is None else round(frac * 1000))
        width = self.vu.winfo_width()
        db = v.level_dbfs if v.level_dbfs > SILENCE_DBFS else VU_FLOOR_DBFS
        fill = max(0.0, min(1.0, (db - VU_FLOOR_DBFS) / -VU_FLOOR_DBFS))
        colour = "#e74c3c" if db > -6 else ("#f1c40f" if db > -18 else "#2ecc71")
        self.vu.coords(self._vu_bar, 0, 0, int(width * fill), 14)
        self.vu.itemconfigure(self._vu_bar, fill=colour)
