"""The real window under Xvfb against a real server: hold to talk, auto-repeat, queue, emergency,
settings, a screenshot, and the window's event-loop latency under audio load."""

from __future__ import annotations

import stat
import tkinter as tk
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptt.audio.streams import NullSink, PacedSink, ToneSource
from ptt.config import ClientConfig, load_client_config
from ptt.desktop.engine import AudioFactory
from ptt.desktop.model import TalkState
from ptt.desktop.window import DesktopWindow
from tests.desktop.conftest import ARTIFACTS, Peer, group_show, point_at, pump, screenshot, xdo
from tests.e2e.serverproc import ServerProcess
from tests.e2e.test_floor_over_udp import talk

TONE_AUDIO = AudioFactory(source=lambda: ToneSource(440.0, -12.0, realtime=True),
                          sink=lambda: PacedSink(NullSink()))


def _config(server: ServerProcess, token: str) -> ClientConfig:
    return ClientConfig(server=f"127.0.0.1:{server.port}", user="ann", token=token)


def _open(config: ClientConfig, audio: AudioFactory = TONE_AUDIO,
          config_path: Path | None = None) -> DesktopWindow:
    root = tk.Tk()
    root.geometry("+0+0")
    win = DesktopWindow(root, config, audio=audio, config_path=config_path)
    ready = pump(root, 10, lambda: all(r.joined for r in win.model.groups.values())
                 and len(win.model.groups) == 2 and win.view().state is TalkState.IDLE)
    assert ready, f"window never got ready: {win.view()}"
    win._rows["volunteers"]["select"].invoke()  # type: ignore[attr-defined]
    assert win.model.talk_group == "volunteers"
    root.focus_force()
    pump(root, 0.2)
    return win


@pytest.fixture
def win(display: str, server: ServerProcess, tokens: dict[str, str]) -> Iterator[DesktopWindow]:
    w = _open(_config(server, tokens["ann"]))
    yield w
    if w.root.winfo_exists():
        w.close()


