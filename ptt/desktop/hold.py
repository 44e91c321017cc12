"""The push-to-talk "hold": mouse and space bar as one button, with X11 auto-repeat filtered out.

While a key is held, X11 auto-repeat delivers ``KeyRelease``/``KeyPress`` pairs (about every
40 ms after a 660 ms delay; the two events of a pair carry the same timestamp). A release is
therefore only *tentative*: it becomes real when no press follows within :data:`DEBOUNCE_S`.
Sans-I/O like the protocol cores: the caller passes ``now`` and calls :meth:`PushToTalk.poll`
at :meth:`PushToTalk.deadline` (the Tk layer arms one ``after()`` for it)::

    ptt = PushToTalk()
    ptt.press(Input.KEY, now)        # -> [Edge.DOWN] the first time
    ptt.release(Input.KEY, now)      # -> [] (tentative)
    ptt.press(Input.KEY, now)        # -> [] (auto-repeat: the hold goes on)
    ptt.poll(later)                  # -> [Edge.UP] once a release stood for DEBOUNCE_S
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

__all__ = ["DEBOUNCE_S", "Edge", "Input", "PushToTalk"]

# Longer than the 40 ms auto-repeat period's jitter (repeat pairs arrive together), short enough
# that letting go feels immediate; the issue asks for 40-60 ms.
DEBOUNCE_S = 0.05


class Input(Enum):
    """What can hold the button; either one keeps it down."""

    MOUSE = "mouse"
    KEY = "key"


class Edge(Enum):
    """A change of the combined button: start talking (DOWN) or stop (UP)."""

    DOWN = "down"
    UP = "up"


@dataclass
class PushToTalk:
    """Combines the inputs into one button; every returned Edge is a real change."""

    window: float = DEBOUNCE_S
    _held: set[Input] = field(default_factory=set)
    _release_at: float | None = None  # the key's tentative release, if one is pending
    edges_down: int = 0  # how many holds started (a held key counts once)

    @property
    def down(self) -> bool:
        return bool(self._held)

    def press(self, which: Input, now: float) -> list[Edge]:
        out: list[Edge] = []
        if which is Input.KEY and self._release_at is not None:
            if now < self._release_at + self.window:
                self._release_at = None  # auto-repeat: the key never went up
                return out
            out += self._confirm_release()  # poll was late: the key really went up
        was_down = self.down
        self._held.add(which)
        if not was_down:
            self.edges_down += 1
            out.append(Edge.DOWN)
        return out

    def release(self, which: Input, now: float) -> list[Edge]:
        if which is Input.KEY:
            if Input.KEY in self._held:
                self._release_at = now
            return []
        if which not in self._held:
            return []
        self._held.discard(which)
        return [] if self.down else [Edge.UP]

    def deadline(self) -> float | None:
        """When :meth:`poll` must run next (None: nothing pending)."""
        return None if self._release_at is None else self._release_at + self.window

    def poll(self, now: float) -> list[Edge]:
        if self._release_at is None or now < self._release_at + self.window:
            return []
        return self._confirm_release()

    def reset(self) -> list[Edge]:
        """Let go of everything (focus lost, window closed)."""
        was_down = self.down
        self._held.clear()
        self._release_at = None
        return [Edge.UP] if was_down else []

    def _confirm_release(self) -> list[Edge]:
        self._release_at = None
        if Input.KEY not in self._held:
            return []
        self._held.discard(Input.KEY)
        return [] if self.down else [Edge.UP]
