"""One per-group playout channel: every listener of ptt plays a group through
:class:`ptt.media.playout.PlayoutChannel`, and no other module builds a group's receiver."""

from __future__ import annotations

import ast
from pathlib import Path

import ptt
from ptt.client.monitor import MonitorMixer
from ptt.desktop.mixer import GroupMixer
from ptt.media.playout import PlayoutChannel

PACKAGE = Path(ptt.__file__).parent
# a group's jitter buffer + decoder and its loss-report clock: built only by the channel
CHANNEL_PARTS = {"BurstReceiver", "ReceptionReports"}
OWNERS = {"media/playout.py", "media/receiver.py"}  # the channel, and where the parts are defined
LISTENERS = {"client/voice.py": "Listener", "client/monitor.py": "MonitorMixer",
             "desktop/mixer.py": "GroupMixer"}


def _called_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                names.add(f.id)
            elif isinstance(f, ast.Attribute):
                names.add(f.attr)
    return names


def test_no_module_but_the_channel_builds_a_groups_receiver() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in OWNERS:
            continue
        built = _called_names(ast.parse(path.read_text(), rel)) & CHANNEL_PARTS
        if built:
            offenders.append(f"{rel}: {', '.join(sorted(built))}")
    assert offenders == [], offenders


def test_voice_frames_are_opened_only_through_the_frame_opener() -> None:
    """Who opens a received frame hands ``VoiceKeys.open_voice`` to a FrameOpener, which counts
    why a frame is dropped; nobody calls it and sorts out the refusals again."""
    callers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "client/keys.py":  # where it is defined
            continue
        if "open_voice" in _called_names(ast.parse(path.read_text(), rel)):
            callers.append(rel)
    assert callers == [], callers
    users = [rel for rel in ("client/voice.py", "client/monitor.py", "client/recorder.py",
                             "desktop/mixer.py")
             if "FrameOpener" in _called_names(ast.parse((PACKAGE / rel).read_text()))]
    assert len(users) == 4, users


def test_the_three_listeners_play_through_the_playout_channel() -> None:
    for rel, cls in LISTENERS.items():
        tree = ast.parse((PACKAGE / rel).read_text(), rel)
        (node,) = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls]
        assert "PlayoutChannel" in _called_names(node), f"{rel}:{cls} builds no PlayoutChannel"
    monitor = MonitorMixer(["volunteers", "medics"])
    assert all(type(monitor.channel(n)) is PlayoutChannel for n in monitor.groups)
    desktop = GroupMixer()
    desktop.set_group("drivers", 1)
    assert type(desktop._channels["drivers"].channel) is PlayoutChannel