def _centre(widget: tk.Widget) -> tuple[str, str]:
    return (str(widget.winfo_rootx() + widget.winfo_width() // 2),
            str(widget.winfo_rooty() + widget.winfo_height() // 2))


def test_mouse_hold_has_the_floor_while_held_and_releases_it_on_release(
        win: DesktopWindow, bob: Peer, server: ServerProcess) -> None:
    root = win.root
    x, y = _centre(win.ptt_button)
    point_at(x, y)
    xdo("mousedown", "1")
    assert pump(root, 5, lambda: bob.talker("volunteers") == "ann"), (
        f"floor never granted: {win.view()} edges={win.hold.edges_down} at {x},{y} "
        f"{win.root.winfo_pointerxy()}")
    assert pump(root, 2, lambda: win.view().state is TalkState.TALKING)
    pump(root, 1.0)  # still held a second later: still the talker, voice flowing
    shown = group_show(server, "volunteers")
    assert shown["talker"] == "ann"
    assert bob.talker("volunteers") == "ann" and bob.voice > 20
    xdo("mouseup", "1")
    assert pump(root, 3, lambda: bob.talker("volunteers") is None), "floor not released"
    assert group_show(server, "volunteers")["talker"] is None
    assert pump(root, 2, lambda: win.view().state is TalkState.IDLE)
    assert win.engine.bursts == 1
    assert [t for t, _ in bob.talkers("volunteers")] == ["ann", None]


def test_space_bar_held_through_x11_autorepeat_is_one_burst(win: DesktopWindow,
                                                           bob: Peer) -> None:
    root = win.root
    seen: list[str] = []
    root.bind("<KeyPress-space>", lambda e: seen.append("P"), add="+")
    root.bind("<KeyRelease-space>", lambda e: seen.append("R"), add="+")
    xdo("keydown", "space")
    assert pump(root, 5, lambda: bob.talker("volunteers") == "ann")
    pump(root, 1.5)  # past X11's 660 ms repeat delay: repeat pairs at 25 per second
    xdo("keyup", "space")
    assert pump(root, 3, lambda: bob.talker("volunteers") is None)
    pump(root, 0.5)
    repeats = seen.count("R") - 1
    assert repeats >= 10, f"the X server sent no auto-repeat ({seen})"
    bursts = {b for t, b in bob.talkers("volunteers") if t == "ann"}
    assert len(bursts) == 1, f"{repeats} auto-repeats made {len(bursts)} bursts"
    assert win.engine.bursts == 1 and win.hold.edges_down == 1
    print(f"\nspace held 2.2 s: {repeats} auto-repeat release/press pairs -> 1 burst")


def test_synthesized_repeat_pairs_do_not_toggle(win: DesktopWindow, bob: Peer) -> None:
    root = win.root
    root.event_generate("<KeyPress-space>", when="now")
    for _ in range(30):  # 1.2 s of pairs, 40 ms apart, as X11 sends them
        pump(root, 0.04)
        root.event_generate("<KeyRelease-space>", when="now")
        root.event_generate("<KeyPress-space>", when="now")
    assert bob.talker("volunteers") == "ann"
    root.event_generate("<KeyRelease-space>", when="now")
    assert pump(root, 3, lambda: bob.talker("volunteers") is None)
    assert len({b for t, b in bob.talkers("volunteers") if t == "ann"}) == 1
    assert win.hold.edges_down == 1


def test_queued_while_another_member_talks_then_talking(win: DesktopWindow, bob: Peer) -> None:
    root = win.root
    assert bob.run(bob.conn.request_floor("volunteers")).state.value == "talking"
    bob_talks = bob.spawn(talk(bob.conn, "volunteers", 2.5))
    assert pump(root, 3, lambda: win.view().state is TalkState.LISTENING)
    assert win.view().headline == "bob is talking"
    win.ptt_button.event_generate("<ButtonPress-1>")
    assert pump(root, 3, lambda: win.view().state is TalkState.QUEUED), win.view()
    assert win.view().headline == "Queued #1"
    assert win.headline.cget("text") == "Queued #1"  # what is drawn, not only the model
    bob_talks.result(5)
    bob.run(bob.conn.release_floor("volunteers"))
    assert pump(root, 4, lambda: win.view().state is TalkState.TALKING), win.view()
    assert pump(root, 3, lambda: bob.talker("volunteers") == "ann")
    pump(root, 0.6)  # the talk-time bar and the VU meter have moved
    assert 0.9 < (win.view().remaining_fraction or 0) < 1.0
    assert win.view().level_dbfs > -20  # the -12 dBFS tone reads about -15 dBFS RMS
    shot = screenshot(root, ARTIFACTS / "desktop-talking.png")
    assert shot.stat().st_size > 2000 and shot.read_bytes()[:4] == b"\x89PNG"
    win.ptt_button.event_generate("<ButtonRelease-1>")
    assert pump(root, 3, lambda: bob.talker("volunteers") is None)


def test_emergency_asks_first_then_preempts(win: DesktopWindow, bob: Peer) -> None:
    root = win.root
    assert bob.run(bob.conn.request_floor("volunteers")).state.value == "talking"
    bob_talks = bob.spawn(talk(bob.conn, "volunteers", 6))
    win.emergency_button.invoke()
    assert win.confirm is not None and win.confirm.top.winfo_ismapped() in (0, 1)
    win.confirm.no_button.invoke()
    pump(root, 0.7)
    assert win.confirm is None and bob.talker("volunteers") == "bob"  # nothing was sent
    win.emergency_button.invoke()
    assert win.confirm is not None
    win.confirm.yes_button.invoke()
    assert pump(root, 3, lambda: bob.talker("volunteers") == "ann"), "emergency not granted"
    assert win.emergency_button.cget("text") == "END EMERGENCY"
    xdo("keydown", "space")  # the push-to-talk button does not end a latched emergency
    pump(root, 0.1)
    xdo("keyup", "space")
    pump(root, 0.4)
    assert bob.talker("volunteers") == "ann"
    win.emergency_button.invoke()
    assert pump(root, 3, lambda: bob.talker("volunteers") is None)
    bob_talks.cancel()


def test_mute_and_priority_buttons_reach_model_and_mixer(win: DesktopWindow) -> None:
    assert sorted(win.model.order) == ["drivers", "volunteers"]
    if win.model.order[0] == "drivers":
        win._rows["volunteers"]["up"].invoke()  # type: ignore[attr-defined]
        pump(win.root, 0.1)
    assert win.model.order == ["volunteers", "drivers"]
    win._rows["drivers"]["up"].invoke()  # type: ignore[attr-defined]
    pump(win.root, 0.1)
    assert win.model.order == ["drivers", "volunteers"]
    win._rows["drivers"]["mute"].invoke()  # type: ignore[attr-defined]
    pump(win.root, 0.1)
    assert win.model.groups["drivers"].muted
    assert list(win.engine.mixer._channels)[:2] == ["drivers", "volunteers"]
    assert win.engine.mixer._channels["drivers"].muted


def test_settings_dialog_saves_the_cli_config_file(display: str, tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    root = tk.Tk()
    try:
        win = DesktopWindow(root, ClientConfig(), config_path=path, audio=TONE_AUDIO)
        pump(root, 0.3)
        assert win.view().state is TalkState.OFFLINE  # no user yet: says so, does not hang
        win.open_settings()
        dlg = win.settings
        assert dlg is not None
        dlg.vars["server"].set("not a server::")
        assert dlg.save() is None and "server" in dlg.error.cget("text")
        dlg.vars["server"].set("127.0.0.1:7799")
        dlg.vars["user"].set("Ann")
        dlg.vars["token"].set("x" * 43)
        dlg.vars["output_device"].set("pulse")
        saved = dlg.save()
        assert saved is not None
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        back = load_client_config(path, env={})
        assert (back.server, back.user, back.output_device, back.input_device) == (
            "127.0.0.1:7799", "ann", "pulse", None)
        assert win.config == saved and win.engine.config == saved
    finally:
        if root.winfo_exists():
            win.close()


def test_event_loop_latency_under_audio_load(display: str, server: ServerProcess,
                                            tokens: dict[str, str], bob: Peer,
                                            pulse_server: object) -> None:
    """Talking from the (PulseAudio) microphone while hearing bob in another group on the
    (PulseAudio) speaker: Tk's after() callbacks stay on time."""
    from ptt.audio.devices import CaptureSource, PlaybackSink
    from ptt.client.voice import Talker

    audio = AudioFactory(source=lambda: CaptureSource(None), sink=lambda: PlaybackSink(None))
    win = _open(_config(server, tokens["ann"]), audio)
    root = win.root
    try:
        assert bob.run(bob.conn.request_floor("drivers")).state.value == "talking"
        bob_talks = bob.spawn(Talker(bob.conn, "drivers").send(
            ToneSource(660.0, -10.0, frames=300, realtime=True)))
        assert pump(root, 3, lambda: win.engine.mixer.stats("drivers")[0] > 10)
        win.ptt_button.event_generate("<ButtonPress-1>")
        assert pump(root, 5, lambda: win.view().state is TalkState.TALKING)
        win.probe.start()
        root.after(4000, root.quit)
        root.mainloop()  # Tk's own loop, as in `ptt desktop`, not the test's update() pump
        win.probe.stop()
        heard = win.engine.mixer.stats("drivers")[0]
        n = len(win.probe.samples)
        p50, p99 = win.probe.percentile(50) * 1000, win.probe.percentile(99) * 1000
        worst = max(win.probe.samples) * 1000
        print(f"\nTk event-loop latency under audio load: n={n} p50={p50:.1f} ms "
              f"p99={p99:.1f} ms max={worst:.1f} ms (frames heard from drivers: {heard})")
        assert n > 100
        assert heard > 150  # bob's audio really played while ann talked
        assert bob.talker("volunteers") == "ann"
        assert p99 < 50.0
        win.ptt_button.event_generate("<ButtonRelease-1>")
        assert pump(root, 3, lambda: bob.talker("volunteers") is None)
        bob_talks.result(10)
    finally:
        win.close()
