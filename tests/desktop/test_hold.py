"""The push-to-talk hold: auto-repeat pairs never toggle, a real release ends the hold."""

from __future__ import annotations

from ptt.desktop.hold import DEBOUNCE_S, Edge, Input, PushToTalk


def test_autorepeat_pairs_keep_one_hold() -> None:
    p = PushToTalk()
    assert p.press(Input.KEY, 0.0) == [Edge.DOWN]
    t = 0.66
    for _ in range(50):  # 2 s of X11 auto-repeat: release and press with the same timestamp
        assert p.release(Input.KEY, t) == []
        assert p.press(Input.KEY, t) == []
        assert p.poll(t + 0.001) == []
        t += 0.04
    assert p.down and p.edges_down == 1
    assert p.release(Input.KEY, t) == []
    assert p.poll(t + DEBOUNCE_S / 2) == []
    assert p.deadline() == t + DEBOUNCE_S
    assert p.poll(t + DEBOUNCE_S) == [Edge.UP]
    assert not p.down and p.deadline() is None


def test_late_poll_still_sees_a_real_release_before_a_new_press() -> None:
    p = PushToTalk()
    p.press(Input.KEY, 0.0)
    p.release(Input.KEY, 1.0)
    # the Tk timer ran late and a new press arrived 200 ms after the release: two holds
    assert p.press(Input.KEY, 1.2) == [Edge.UP, Edge.DOWN]
    assert p.edges_down == 2


def test_mouse_and_key_are_one_button() -> None:
    p = PushToTalk()
    assert p.press(Input.MOUSE, 0.0) == [Edge.DOWN]
    assert p.press(Input.KEY, 0.1) == []
    assert p.release(Input.MOUSE, 0.2) == []  # the key still holds it
    p.release(Input.KEY, 0.3)
    assert p.poll(0.3 + DEBOUNCE_S) == [Edge.UP]
    assert p.press(Input.MOUSE, 1.0) == [Edge.DOWN]
    assert p.release(Input.MOUSE, 1.5) == [Edge.UP]
    assert p.release(Input.MOUSE, 1.6) == []  # a stray release is not a second UP
    assert p.reset() == []
    p.press(Input.KEY, 2.0)
    assert p.reset() == [Edge.UP] and not p.down
