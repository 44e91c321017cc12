"""ptt.wire is the only owner of the voice header: nothing else reads its bytes by offset.

The rule the scan enforces, for every module of ptt outside ptt/wire:

* a *voice datagram* is a name that a function passes to, or gets back from, a function of
  ``ptt.wire.voice`` or ``ptt.crypto.voice``; indexing or slicing one at a constant offset (``data[16:18]``, ``data[SEQ_AT]``), or
  handing it to ``int.from_bytes``/``unpack_from``, reads the header by hand. Index 0 is
  allowed: the first byte tells every kind of datagram apart (voice, sealed, keepalive,
  msgpack), so dispatching on it is not reading the voice header;
* a byte at a constant offset tested against a ``VoiceFlags`` member (or a constant made from
  one) reads the flags by hand, whatever the variable is called;
* an index named like an offset (``..._AT``, this code base's convention) is an offset;
* in a module that uses the voice modules at all, ``int.from_bytes`` of a constant slice or an
  ``unpack_from`` at a constant offset is a field read by hand, whatever the variable;
* the offsets and the header struct of ``ptt.wire.voice`` are imported by no one else, and no one
  defines a struct with the header's format.

The fuzzer (ptt/faults/fuzz.py) is the one exception: it forges malformed headers on purpose, so
it packs with the owners' header structs itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ptt
import ptt.wire
from tests.protocol.test_purity import imported_modules

PTT_DIR = Path(ptt.__file__).parent
WIRE_DIR = Path(ptt.wire.__file__).parent
FORGER = PTT_DIR / "faults" / "fuzz.py"
WIRE_VOICE = "ptt.wire.voice"
VOICE_MODULES = {WIRE_VOICE, "ptt.crypto.voice"}
LAYOUT_NAMES = {"HEADER", "FLAGS_AT", "KEY_ID_AT", "GROUP_AT", "SEQ_AT"}
HEADER_FORMATS = {"!BBBxIIIHI", "!BBBBIIIHI", ">BBBxIIIHI", ">BBBBIIIHI"}


def _const_int(node: ast.AST | None) -> bool:
    """An offset known without running the code: a literal, an upper-case name, or arithmetic
    of those."""
    if node is None:
        return True
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int)
    if isinstance(node, ast.Name):
        return node.id.lstrip("_").isupper()
    if isinstance(node, ast.UnaryOp):
        return _const_int(node.operand)
    if isinstance(node, ast.BinOp):
        return _const_int(node.left) and _const_int(node.right)
    return False


def _named_offset(sub: ast.Subscript) -> bool:
    return any(isinstance(n, ast.Name) and n.id.endswith("_AT") for n in ast.walk(sub.slice))


def _constant_offset(sub: ast.Subscript) -> bool:
    s = sub.slice
    if isinstance(s, ast.Slice):
        return _const_int(s.lower) and _const_int(s.upper) and (s.lower or s.upper) is not None
    if isinstance(s, ast.Constant) and s.value == 0:
        return False  # the kind byte
    return isinstance(s, ast.Constant | ast.Name | ast.BinOp | ast.UnaryOp) and _const_int(s)


def _wire_voice_callables(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(names bound to functions of the voice modules, aliases of those modules)."""
    names: set[str] = set()
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in VOICE_MODULES:
            names.update(a.asname or a.name for a in node.names if a.name[0].islower())
        elif isinstance(node, ast.ImportFrom) and node.module in ("ptt.wire", "ptt.crypto"):
            modules.update(a.asname or a.name for a in node.names if a.name == "voice")
        elif isinstance(node, ast.Import):
            modules.update(a.asname for a in node.names if a.name in VOICE_MODULES and a.asname)
    return names, modules


def _is_wire_call(node: ast.AST, names: set[str], modules: set[str]) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Name) and f.id in names) or (
        isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in modules)


def _mentions_voice_flags(node: ast.AST, flag_names: set[str]) -> bool:
    return any((isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                and n.value.id == "VoiceFlags") or (isinstance(n, ast.Name) and n.id in flag_names)
               for n in ast.walk(node))


