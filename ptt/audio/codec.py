"""Opus codec wrapper: mono, 20 ms frames, VOIP application, in-band FEC on.

Binding: ``opuslib-next`` 1.3.1, the maintained fork of ``opuslib``, chosen after testing both
against libopus 1.3.1. In ``opuslib`` 3.0.1 ``Encoder.inband_fec = 1`` raises TypeError (the setter
drops its value, so FEC can only be switched on through the raw ctl API), ``dtx`` is not a property
at all, and ``str()`` of an encoder error itself raises (the exception is built from a message but
formatted as an error code); its last release is from 2018 and its repository takes no fixes.
``opuslib-next`` keeps the same API under the name ``opuslib_next``, fixes those setters (its issue
#4), gives readable errors, supports current Pythons and still ships releases. Neither accepts
``decode(None)`` (both take ``len()`` of the packet), so :meth:`OpusDecoder.conceal` calls
``opus_decode`` with a NULL packet, libopus's documented loss-concealment call; neither checks that
the PCM given to ``encode`` is as long as the frame size claims (libopus then reads past the
buffer), so this module checks every frame size itself.

Sample rate 16 kHz and default bitrate 28 kbit/s. :data:`DEFAULT_BITRATE` is the one default of
every client (config, CLI, desktop), chosen through the real commands (``ptt talk --wav`` ->
server -> ``ptt listen --out``, encrypted group, held-out espeak-ng speech, bench/
bench_voice_quality.py --bitrate), PESQ-WB English / Mandarin with the talker adapting to its
listeners' reports, and UDP payload from 2 s into the burst on the talker's own leg (what ``ptt
talk`` sends: its 8-byte session MAC makes that leg 3.2 kbit/s dearer than the relay's to a
listener). Clean path: 24 kbit/s 4.13 / 4.22 (too low for the 4.2 target); 28 kbit/s 4.26 / 4.37
at 45.1 / 46.4 kbit/s (Mandarin 4.37 on two seeds, 4.08 on one whose listener concealed a late
frame with nothing lost); 29 kbit/s 4.24 / 4.39 at 45.9 / 47.2; 30 kbit/s 4.30 / 4.40 at 46.9 /
48.2, over the 48 kbit/s a clean path may take; 32 kbit/s 49.5 even on the listener's leg. At 5 %
and 10 % random loss (two copies) 28 kbit/s scored 4.26 / 4.37 and 4.23 / 4.34 (worst seed 4.17),
every target met with 0.06 to spare at the least (English clean); 29 kbit/s scored no better than
28 on English at any of the three and cost 0.8 kbit/s more. Above 28 kbit/s espeak-ng speech
gains little (0.03-0.04 at 30), and every copy a lossy path needs
costs a frame's worth again. Encoding at 24 or 48 kHz scored no better at these bitrates (the
extra band takes bits from 0-8 kHz). In-band FEC is not free in libopus 1.3.1: its LBRR copy is
paid for out of the primary frame's bits, so at 24 kbps clean speech drops from 4.07 (FEC off) to
2.99 with FEC sized for 10 % loss, and libopus emits no FEC at all at 16 kbps; the talker repeats
earlier frames instead (``ptt.media.sender``). Complexity 10: complexity 5 scored 0.3 lower.

Codec calls are short: measured per 20 ms frame here, encode 0.3-0.8 ms at complexity 10, decode,
FEC decode and concealment 0.03-0.05 ms. Calling them on the event loop every 20 ms is harmless;
:class:`CodecWorker` runs them on one dedicated thread for callers that batch many frames or run
many decoders (ctypes releases the GIL during libopus calls, so the loop keeps running).
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self, TypeVar

from ptt.errors import AudioError

SAMPLE_RATE = 16_000
FRAME_MS = 20
FRAME_SECONDS = FRAME_MS / 1000
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 320
FRAME_BYTES = FRAME_SAMPLES * 2  # 640: 16-bit little-endian mono PCM
DEFAULT_BITRATE = 28_000  # bit/s; the one default (ClientConfig.bitrate, ptt talk, desktop)
DEFAULT_COMPLEXITY = 10
DEFAULT_EXPECTED_LOSS = 10

SUPPORTED_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)
MIN_BITRATE = 6_000
MAX_BITRATE = 510_000
MAX_PACKET_BYTES = 1_275  # the largest Opus frame libopus ever emits

_T = TypeVar("_T")
_lib: Any = None


def _opus() -> Any:
    """Import opuslib_next on first use, turning a missing libopus into an AudioError."""
    global _lib
    if _lib is None:
        try:
            import opuslib_next
            import opuslib_next.api.ctl
            import opuslib_next.api.decoder
            import opuslib_next.api.encoder
        except Exception as exc:  # opuslib_next raises a bare Exception when libopus is absent
            raise AudioError(
                f"the Opus codec is not available ({exc}); install libopus0 and opuslib-next"
            ) from exc
        _lib = opuslib_next
    return _lib


def frame_samples(sample_rate: int) -> int:
    """Samples in one 20 ms frame at ``sample_rate``."""
    return sample_rate * FRAME_MS // 1000


def _check_rate(sample_rate: int) -> None:
    if sample_rate not in SUPPORTED_RATES:
        raise AudioError(
            f"Opus does not support {sample_rate} Hz (use one of "
            f"{', '.join(str(r) for r in SUPPORTED_RATES)})"
        )


def packet_has_fec(packet: bytes) -> bool:
    """Whether an Opus packet carries in-band FEC (LBRR) data for the frame before it.

    libopus 1.3.1 has no ``opus_packet_has_lbrr`` (added in 1.5); this is the same test: SILK or
    hybrid mode, and the LBRR flag that follows the VAD flag at the start of the first SILK frame.
    Only single-frame (code 0) mono packets are inspected, which is what :class:`OpusEncoder` emits.
    """
    if len(packet) < 2:
        return False
    toc = packet[0]
    if toc >> 3 >= 16:  # CELT-only configurations carry no LBRR
        return False
    if toc & 0x3 != 0:  # more than one frame per packet: not ours
        return False
    return bool((packet[1] >> 6) & 1)


class OpusEncoder:
    """A mono Opus encoder for 20 ms frames of 16-bit PCM. Not thread-safe: one user at a time."""

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        bitrate: int = DEFAULT_BITRATE,
        fec: bool = True,
        expected_loss: int = DEFAULT_EXPECTED_LOSS,
        complexity: int = DEFAULT_COMPLEXITY,
    ) -> None:
        _check_rate(sample_rate)
        if not 0 <= complexity <= 10:
            raise AudioError(f"Opus complexity must be 0-10, not {complexity}")
        lib = _opus()
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples(sample_rate)
        self.frame_bytes = self.frame_samples * 2
        try:
            self._enc = lib.Encoder(sample_rate, 1, lib.APPLICATION_VOIP)
            self._enc.signal = lib.SIGNAL_VOICE
            self._enc.complexity = complexity
            self._enc.inband_fec = 1 if fec else 0
            self._enc.dtx = 0  # ptt bursts start and end explicitly; DTX gaps would look like loss
        except lib.OpusError as exc:
            raise AudioError(f"cannot create the Opus encoder: {exc}") from exc
        self.set_bitrate(bitrate)
        self.set_expected_loss(expected_loss)
        self._state = self._enc.encoder_state
        self._encode = lib.api.encoder.encode

    # -- settings ---------------------------------------------------------------------------
    def set_bitrate(self, bps: int) -> None:
        """Target bitrate in bits per second (6000-510000); in-band FEC needs >= 24000 at 16 kHz."""
        if not MIN_BITRATE <= bps <= MAX_BITRATE:
            raise AudioError(f"Opus bitrate must be {MIN_BITRATE}-{MAX_BITRATE} bps, not {bps}")
        self._ctl("bitrate", int(bps))

    def set_expected_loss(self, percent: int) -> None:
        """Expected packet loss in percent (0-100); it sizes the in-band FEC data."""
        if not 0 <= percent <= 100:
            raise AudioError(f"expected loss must be 0-100 %, not {percent}")
        self._ctl("packet_loss_perc", int(percent))

    def set_fec(self, on: bool) -> None:
        self._ctl("inband_fec", 1 if on else 0)

    def set_complexity(self, complexity: int) -> None:
        if not 0 <= complexity <= 10:
            raise AudioError(f"Opus complexity must be 0-10, not {complexity}")
        self._ctl("complexity", int(complexity))

    @property
    def bitrate(self) -> int:
        return int(self._enc.bitrate)

    @property
    def expected_loss(self) -> int:
        return int(self._enc.packet_loss_perc)

    @property
    def fec(self) -> bool:
        return bool(self._enc.inband_fec)

    @property
    def complexity(self) -> int:
        return int(self._enc.complexity)

    @property
    def lookahead(self) -> int:
        """Codec delay in samples: decoded audio lags the input by this much (104 at 16 kHz)."""
        return int(self._enc.lookahead)

    def _ctl(self, name: str, value: int) -> None:
        try:
            setattr(self._enc, name, value)
        except _opus().OpusError as exc:
            raise AudioError(f"Opus encoder rejected {name}={value}: {exc}") from exc

    # -- coding -----------------------------------------------------------------------------
    def encode(self, pcm: bytes) -> bytes:
        """One Opus packet from exactly one frame (``frame_bytes``) of 16-bit mono PCM."""
        if len(pcm) != self.frame_bytes:
            raise AudioError(
                f"the Opus encoder takes {self.frame_bytes} bytes (20 ms of 16-bit mono PCM at "
                f"{self.sample_rate} Hz), got {len(pcm)}"
            )
        if not isinstance(pcm, bytes):
            pcm = bytes(pcm)
        try:
            return bytes(self._encode(self._state, pcm, self.frame_samples, MAX_PACKET_BYTES))
        except _opus().OpusError as exc:
            raise AudioError(f"Opus encoding failed: {exc}") from exc

    def reset(self) -> None:
        """Forget all history, as at the start of a new burst."""
        try:
            self._enc.reset_state()
        except _opus().OpusError as exc:
            raise AudioError(f"Opus encoder reset failed: {exc}") from exc


class OpusDecoder:
    """A mono Opus decoder producing 20 ms frames of 16-bit PCM. Not thread-safe."""

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        _check_rate(sample_rate)
        lib = _opus()
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples(sample_rate)
        self.frame_bytes = self.frame_samples * 2
        try:
            self._dec = lib.Decoder(sample_rate, 1)
        except lib.OpusError as exc:
            raise AudioError(f"cannot create the Opus decoder: {exc}") from exc
        self._state = self._dec.decoder_state
        self._api = lib.api.decoder
        self._buf = (ctypes.c_int16 * self.frame_samples)()
        self._ptr = ctypes.cast(self._buf, lib.api.c_int16_pointer)

    def _run(self, data: bytes | None, fec: bool, what: str) -> bytes:
        try:
            got = self._api.libopus_decode(
                self._state,
                data,
                len(data) if data else 0,
                self._ptr,
                self.frame_samples,
                int(fec),
            )
        except (ctypes.ArgumentError, TypeError) as exc:
            raise AudioError(f"Opus {what} failed: {exc}") from exc
        if got < 0:
            raise AudioError(f"Opus {what} failed: {_opus().OpusError(got)}")
        if got != self.frame_samples:
            raise AudioError(
                f"Opus {what} gave {got} samples, ptt frames are {self.frame_samples} (20 ms)"
            )
        return ctypes.string_at(self._buf, self.frame_bytes)

    def _packet(self, packet: object, what: str) -> bytes:
        """``packet`` as bytes after checking it is one valid 20 ms Opus packet."""
        if not isinstance(packet, bytes | bytearray | memoryview):
            raise AudioError(f"Opus {what} needs bytes, not {type(packet).__name__}")
        data = bytes(packet)
        if not data:
            raise AudioError(f"Opus {what} got an empty packet (use conceal() for a lost frame)")
        try:
            n = self._api.get_nb_samples(self._state, data, len(data))
        except _opus().OpusError as exc:
            raise AudioError(f"Opus {what} failed: not a valid Opus packet ({exc})") from exc
        if n != self.frame_samples:
            ms = n * 1000 / self.sample_rate
            raise AudioError(f"Opus {what} got a {ms:g} ms packet; ptt frames are {FRAME_MS} ms")
        return data

    def decode(self, packet: bytes) -> bytes:
        """PCM (``frame_bytes``) of one received 20 ms Opus packet."""
        return self._run(self._packet(packet, "decoding"), False, "decoding")

    def decode_fec(self, next_packet: bytes) -> bytes:
        """PCM of the frame *before* ``next_packet``, rebuilt from next_packet's in-band FEC.

        Decode ``next_packet`` itself afterwards with :meth:`decode`. When it carries no FEC data
        (see :func:`packet_has_fec`) libopus falls back to concealment, so this never does worse.
        """
        return self._run(self._packet(next_packet, "FEC decoding"), True, "FEC decoding")

    def conceal(self) -> bytes:
        """Packet loss concealment: a plausible continuation for one lost frame."""
        return self._run(None, False, "concealment")

    def reset(self) -> None:
        """Forget all history, as at the start of a new burst from another talker."""
        try:
            self._dec.reset_state()
        except _opus().OpusError as exc:
            raise AudioError(f"Opus decoder reset failed: {exc}") from exc


class CodecWorker:
    """Runs codec calls on one dedicated thread, in submission order, off the event loop.

    One worker serialises all calls given to it, so an encoder or decoder used only through it is
    never entered by two threads at once::

        worker = CodecWorker()
        packet = await worker.encode(encoder, pcm)
        pcm = await worker.decode(decoder, packet)
        worker.close()
    """

    def __init__(self, name: str = "ptt-codec") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def encode(self, encoder: OpusEncoder, pcm: bytes) -> bytes:
        return await self.run(encoder.encode, pcm)

    async def decode(self, decoder: OpusDecoder, packet: bytes) -> bytes:
        return await self.run(decoder.decode, packet)

    async def decode_fec(self, decoder: OpusDecoder, next_packet: bytes) -> bytes:
        return await self.run(decoder.decode_fec, next_packet)

    async def conceal(self, decoder: OpusDecoder) -> bytes:
        return await self.run(decoder.conceal)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
