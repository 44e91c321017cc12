"""ptt/crypto is sans-I/O like ptt/protocol, so the protocol cores can use it."""

from __future__ import annotations

from pathlib import Path

import ptt.crypto
from tests.protocol.test_purity import FORBIDDEN, imported_modules

CRYPTO_DIR = Path(ptt.crypto.__file__).parent


def test_crypto_package_imports_no_io_clock_or_randomness() -> None:
    files = sorted(CRYPTO_DIR.glob("*.py"))
    assert {f.name for f in files} >= {"channel.py", "voice.py", "groupkeys.py"}
    offenders = {f.name: sorted(imported_modules(f) & (FORBIDDEN | {"secrets"})) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_module_draws_randomness_behind_the_callers_back() -> None:
    # generate() would draw from OpenSSL's RNG: keys come from caller entropy (from_private_bytes)
    for f in CRYPTO_DIR.glob("*.py"):
        text = f.read_text()
        assert "generate(" not in text and "urandom(" not in text.replace("os.urandom(64)", ""), f
