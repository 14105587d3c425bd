"""iniVation AEDAT 4.0 files (DV software, DAVIS / DVXplorer cameras), read through dv-processing.

File layout (what is checked here before dv-processing sees the file)::

    "#!AER-DAT4.0\\r\\n"                       14 bytes, the version line
    int32 header size, IOHeader FlatBuffer    compression (0 none, 1 LZ4, 2 LZ4 high, 3 ZSTD, 4 ZSTD high),
                                              position of the FileDataTable (-1: none), info XML
    packets: int32 stream id, int32 size,     each a size-prefixed FlatBuffer (EVTS, FRME, IMUS, TRIG, ...)
             size bytes of compressed data
    FileDataTable                             compressed, from its position to the end of the file

dv-processing 2.0.4 hangs on some corrupt compressed packets, so :func:`read_aedat4` and :func:`iter_aedat4`
first walk the packets and decompress each one (python-lz4 / zstandard); any inconsistency, and any error
of dv-processing, becomes a :class:`~microexp.errors.FormatError` naming the file (and the byte offset where
known). Compressed bytes that still decompress can of course still carry wrong values: AEDAT4 has no
checksums.

Conversions: events -> :data:`~microexp.events.dtype.EVENT_DTYPE` (t in µs as in the file, which is µs
since the Unix epoch for DV recordings); IMU samples -> :data:`IMU_DTYPE` (accelerometer in g, gyroscope in
°/s, magnetometer in µT, temperature in °C, as dv-processing gives them); triggers ->
:data:`~microexp.events.dtype.TRIGGER_DTYPE` with ``id`` = dv's TriggerType number and ``value`` = 1 for
rising edges, pulses, resets and starts, 0 for falling edges and ends; APS frames -> :class:`Aedat4Frame`.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple

import numpy as np

from microexp.errors import FormatError
from microexp.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE, concat_events

__all__ = [
    "read_aedat4",
    "iter_aedat4",
    "Aedat4Recording",
    "Aedat4Frame",
    "Aedat4Item",
    "IMU_DTYPE",
    "AEDAT4_MAGIC",
    "check_aedat4",
]

AEDAT4_MAGIC = b"#!AER-DAT4.0"
_VERSION_LINE = AEDAT4_MAGIC + b"\r\n"

IMU_DTYPE = np.dtype(
    [
        ("t", "<i8"),
        ("ax", "<f4"),
        ("ay", "<f4"),
        ("az", "<f4"),
        ("gx", "<f4"),
        ("gy", "<f4"),
        ("gz", "<f4"),
        ("mx", "<f4"),
        ("my", "<f4"),
        ("mz", "<f4"),
        ("temp", "<f4"),
    ]
)
"""t (µs), accelerometer ax..az (g), gyroscope gx..gz (°/s), magnetometer mx..mz (µT), temp (°C)."""

# dv TriggerType number -> edge value of TRIGGER_DTYPE (1 rising/start/pulse, 0 falling/end)
_TRIGGER_VALUE = {0: 1, 1: 1, 2: 0, 3: 1, 4: 1, 5: 0, 6: 1, 7: 0, 8: 1, 9: 0}


class Aedat4Frame(NamedTuple):
    """One APS frame: t (µs, start of exposure as dv reports it), image (H x W [x C], as stored), exposure_us."""

    t: int
    image: np.ndarray
    exposure_us: int


class Aedat4Item(NamedTuple):
    """One playback item of :func:`iter_aedat4`.

    ``kind`` is "events" (data: EVENT_DTYPE array), "frame" (data: :class:`Aedat4Frame`), "imu" (data:
    IMU_DTYPE array) or "triggers" (data: TRIGGER_DTYPE array); ``t`` is the time of its first element (µs).
    """

    kind: str
    t: int
    data: Any


@dataclass
class Aedat4Recording:
    """Everything in an AEDAT4 file (single camera)."""

    path: str
    camera: str
    width: int
    height: int
    events: np.ndarray = field(repr=False)
    frames: list = field(repr=False)
    imu: np.ndarray = field(repr=False)
    triggers: np.ndarray = field(repr=False)

    @property
    def frame_t(self) -> np.ndarray:
        """Frame times (µs) as an int64 array."""
        return np.array([f.t for f in self.frames], dtype=np.int64)

    @property
    def duration_us(self) -> int:
        """Time from the first to the last event (0 without events)."""
        if self.events.shape[0] == 0:
            return 0
        return int(self.events["t"][-1]) - int(self.events["t"][0])


# ------------------------------------------------------------------------------------------ validation


def _decompressor(compression: int, path: str):
    if compression == 0:
        return lambda data: bytes(data)
    if compression in (1, 2):
        import lz4.frame

        return lz4.frame.decompress
    if compression in (3, 4):
        import zstandard

        dctx = zstandard.ZstdDecompressor()

        def unzstd(data):
            with dctx.stream_reader(bytes(data)) as reader:
                return reader.read()

        return unzstd
    raise FormatError(path, f"unknown compression type {compression} in the IOHeader", 18)


def _flatbuffer_root_fields(buf: bytes, path: str, at: int):
    """(root table position, vtable field offsets) of a FlatBuffer, with bounds checks."""
    try:
        root = struct.unpack_from("<I", buf, 0)[0]
        vtable = root - struct.unpack_from("<i", buf, root)[0]
        vt_len, _ = struct.unpack_from("<HH", buf, vtable)
        if vt_len < 4 or vtable + vt_len > len(buf):
            raise ValueError
        fields = [struct.unpack_from("<H", buf, vtable + 4 + 2 * i)[0] for i in range((vt_len - 4) // 2)]
    except (struct.error, ValueError):
        raise FormatError(path, "the IOHeader is not a valid FlatBuffer", at) from None
    return root, fields


def check_aedat4(path) -> dict:
    """Check the structure of an AEDAT4 file without dv-processing; raise FormatError where it is broken.

    Returns a summary: compression, data_table (position or -1), packets (count), streams (packets per
    stream id).
    """
    path = os.fspath(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise FormatError(path, f"cannot open: {exc.strerror or exc}") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise FormatError(path, "empty file, not an AEDAT4 recording", 0)
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return _check_mapped(mm, size, path)


def _check_mapped(mm, size: int, path: str) -> dict:
    head = mm[: len(_VERSION_LINE)]
    if len(head) < len(AEDAT4_MAGIC) or head[: len(AEDAT4_MAGIC)] != AEDAT4_MAGIC:
        raise FormatError(
            path, f"not an AEDAT4 file (or cut short): it starts with {bytes(head[:12])!r}, not {AEDAT4_MAGIC!r}", 0
        )
    if head != _VERSION_LINE:
        raise FormatError(path, "the AEDAT4 version line does not end in CR LF", 12)
    pos = len(_VERSION_LINE)
    if size < pos + 4:
        raise FormatError(path, "truncated: the IOHeader size is missing", pos)
    hsize = struct.unpack_from("<i", mm, pos)[0]
    if hsize < 12 or pos + 4 + hsize > size:
        raise FormatError(
            path, f"truncated or corrupt: IOHeader of {hsize} bytes does not fit the file ({size} bytes)", pos
        )
    header = mm[pos + 4 : pos + 4 + hsize]
    root, fields = _flatbuffer_root_fields(header, path, pos + 4)
    try:
        compression = struct.unpack_from("<i", header, root + fields[0])[0] if len(fields) > 0 and fields[0] else 0
        table_pos = struct.unpack_from("<q", header, root + fields[1])[0] if len(fields) > 1 and fields[1] else -1
    except struct.error:
        raise FormatError(path, "the IOHeader is not a valid FlatBuffer", pos + 4) from None
    decompress = _decompressor(compression, path)
    pos += 4 + hsize
    if table_pos >= 0 and not (pos <= table_pos < size):
        raise FormatError(
            path,
            f"truncated: the packet index (FileDataTable) should start at byte {table_pos} "
            f"but the file has {size} bytes",
            size,
        )
    end = table_pos if table_pos >= 0 else size
    streams: dict[int, int] = {}
    n = 0
    while pos < end:
        if pos + 8 > end:
            raise FormatError(path, "truncated packet header", pos)
        sid, psize = struct.unpack_from("<ii", mm, pos)
        if psize <= 0 or pos + 8 + psize > end:
            raise FormatError(path, f"corrupt or truncated packet: stream {sid}, {psize} bytes, beyond byte {end}", pos)
        _check_packet(decompress, mm[pos + 8 : pos + 8 + psize], path, pos)
        streams[sid] = streams.get(sid, 0) + 1
        n += 1
        pos += 8 + psize
    if table_pos >= 0:
        try:
            decompress(mm[table_pos:size])
        except Exception as exc:  # noqa: BLE001 - any decompressor error means a broken table
            raise FormatError(path, f"corrupt packet index (FileDataTable): {exc}", table_pos) from None
    return {"compression": compression, "data_table": table_pos, "packets": n, "streams": streams}


def _check_packet(decompress, data, path: str, at: int) -> None:
    try:
        body = decompress(data)
    except Exception as exc:  # noqa: BLE001 - lz4 / zstandard raise their own types
        raise FormatError(path, f"corrupt compressed packet: {exc}", at) from None
    if len(body) < 12 or struct.unpack_from("<I", body, 0)[0] != len(body) - 4:
        raise FormatError(path, "corrupt packet: its FlatBuffer size prefix does not match its length", at)


# ---------------------------------------------------------------------------------------------- reading


def _open(path: str):
    import dv_processing as dv

    try:
        return dv.io.MonoCameraRecording(path)
    except Exception as exc:  # noqa: BLE001 - dv-processing raises RuntimeError for everything
        raise FormatError(path, f"dv-processing cannot read it: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    # dv-processing prefixes the source location; the reason is in the last line
    return lines[-1][:300] if len(lines) > 1 else lines[0][:300]


def _events_to_numpy(store) -> np.ndarray:
    a = store.numpy()
    out = np.empty(a.shape[0], dtype=EVENT_DTYPE)
    out["x"] = a["x"]
    out["y"] = a["y"]
    out["t"] = a["timestamp"]
    out["p"] = a["polarity"]
    return out


def _imu_to_numpy(batch) -> np.ndarray:
    out = np.empty(len(batch), dtype=IMU_DTYPE)
    for i, m in enumerate(batch):
        out[i] = (
            m.timestamp,
            m.accelerometerX,
            m.accelerometerY,
            m.accelerometerZ,
            m.gyroscopeX,
            m.gyroscopeY,
            m.gyroscopeZ,
            m.magnetometerX,
            m.magnetometerY,
            m.magnetometerZ,
            m.temperature,
        )
    return out


def _triggers_to_numpy(batch) -> np.ndarray:
    out = np.empty(len(batch), dtype=TRIGGER_DTYPE)
    for i, tr in enumerate(batch):
        kind = int(tr.type)
        out[i] = (tr.timestamp, kind, _TRIGGER_VALUE.get(kind, 1))
    return out


def _frame(f) -> Aedat4Frame:
    exposure = f.exposure
    exposure_us = int(round(exposure.total_seconds() * 1e6)) if hasattr(exposure, "total_seconds") else int(exposure)
    return Aedat4Frame(int(f.timestamp), np.array(f.image, copy=True), exposure_us)


class _Streams:
    """Pulls batches from each available stream of one recording, wrapping dv-processing errors."""

    def __init__(self, path: str):
        self.path = path
        self.rec = _open(path)
        try:
            self.camera = str(self.rec.getCameraName())
            self.has = {
                "events": bool(self.rec.isEventStreamAvailable()),
                "frame": bool(self.rec.isFrameStreamAvailable()),
                "imu": bool(self.rec.isImuStreamAvailable()),
                "triggers": bool(self.rec.isTriggerStreamAvailable()),
            }
            res = None
            if self.has["events"]:
                res = self.rec.getEventResolution()
            if res is None and self.has["frame"]:
                res = self.rec.getFrameResolution()
        except Exception as exc:  # noqa: BLE001
            raise FormatError(path, f"dv-processing cannot read it: {_first_line(exc)}") from None
        self.width, self.height = (int(res[0]), int(res[1])) if res is not None else (0, 0)

    def next(self, kind: str):
        """The next item of a stream as (t, data), or None at its end."""
        if kind != "frame" and kind not in _BATCH_STREAMS:
            raise AssertionError(kind)
        try:
            return self._next_frame() if kind == "frame" else self._next_batch(*_BATCH_STREAMS[kind])
        except FormatError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise FormatError(
                self.path, f"dv-processing failed reading the {kind} stream: {_first_line(exc)}"
            ) from None

    def _next_frame(self):
        f = self.rec.getNextFrame()
        if f is None:
            return None
        fr = _frame(f)
        return fr.t, fr

    def _next_batch(self, getter: str, count, convert):
        """The next non-empty batch of a batched stream (its ``getter``), converted; None at its end."""
        while True:
            b = getattr(self.rec, getter)()
            if b is None:
                return None
            if count(b):
                a = convert(b)
                return int(a["t"][0]), a


# batched stream -> (dv-processing getter, batch length, conversion to numpy)
_BATCH_STREAMS = {
    "events": ("getNextEventBatch", lambda b: b.size(), _events_to_numpy),
    "imu": ("getNextImuBatch", len, _imu_to_numpy),
    "triggers": ("getNextTriggerBatch", len, _triggers_to_numpy),
}


def iter_aedat4(path) -> Iterator[Aedat4Item]:
    """Play an AEDAT4 file back: its event batches, frames, IMU and trigger batches merged in time order.

    The file's structure is checked first (FormatError if broken). Each stream keeps its own batches
    (as recorded); items are ordered by the time of their first element (events first on ties).

    Example
    -------
    >>> for item in iter_aedat4(path):                      # doctest: +SKIP
    ...     if item.kind == "events":
    ...         handle(item.data)
    """
    path = os.fspath(path)
    check_aedat4(path)
    streams = _Streams(path)
    order = ("events", "frame", "imu", "triggers")
    heads = {k: streams.next(k) for k in order if streams.has[k]}
    while True:
        live = [(h[0], order.index(k), k) for k, h in heads.items() if h is not None]
        if not live:
            return
        _, _, kind = min(live)
        t, data = heads[kind]
        heads[kind] = streams.next(kind)
        yield Aedat4Item(kind, t, data)


def read_aedat4(path) -> Aedat4Recording:
    """Read a whole AEDAT4 file (checked first; FormatError if broken).

    Example
    -------
    >>> rec = read_aedat4("tonic_sample.aedat4")            # doctest: +SKIP
    >>> rec.width, rec.height, rec.events.shape[0]          # doctest: +SKIP
    (320, 240, 111954)
    """
    path = os.fspath(path)
    check_aedat4(path)
    streams = _Streams(path)
    parts: dict[str, list] = {"events": [], "frame": [], "imu": [], "triggers": []}
    for kind in parts:
        if not streams.has[kind]:
            continue
        while True:
            item = streams.next(kind)
            if item is None:
                break
            parts[kind].append(item[1])

    def cat(chunks, dtype):
        if not chunks:
            return np.empty(0, dtype=dtype)
        return chunks[0] if len(chunks) == 1 else concat_events(chunks)

    return Aedat4Recording(
        path=path,
        camera=streams.camera,
        width=streams.width,
        height=streams.height,
        events=cat(parts["events"], EVENT_DTYPE),
        frames=parts["frame"],
        imu=cat(parts["imu"], IMU_DTYPE),
        triggers=cat(parts["triggers"], TRIGGER_DTYPE),
    )
