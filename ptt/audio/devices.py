"""Sound devices through PyAudio (PortAudio): listing, capture and playback.

Capture runs in PortAudio's callback thread: each callback converts what arrived to ptt frames
(mono, :data:`~ptt.audio.codec.SAMPLE_RATE`, 20 ms) and hands them to the event loop with
``loop.call_soon_threadsafe``, so ``await source.read()`` never blocks the loop and the callback
never waits for the loop. Playback is the mirror image: :meth:`PlaybackSink.write` appends to a
locked buffer that the callback drains, playing silence when it runs dry (counted as an underrun
when a burst was playing), and every callback wakes :meth:`PlaybackSink.wait_ready`, so the
sound card's clock paces the playout.

When a device does not take ``SAMPLE_RATE`` (or mono), the stream opens at the device's default
rate (and channel count) and :mod:`ptt.audio.resample` converts in both directions.

PortAudio probes ALSA and JACK when it initialises and both print pages of diagnostics to stderr on
a machine without a sound server; :func:`quiet_portaudio` installs no-op error handlers in
``libasound`` (``snd_lib_error_set_handler``) and, when it is loadable, ``libjack``
(``jack_set_error_function``, ``jack_set_info_function``) before PortAudio is initialised.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np

from ptt.audio.codec import FRAME_MS, SAMPLE_RATE
from ptt.audio.resample import PcmResampler
from ptt.audio.streams import (
    ClockedSink,
    FrameSink,
    FrameSource,
    FramesSource,
    MemorySink,
    NullSink,
    PacedSink,
    SilenceSource,
    ToneSource,
)
from ptt.errors import AudioError

__all__ = [
    "CaptureSource",
    "ClockedSink",
    "DeviceInfo",
    "FrameSink",
    "FrameSource",
    "FramesSource",
    "MemorySink",
    "NullSink",
    "PacedSink",
    "PlaybackSink",
    "SilenceSource",
    "ToneSource",
    "find_device",
    "list_devices",
    "quiet_portaudio",
]

Direction = Literal["input", "output"]
DeviceSpec = int | str | None

# ---------------------------------------------------------------------------------------------
# PortAudio's ALSA/JACK stderr noise

_ALSA_HANDLER_T = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
)
_JACK_HANDLER_T = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
_keep: list[Any] = []  # the C side holds raw pointers: keep the callbacks alive forever
_quiet_done = False
_quiet_lock = threading.Lock()


def _load(*names: str) -> ctypes.CDLL | None:
    for name in names:
        path = ctypes.util.find_library(name)
        for candidate in (path, f"lib{name}.so.2", f"lib{name}.so.0", f"lib{name}.so"):
            if not candidate:
                continue
            try:
                return ctypes.CDLL(candidate)
            except OSError:
                continue
    return None


def quiet_portaudio() -> None:
    """Silence ALSA's and JACK's diagnostics on stderr (idempotent, process-wide)."""
    global _quiet_done
    with _quiet_lock:
        if _quiet_done:
            return
        _quiet_done = True
        asound = _load("asound")
        if asound is not None:
            with contextlib.suppress(AttributeError):
                handler = _ALSA_HANDLER_T(lambda *args: None)
                _keep.append(handler)
                asound.snd_lib_error_set_handler(handler)
        jack = _load("jack")
        if jack is not None:
            for fn in ("jack_set_error_function", "jack_set_info_function"):
                with contextlib.suppress(AttributeError):
                    handler = _JACK_HANDLER_T(lambda msg: None)
                    _keep.append(handler)
                    getattr(jack, fn)(handler)


_pyaudio_module: Any = None


def _pyaudio() -> Any:
    """The pyaudio module, imported after the noise handlers are in place."""
    global _pyaudio_module
    if _pyaudio_module is None:
        quiet_portaudio()
        try:
            import pyaudio
        except ImportError as exc:  # pragma: no cover - a dependency, but give a clean message
            raise AudioError(f"PyAudio is not installed ({exc}); run `make deps`") from exc
        _pyaudio_module = pyaudio
    return _pyaudio_module


@contextlib.contextmanager
def _portaudio() -> Iterator[Any]:
    """An initialised PortAudio for a short query; terminated afterwards so that a later call
    sees devices (or sound servers) that appeared since."""
    pa = _pyaudio().PyAudio()
    try:
        yield pa
    finally:
        pa.terminate()


# ---------------------------------------------------------------------------------------------
# Devices


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_rate: int
    host_api: str = ""
    default_input: bool = False
    default_output: bool = False

    @property
    def is_input(self) -> bool:
        return self.max_input_channels > 0

    @property
    def is_output(self) -> bool:
        return self.max_output_channels > 0

    def describe(self) -> str:
        marks = ("<" if self.default_input else " ") + (">" if self.default_output else " ")
        return (
            f"{self.index:>3} {marks} {self.name}  (in {self.max_input_channels}, "
            f"out {self.max_output_channels}, {self.default_rate} Hz, {self.host_api})"
        )


def _info(pa: Any, raw: dict[str, Any], din: int, dout: int) -> DeviceInfo:
    try:
        api = pa.get_host_api_info_by_index(raw["hostApi"])["name"]
    except (OSError, KeyError, ValueError):
        api = ""
    idx = int(raw["index"])
    return DeviceInfo(
        index=idx,
        name=str(raw["name"]),
        max_input_channels=int(raw["maxInputChannels"]),
        max_output_channels=int(raw["maxOutputChannels"]),
        default_rate=round(raw["defaultSampleRate"]),
        host_api=str(api),
        default_input=idx == din,
        default_output=idx == dout,
    )


def _defaults(pa: Any) -> tuple[int, int]:
    out = []
    for getter in (pa.get_default_input_device_info, pa.get_default_output_device_info):
        try:
            out.append(int(getter()["index"]))
        except OSError:
            out.append(-1)
    return out[0], out[1]


def list_devices() -> list[DeviceInfo]:
    """Every device PortAudio sees, with channel counts and default sample rates."""
    try:
        with _portaudio() as pa:
            din, dout = _defaults(pa)
            return [
                _info(pa, pa.get_device_info_by_index(i), din, dout)
                for i in range(pa.get_device_count())
            ]
    except OSError as exc:
        raise AudioError(f"cannot list audio devices: {exc}") from exc


def _pick(devices: list[DeviceInfo], spec: DeviceSpec, direction: Direction) -> DeviceInfo:
    usable = [d for d in devices if (d.is_input if direction == "input" else d.is_output)]
    if not usable:
        raise AudioError(f"no audio {direction} devices found (is a sound server running?)")
    if spec is None or spec == "":
        for d in usable:
            if d.default_input if direction == "input" else d.default_output:
                return d
        for d in usable:  # no default reported: prefer a "default" or "pulse" device
            if d.name in ("default", "pulse"):
                return d
        return usable[0]
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        idx = int(spec)
        for d in devices:
            if d.index == idx:
                if d not in usable:
                    raise AudioError(f"audio device {idx} ({d.name}) has no {direction} channels")
                return d
        raise AudioError(f"no audio device with index {idx}")
    want = spec.strip().lower()
    exact = [d for d in usable if d.name.lower() == want]
    if exact:
        return exact[0]
    partial = [d for d in usable if want in d.name.lower()]
    if len(partial) == 1:
        return partial[0]
    if partial:
        names = ", ".join(f"{d.index}: {d.name}" for d in partial)
        raise AudioError(f"audio {direction} device name {spec!r} is ambiguous ({names})")
    names = ", ".join(f"{d.index}: {d.name}" for d in usable) or "none"
    raise AudioError(f"no audio {direction} device matches {spec!r} (have {names})")


def find_device(spec: DeviceSpec = None, direction: Direction = "output") -> DeviceInfo:
    """A device by index, by name (exact, else a unique substring, case-insensitive) or the
    default (``None``)."""
    return _pick(list_devices(), spec, direction)


def _stream_format(
    pa: Any, dev: DeviceInfo, direction: Direction, rate: int, forced: int | None = None
) -> tuple[int, int]:
    """(rate, channels) the device accepts: ptt's own if possible, else the device default.
    ``forced`` names the only rate to try."""
    pyaudio = _pyaudio()
    max_ch = dev.max_input_channels if direction == "input" else dev.max_output_channels
    if forced:
        rates: tuple[int, ...] = (forced,)
    else:
        rates = (rate, dev.default_rate)
    for r in rates:
        for ch in sorted({1, min(2, max_ch)}):
            kw: dict[str, Any] = {f"{direction}_device": dev.index}
            kw[f"{direction}_channels"] = ch
            kw[f"{direction}_format"] = pyaudio.paInt16
            try:
                if pa.is_format_supported(r, **kw):
                    return r, ch
            except ValueError:
                continue
    if forced:
        raise AudioError(f"audio device {dev.name!r} does not take {forced} Hz 16-bit {direction}")
    return dev.default_rate, max(1, min(2, max_ch))


# ---------------------------------------------------------------------------------------------
# Capture

_END = object()


class _PortAudioStream:
    """What capture and playback share: a PyAudio instance, one stream, and their teardown."""

    _stream: Any
    _pa: Any

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _terminate(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.stop_stream()
            with contextlib.suppress(OSError):
                stream.close()
        pa, self._pa = self._pa, None
        if pa is not None:
            pa.terminate()

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class CaptureSource(_PortAudioStream):
    """Microphone frames as a :class:`~ptt.audio.streams.FrameSource`.

    The stream opens on :meth:`start` (or the first :meth:`read`) from inside the event loop.
    If the loop falls behind by more than ``queue_frames`` frames the oldest are dropped
    (counted in :attr:`dropped`).
    """

    def __init__(
        self,
        device: DeviceSpec = None,
        queue_frames: int = 50,
        rate: int = SAMPLE_RATE,
        device_rate: int | None = None,
    ) -> None:
        self.device = find_device(device, "input")
        self.rate = rate
        self._forced_rate = device_rate
        self.frame_bytes = rate * FRAME_MS // 1000 * 2
        self.queue_frames = queue_frames
        self.dropped = 0
        self.overflows = 0
        self.device_rate = 0
        self.channels = 0
        self._queue: asyncio.Queue[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pa: Any = None
        self._stream: Any = None
        self._pending = bytearray()
        self._resampler: PcmResampler | None = None
        self._closed = False

    def start(self) -> None:
        """Open and start the stream; call from the event loop's thread."""
        if self._stream is not None or self._closed:
            return
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError as exc:
            raise AudioError("CaptureSource.start() must run inside an asyncio event loop") from exc
        self._queue = asyncio.Queue()
        pyaudio = _pyaudio()
        self._pa = pyaudio.PyAudio()
        try:
            self.device_rate, self.channels = _stream_format(
                self._pa, self.device, "input", self.rate, self._forced_rate
            )
            if self.device_rate != self.rate:
                self._resampler = PcmResampler(self.device_rate, self.rate)
            self._stream = self._pa.open(
                format=pyaudio.paInt16,
                channels=self.channels,
                rate=self.device_rate,
                input=True,
                input_device_index=self.device.index,
                frames_per_buffer=self.device_rate * FRAME_MS // 1000,
                stream_callback=self._callback,
            )
            self._stream.start_stream()
        except AudioError:
            self._terminate()
            raise
        except (OSError, ValueError) as exc:
            self._terminate()
            raise AudioError(f"cannot open capture device {self.device.name!r}: {exc}") from exc

    # PortAudio's thread -----------------------------------------------------------------------
    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int):  # type: ignore[no-untyped-def]
        pyaudio = _pyaudio()
        if status & pyaudio.paInputOverflow:
            self.overflows += 1
        if in_data:
            pcm = in_data
            if self.channels > 1:
                x = np.frombuffer(pcm, dtype="<i2").reshape(-1, self.channels)
                pcm = x.mean(axis=1).round().astype("<i2").tobytes()
            if self._resampler is not None:
                pcm = self._resampler.process(pcm)
            self._pending += pcm
        now = time.monotonic()
        while len(self._pending) >= self.frame_bytes:
            frame = bytes(self._pending[: self.frame_bytes])
            del self._pending[: self.frame_bytes]
            try:
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._deliver, frame, now)
            except RuntimeError:  # the loop is closed: stop capturing
                return (None, pyaudio.paAbort)
        return (None, pyaudio.paContinue)

    # the loop's thread ------------------------------------------------------------------------
    def _deliver(self, frame: bytes, when: float) -> None:
        q = self._queue
        if q is None or self._closed:
            return
        while q.qsize() >= self.queue_frames:
            q.get_nowait()
            self.dropped += 1
        q.put_nowait((frame, when))

    async def read_timed(self) -> tuple[bytes, float] | None:
        """The next frame and the ``time.monotonic()`` at which its last sample was delivered
        by PortAudio (the loop's clock, for delay measurements); None once closed."""
        if self._closed:
            return None
        self.start()
        assert self._queue is not None
        item = await self._queue.get()
        if item is _END:
            return None
        return item  # type: ignore[no-any-return]

    async def read(self) -> bytes | None:
        item = await self.read_timed()
        return None if item is None else item[0]

    def pending(self) -> int:
        """Frames captured but not yet read."""
        return self._queue.qsize() if self._queue is not None else 0

    def drain_pending(self) -> None:
        """Throw away frames captured but not read (e.g. when a burst starts)."""
        if self._queue is not None:
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _END:
                    self._queue.put_nowait(_END)
                    break

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._terminate()
        if self._queue is not None:
            self._queue.put_nowait(_END)