def violations(source: str, filename: str = "<module>") -> list[str]:
    """Every place in ``source`` that reads the voice header by hand (see the module docstring)."""
    tree = ast.parse(source, filename=filename)
    names, modules = _wire_voice_callables(tree)
    flag_names = {t.id for n in tree.body if isinstance(n, ast.Assign)
                  and _mentions_voice_flags(n.value, set())
                  for t in n.targets if isinstance(t, ast.Name)}
    uses_voice = bool(names or modules)
    found: list[str] = []

    def where(node: ast.AST) -> str:
        return f"{filename}:{getattr(node, 'lineno', 0)}"

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in (WIRE_VOICE, "ptt.wire"):
            for a in node.names:
                if a.name in LAYOUT_NAMES:
                    found.append(f"{where(node)}: imports the header layout ({a.name})")
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and node.args[0].value in HEADER_FORMATS):
            found.append(f"{where(node)}: defines a struct with the voice header's format")
        elif (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd)
              and any(isinstance(side, ast.Subscript) and _constant_offset(side)
                      for side in (node.left, node.right))
              and _mentions_voice_flags(node, flag_names)):
            found.append(f"{where(node)}: reads the voice flags byte by offset")
        elif isinstance(node, ast.Subscript) and _named_offset(node):
            found.append(f"{where(node)}: indexes by a named offset")
        elif (uses_voice and isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and ((node.func.attr == "from_bytes" and node.args
                    and isinstance(node.args[0], ast.Subscript)
                    and _constant_offset(node.args[0]))
                   or (node.func.attr == "unpack_from" and len(node.args) > 1
                       and _const_int(node.args[1])))):
            found.append(f"{where(node)}: reads a field at a constant offset")

    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        voice: set[str] = set()
        for node in ast.walk(fn):
            if _is_wire_call(node, names, modules):
                assert isinstance(node, ast.Call)
                voice.update(a.id for a in node.args if isinstance(a, ast.Name))
            if isinstance(node, ast.Assign) and _is_wire_call(node.value, names, modules):
                for t in node.targets:
                    voice.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        if not voice:
            continue
        for node in ast.walk(fn):
            if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                    and node.value.id in voice and _constant_offset(node)):
                found.append(f"{where(node)}: slices voice datagram '{node.value.id}' by offset")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in ("from_bytes", "unpack_from", "unpack")
                  and any((isinstance(a, ast.Name) and a.id in voice)
                          or (isinstance(a, ast.Subscript) and isinstance(a.value, ast.Name)
                              and a.value.id in voice) for a in node.args)):
                found.append(f"{where(node)}: decodes voice datagram bytes by hand")
    return sorted(set(found))


def test_no_module_outside_wire_reads_the_voice_header_by_offset() -> None:
    files = [f for f in sorted(PTT_DIR.rglob("*.py"))
             if WIRE_DIR not in f.parents and f != FORGER]
    assert len(files) > 100
    found = [v for f in files for v in violations(f.read_text(), str(f.relative_to(PTT_DIR)))]
    assert found == []


def test_the_forger_packs_with_the_owners_struct() -> None:
    text = FORGER.read_text()
    assert "from ptt.wire.voice import HEADER" in text
    assert "from ptt.crypto.channel import HEADER" in text  # the sealed header's owner
    assert not any(fmt in text for fmt in HEADER_FORMATS) and "struct.Struct(" not in text


def test_the_scan_catches_hand_slicing() -> None:
    bad = '''
from ptt.wire.voice import peek_route, add_mac, open_mac, VoiceFlags
from ptt.wire.voice import SEQ_AT
import struct
_SEQ = 16
HEAD = struct.Struct("!BBBxIIIHI")

def relay(data):
    group, sender, burst = peek_route(data)
    seq = int.from_bytes(data[_SEQ:_SEQ + 2], "big")
    return data[SEQ_AT]

def send(datagram, key):
    datagram = add_mac(key, datagram)
    return datagram[4:8]

def echo(key, data):
    clear = open_mac(key, data)
    return clear[2]

def flags(data):
    return len(data) > 2 and not data[2] & VoiceFlags.PROBE

def tap(frame):
    return int.from_bytes(frame[4:8], "big")
'''
    found = violations(bad)
    assert len(found) == 11, found
    assert "<module>:25: reads a field at a constant offset" in found  # tap()
    assert any("imports the header layout (SEQ_AT)" in v for v in found)
    assert any("voice header's format" in v for v in found)
    assert any("decodes voice datagram bytes by hand" in v for v in found)
    assert any("'datagram' by offset" in v for v in found)
    assert any("'clear' by offset" in v for v in found)
    assert any("flags byte" in v for v in found)
    assert any("named offset" in v for v in found)


def test_the_scan_leaves_other_indexing_alone() -> None:
    fine = '''
from ptt.wire.voice import is_voice, peek_seq

def dispatch(data, addr, parts):
    if is_voice(data) and data[0] == 0x56:
        return addr[0], parts[1:], peek_seq(data)
    return data[0]
'''
    assert violations(fine) == []


def test_crypto_never_imports_protocol_and_wire_imports_only_errors() -> None:
    crypto = Path(ptt.__file__).parent / "crypto"
    for f in sorted(crypto.glob("*.py")):
        assert not any(m.startswith("ptt.protocol") for m in _full_imports(f)), f
    for f in sorted(WIRE_DIR.glob("*.py")):
        assert {m for m in _full_imports(f) if m.startswith("ptt")} <= {"ptt.errors"}, f
    assert imported_modules(WIRE_DIR / "voice.py") <= {"__future__", "hashlib", "hmac", "struct",
                                                       "dataclasses", "enum", "ptt"}


def _full_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            if node.module == "ptt":  # from ptt import protocol
                out.update(f"ptt.{a.name}" for a in node.names)
    return out