# ---------------------------------------------------------------------------------------------
# Playback


class PlaybackSink(_PortAudioStream):
    """Speaker output as a :class:`~ptt.audio.streams.ClockedSink`.

    :meth:`write` queues a frame (it never blocks; beyond ``max_queue_frames`` the oldest audio is
    dropped); :meth:`wait_ready` returns when fewer than ``target_frames`` are queued, i.e. when
    the sound card wants more. The stream opens on :meth:`start` (or the first write/wait).
    """

    def __init__(
        self,
        device: DeviceSpec = None,
        target_frames: int = 2,
        max_queue_frames: int = 50,
        rate: int = SAMPLE_RATE,
        device_rate: int | None = None,
    ) -> None:
        self.device = find_device(device, "output")
        self.rate = rate
        self._forced_rate = device_rate
        self.target_frames = target_frames
        self.max_queue_frames = max_queue_frames
        self.underruns = 0  # callbacks that found a partly filled buffer (a burst broke up)
        self.dropped_bytes = 0
        self.frames_played = 0  # device-side 20 ms periods that carried audio
        self.device_rate = 0
        self.channels = 0
        self._dev_frame_bytes = 0
        self._buf = bytearray()  # device-format PCM waiting for the callback
        self._lock = threading.Lock()
        self._ready: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pa: Any = None
        self._stream: Any = None
        self._resampler: PcmResampler | None = None
        self._closed = False

    def start(self) -> None:
        """Open and start the stream; call from the event loop's thread."""
        if self._stream is not None or self._closed:
            return
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None  # still plays; wait_ready() needs a loop
        self._ready = asyncio.Event() if self._loop is not None else None
        pyaudio = _pyaudio()
        self._pa = pyaudio.PyAudio()
        try:
            self.device_rate, self.channels = _stream_format(
                self._pa, self.device, "output", self.rate, self._forced_rate
            )
            if self.device_rate != self.rate:
                self._resampler = PcmResampler(self.rate, self.device_rate)
            period = self.device_rate * FRAME_MS // 1000
            self._dev_frame_bytes = period * 2 * self.channels
            self._stream = self._pa.open(
                format=pyaudio.paInt16,
                channels=self.channels,
                rate=self.device_rate,
                output=True,
                output_device_index=self.device.index,
                frames_per_buffer=period,
                stream_callback=self._callback,
            )
            self._stream.start_stream()
        except AudioError:
            self._terminate()
            raise
        except (OSError, ValueError) as exc:
            self._terminate()
            raise AudioError(f"cannot open playback device {self.device.name!r}: {exc}") from exc

    @property
    def queued_frames(self) -> float:
        """20 ms frames written but not yet handed to the sound card."""
        if not self._dev_frame_bytes:
            return 0.0
        with self._lock:
            return len(self._buf) / self._dev_frame_bytes

    def write(self, frame: bytes) -> None:
        if self._closed:
            raise AudioError("the playback device is closed")
        self.start()
        pcm = self._resampler.process(frame) if self._resampler is not None else frame
        if self.channels > 1:
            pcm = np.repeat(np.frombuffer(pcm, dtype="<i2"), self.channels).tobytes()
        with self._lock:
            self._buf += pcm
            excess = len(self._buf) - self.max_queue_frames * self._dev_frame_bytes
            if excess > 0:
                excess += (-excess) % (2 * self.channels)
                del self._buf[:excess]
                self.dropped_bytes += excess

    async def wait_ready(self) -> None:
        self.start()
        ready = self._ready
        if ready is None:
            raise AudioError("PlaybackSink.wait_ready() needs the sink started inside a loop")
        while self.queued_frames >= self.target_frames and not self._closed:
            ready.clear()
            if self.queued_frames < self.target_frames:
                break
            await ready.wait()

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until everything written has been handed to the sound card."""
        self.start()
        deadline = time.monotonic() + timeout
        while self.queued_frames > 0 and not self._closed and time.monotonic() < deadline:
            await asyncio.sleep(FRAME_MS / 1000 / 2)

    # PortAudio's thread -----------------------------------------------------------------------
    def _callback(self, in_data: Any, frame_count: int, time_info: Any, status: int):  # type: ignore[no-untyped-def]
        pyaudio = _pyaudio()
        need = frame_count * 2 * self.channels
        with self._lock:
            have = len(self._buf)
            chunk = bytes(self._buf[:need])
            del self._buf[:need]
        if have:
            self.frames_played += 1
            if have < need:
                self.underruns += 1
        if len(chunk) < need:
            chunk += bytes(need - len(chunk))
        loop = self._loop
        if loop is not None and self._ready is not None:
            try:
                loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:  # the loop is closed
                pass
        return (chunk, pyaudio.paContinue)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._terminate()
        if self._ready is not None:
            self._ready.set()

