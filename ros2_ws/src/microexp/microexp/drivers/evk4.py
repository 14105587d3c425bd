"""A Prophesee camera (EVK4) through OpenEB's HAL Python bindings, without ROS: opening, settings, streaming,
and the decode -> EVT3 -> packets path of ``evk4_node mode:=device``.

Two ways from the camera's buffers to EventPacket payloads (``device_read``):

- ``raw``: OpenEB 5.x's Python ``RawBuffer`` exposes only its size, so microexp builds a small binding of its
  own (``microexp_openeb_raw``, ``scripts/openeb_raw.sh``) that copies the buffers' bytes out of the
  ``I_EventsStream``. An EVT3 camera's words are then passed through undecoded, as file playback passes a RAW
  file's, cut into packets by :class:`~microexp.events.evt3_split.Evt3Cutter`.
- ``decode``: every buffer is decoded with the HAL's CD and external-trigger decoders (numpy arrays in
  callbacks) and the events are encoded again with :class:`microexp.events.evt3.Evt3Encoder`, trigger edges
  merged in at their time (:class:`Evt3Packetizer`). This serves cameras that stream another format (EVT2) and
  installs without the binding.

Both cut packets as file playback cuts a RAW file: one ``packet_time_us`` interval of sensor time each,
boundaries at its multiples, at most ``packet_max_bytes``. A RAW file opened as a device
(``DeviceDiscovery.open_raw_file``) runs the same code as a camera.

Bias files and the settings asked of the camera (:class:`DeviceSettings`) are in
:mod:`microexp.drivers.evk4_settings`.

Nothing here imports rclpy; ``metavision_hal`` is imported when a device is opened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numba as nb
import numpy as np

from microexp.drivers.evk4_settings import IMX636_BIAS_RANGES, DeviceSettings, check_biases
from microexp.errors import MicroexpError, ParameterError, input_file
from microexp.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE, concat_events
from microexp.events.evt3 import Evt3Encoder
from microexp.events.evt3_split import Evt3Cutter, Evt3Packet, trigger_triples
from microexp.events.raw import read_raw_header


class DeviceUnavailable(MicroexpError):
    """No camera, the named camera absent, or a camera another process holds: worth retrying."""


def openeb_available() -> Optional[str]:
    """None when OpenEB's Python bindings import, else the reason they do not."""
    try:
        import metavision_hal  # noqa: F401
    except ImportError as exc:
        return f"OpenEB's Python bindings (metavision_hal) do not import: {exc} (build them with `make openeb`)"
    return None


DEVICE_READS = ("auto", "raw", "decode")


def raw_reader_available() -> Optional[str]:
    """None when microexp's raw-bytes binding (microexp_openeb_raw) imports, else the reason it does not."""
    reason = openeb_available()
    if reason:
        return reason
    try:
        import microexp_openeb_raw  # noqa: F401
    except ImportError as exc:
        return (
            f"microexp's OpenEB raw binding (microexp_openeb_raw) does not import: {exc} "
            "(`make openeb` builds it with OpenEB)"
        )
    return None


# ----------------------------------------------------------------------------------------- event batching

HAL_TO_EVENT = ("x", "y", "t", "p")
# Metavision::EventCD as the bindings give it (aligned C struct, 16 bytes)
HAL_CD_DTYPE = np.dtype(
    {"names": ["x", "y", "p", "t"], "formats": ["<u2", "<u2", "<i2", "<i8"], "offsets": [0, 2, 4, 8], "itemsize": 16}
)


@nb.njit(cache=True, nogil=True)
def _hal_to_events(w, out):
    """w: (n, 2) uint64 views of 16-byte EventCD records (x | y << 16 | p << 32, then t) -> out (EVENT_DTYPE)."""
    for i in range(w.shape[0]):
        a = w[i, 0]
        r = out[i]
        r.x = a & 0xFFFF
        r.y = (a >> 16) & 0xFFFF
        r.p = (a >> 32) & 0xFFFF
        r.t = np.int64(w[i, 1])


def hal_events(arr: np.ndarray) -> np.ndarray:
    """OpenEB EventCD records (x, y, p, t; 16 bytes each, or their raw bytes) -> EVENT_DTYPE, in one pass."""
    raw = np.ascontiguousarray(arr).view(np.uint8)
    out = np.empty(raw.shape[0] // 16, dtype=EVENT_DTYPE)
    if len(out):
        _hal_to_events(raw.view("<u8").reshape(-1, 2), out)
    return out


def hal_triggers(arr: np.ndarray) -> np.ndarray:
    """OpenEB EventExtTrigger records (p, t, id) -> TRIGGER_DTYPE."""
    out = np.empty(arr.shape[0], dtype=TRIGGER_DTYPE)
    out["t"] = arr["t"]
    out["id"] = arr["id"]
    out["value"] = arr["p"]
    return out


class Evt3Packetizer:
    """Decoded events and triggers in, EVT3 packets out, cut like file playback cuts a RAW file.

    Events arrive in HAL-sized batches; a packet covers one ``packet_time_us`` interval of sensor time
    (boundaries at multiples of it) and at most ``max_bytes``. The interval the newest event falls in is held
    back until a later event closes it (or :meth:`flush`), so that a packet never ends just because a USB
    buffer did. Events out of time order (sensor time bit errors) are sorted within a batch; one earlier than
    what was already encoded gets that time (counted in ``reordered``).
    """

    def __init__(self, width: int, height: int, packet_time_us: int = 1000, max_bytes: int = 1_000_000):
        self.encoder = Evt3Encoder(width, height, vectors="sensor")  # OpenEB reads only the sensor's vector form
        self.width, self.height = width, height
        self.packet_time_us = int(packet_time_us)
        self.max_bytes = int(max_bytes)
        # worst case 10 bytes per event (TIME_HIGH, TIME_LOW, ADDR_Y, VECT_BASE_X, ADDR_X): a packet of at most
        # this many events stays below max_bytes
        self.max_events = max(1, self.max_bytes // 10)
        self._events: list[np.ndarray] = []
        self._triggers: list[np.ndarray] = []
        self._last_t = -1  # time of the last event or trigger handed to the encoder
        self.events_in = 0
        self.triggers_in = 0
        self.reordered = 0
        self.dropped_outside = 0

    def pending(self) -> int:
        return sum(len(e) for e in self._events) + sum(len(t) for t in self._triggers)

    def feed(self, got) -> list[Evt3Packet]:
        """One read of the device: (events, triggers); both empty (nothing came in time) flushes."""
        events, triggers = got
        return self.add(events, triggers) if len(events) or len(triggers) else self.flush()

    def add(self, events: Optional[np.ndarray] = None, triggers: Optional[np.ndarray] = None) -> list[Evt3Packet]:
        """Take a batch (EVENT_DTYPE / TRIGGER_DTYPE); return the packets it completed."""
        if events is not None and len(events):
            self._events.append(events)
            self.events_in += len(events)
        if triggers is not None and len(triggers):
            self._triggers.append(triggers)
            self.triggers_in += len(triggers)
        latest = max(
            [int(e["t"][-1]) for e in self._events[-1:]] + [int(t["t"][-1]) for t in self._triggers[-1:]], default=-1
        )
        if latest < 0:
            return []
        cutoff = latest - latest % self.packet_time_us  # start of the newest (open) interval
        return self._emit(cutoff)

    def flush(self) -> list[Evt3Packet]:
        """Everything held back (end of stream, or the camera went quiet)."""
        return self._emit(None)

    def _take(self, parts: list, cutoff: Optional[int], dtype) -> np.ndarray:
        if not parts:
            return np.empty(0, dtype)
        arr = concat_events(parts) if len(parts) > 1 else parts[0]
        parts.clear()
        if len(arr) > 1 and np.any(arr["t"][1:] < arr["t"][:-1]):
            arr = arr[np.argsort(arr["t"], kind="stable")]
        if cutoff is None:
            return arr
        k = int(np.searchsorted(arr["t"], cutoff, side="left"))
        if k < len(arr):
            parts.append(arr[k:])
        return arr[:k]

    def _emit(self, cutoff: Optional[int]) -> list[Evt3Packet]:
        events = self._take(self._events, cutoff, EVENT_DTYPE)
        triggers = self._take(self._triggers, cutoff, TRIGGER_DTYPE)
        if len(events) == 0 and len(triggers) == 0:
            return []
        if len(events):
            early = events["t"] < self._last_t
            if early.any():
                self.reordered += int(early.sum())
                events = events.copy()
                events["t"][early] = self._last_t
            inside = (events["x"] < self.width) & (events["y"] < self.height)
            if not inside.all():
                self.dropped_outside += int((~inside).sum())
                events = events[inside]
        if len(triggers):
            triggers = triggers.copy()
            triggers["t"] = np.maximum(triggers["t"], max(self._last_t, 0))
        dt = self.packet_time_us
        ke = events["t"] // dt
        kt = triggers["t"] // dt
        ids = np.union1d(ke[np.concatenate(([0], np.flatnonzero(np.diff(ke)) + 1))] if len(ke) else ke, kt)
        e0, e1 = np.searchsorted(ke, ids, "left"), np.searchsorted(ke, ids, "right")
        g0, g1 = np.searchsorted(kt, ids, "left"), np.searchsorted(kt, ids, "right")
        out = []
        for i in range(len(ids)):
            a, b, c, d = int(e0[i]), int(e1[i]), int(g0[i]), int(g1[i])
            while True:  # one interval; split further when it holds more than max_events events
                stop = min(b, a + self.max_events)
                tr = (
                    triggers[c:d]
                    if stop == b
                    else triggers[c : c + int(np.searchsorted(triggers["t"][c:d], events["t"][stop - 1], "right"))]
                )
                out.append(self._packet(events[a:stop], tr))
                c += len(tr)
                a = stop
                if a >= b and c >= d:
                    break
        return out

    def _packet(self, events: np.ndarray, triggers: np.ndarray) -> Evt3Packet:
        payload = self.encoder.encode_with_triggers(events, triggers)
        ts = [int(events["t"][0]), int(events["t"][-1])] if len(events) else []
        ts += [int(triggers["t"][0]), int(triggers["t"][-1])] if len(triggers) else []
        self._last_t = max(self._last_t, max(ts))
        return Evt3Packet((np.frombuffer(payload, dtype="<u2"),), min(ts), max(ts), trigger_triples(triggers))


# ------------------------------------------------------------------------------------------------- device


@dataclass
class DeviceInfo:
    serial: str
    width: int
    height: int
    sensor: str
    plugin: str
    source: str  # 'camera' or the RAW file's path
    facilities: dict = field(default_factory=dict)  # facility -> present


class OpenEBDevice:
    """One Prophesee camera, or a RAW file opened as one, through metavision_hal.

    ``open()`` raises :class:`DeviceUnavailable` (retry later) or MicroexpError (give up). ``configure()``
    applies :class:`DeviceSettings` and returns the log lines to print (one per facility the device lacks).
    ``start(raw)`` starts streaming; then ``read(timeout_s)`` returns the sensor's bytes (``raw``) or
    ``(events, triggers)`` (decoded), possibly empty, or None when the stream ended (file end, camera unplugged).
    """

    FACILITIES = (
        "i_events_stream",
        "i_events_stream_decoder",
        "i_event_cd_decoder",
        "i_event_ext_trigger_decoder",
        "i_ll_biases",
        "i_roi",
        "i_erc_module",
        "i_trigger_in",
        "i_trigger_out",
        "i_camera_synchronization",
        "i_hw_identification",
        "i_geometry",
    )

    def __init__(self, serial: str = "", raw_file: str = "", hal=None):
        self.serial_wanted = serial
        self.raw_file = raw_file
        self._hal = hal
        self.device = None
        self.info: Optional[DeviceInfo] = None
        self._cd: list[np.ndarray] = []
        self._trig: list[np.ndarray] = []
        self.buffers = 0
        self.bytes_in = 0
        self._raw = False

    @property
    def hal(self):
        if self._hal is None:
            reason = openeb_available()
            if reason:
                raise MicroexpError(reason)
            import metavision_hal

            self._hal = metavision_hal
        return self._hal

    def describe(self) -> str:
        return (
            f"RAW file {self.raw_file} (as a device)"
            if self.raw_file
            else f"camera {self.serial_wanted or '(first found)'}"
        )

    def open(self) -> DeviceInfo:
        hal = self.hal
        if self.raw_file:
            input_file(self.raw_file, "RAW")
            cfg = hal.RawFileConfig()
            cfg.do_time_shifting = False  # keep the sensor's own time, as the file reader does
            # no seek index: OpenEB would decode the whole file on a thread of its own (CPU a camera does not
            # cost) and write REC.raw.tmp_index beside the recording
            cfg.build_index = False
            # OpenEB reads ahead into this many buffers (its default, 3, is under two reads of ours: the reader
            # thread would often wait for us and we for it)
            cfg.n_read_buffers = 16
            try:
                device = hal.DeviceDiscovery.open_raw_file(self.raw_file, cfg)
            except Exception as exc:
                raise MicroexpError(f"device_file {self.raw_file}: OpenEB cannot open it: {exc}") from None
        else:
            try:
                device = hal.DeviceDiscovery.open(self.serial_wanted)
            except Exception as exc:  # busy (held by another process) or a USB error
                raise DeviceUnavailable(f"{self.describe()} cannot be opened: {exc}") from None
            if device is None:
                found = list(hal.DeviceDiscovery.list())
                what = f"cameras found: {', '.join(found)}" if found else "no camera found"
                raise DeviceUnavailable(
                    f"{self.describe()} cannot be opened ({what}; a camera another process holds is not listed)"
                )
        if device is None:
            raise MicroexpError(f"{self.describe()}: OpenEB returned no device")
        self.device = device
        facilities = {name: self._facility(name) is not None for name in self.FACILITIES}
        for need in ("i_events_stream", "i_events_stream_decoder", "i_event_cd_decoder"):
            if not facilities[need]:
                raise MicroexpError(f"{self.describe()}: OpenEB gives no {need} facility: cannot stream")
        geom = self._facility("i_geometry")
        hw = self._facility("i_hw_identification")
        serial, sensor, plugin = self.serial_wanted, "", ""
        if hw is not None:
            serial = hw.get_serial() or serial
            try:
                si = hw.get_sensor_info()
                sensor = f"{si.name}" if si.name else ""
            except Exception:
                sensor = ""
            try:
                plugin = str(hw.get_system_info().get("plugin_name", ""))
            except Exception:
                plugin = ""
        if geom is None:
            raise MicroexpError(f"{self.describe()}: OpenEB gives no geometry (I_Geometry)")
        self.info = DeviceInfo(
            serial=str(serial),
            width=int(geom.get_width()),
            height=int(geom.get_height()),
            sensor=sensor,
            plugin=plugin,
            source=self.raw_file or "camera",
            facilities=facilities,
        )
        return self.info

    def _facility(self, name: str):
        getter = getattr(self.device, f"get_{name}", None)
        if getter is None:
            return None
        try:
            return getter()
        except Exception:
            return None

    # -- settings ---------------------------------------------------------------------------------------
    def bias_ranges(self) -> tuple[dict[str, tuple[int, int]], str]:
        """(name -> allowed range, where the table came from)."""
        biases = self._facility("i_ll_biases")
        if biases is None:
            return dict(IMX636_BIAS_RANGES), "the IMX636 table of OpenEB 5.1.1 (this device has no bias facility)"
        ranges = {}
        for name in biases.get_all_biases():
            lo, hi = biases.get_bias_info(name).get_bias_allowed_range()
            ranges[name] = (int(lo), int(hi))
        return ranges, "the device's bias table"

    def configure(self, s: DeviceSettings) -> list[str]:
        """Apply ``s``; return one line per setting the device has no facility for. Raises ParameterError for
        settings the device refuses (unknown bias, value out of range, ROI outside the sensor)."""
        notes: list[str] = []
        if s.biases:
            self._set_biases(s, notes)
        if s.roi is not None:
            self._set_roi(s.roi, notes)
        if s.erc_rate_mev_s > 0:
            self._set_erc(s.erc_rate_mev_s, notes)
        if s.trigger_in:
            self._set_trigger_in(notes)
        if s.trigger_out_period_us > 0:
            self._set_trigger_out(s.trigger_out_period_us, notes)
        if s.sync_mode != "standalone" or self._facility("i_camera_synchronization") is not None:
            self._set_sync_mode(s.sync_mode, notes)
        return notes

    def _set_biases(self, s: DeviceSettings, notes: list[str]) -> None:
        ranges, source = self.bias_ranges()
        check_biases(s.biases, ranges, f"bias_file {s.bias_file} (checked against {source})")
        ll = self._facility("i_ll_biases")
        if ll is None:
            notes.append(
                f"{self.describe()} has no bias facility (I_LL_Biases): bias_file {s.bias_file} checked, not applied"
            )
            return
        for name, value in s.biases.items():
            if not ll.set(name, int(value)):
                raise ParameterError(f"bias_file {s.bias_file}: the device refused {name} = {value}")

    def _set_roi(self, window: tuple[int, int, int, int], notes: list[str]) -> None:
        x, y, w, h = window
        if x + w > self.info.width or y + h > self.info.height:
            raise ParameterError(
                f"parameter roi: {x},{y},{w},{h} reaches outside the {self.info.width}x{self.info.height} sensor"
            )
        roi = self._facility("i_roi")
        if roi is None:
            notes.append(f"{self.describe()} has no ROI facility (I_ROI): roi {x},{y},{w},{h} not applied")
            return
        roi.set_mode(self.hal.I_ROI.Mode.ROI)
        roi.set_window(self.hal.I_ROI.Window(x, y, w, h))
        roi.enable(True)

    def _set_erc(self, mev_s: float, notes: list[str]) -> None:
        erc = self._facility("i_erc_module")
        if erc is None:
            notes.append(
                f"{self.describe()} has no event-rate controller (I_ErcModule): erc_rate_mev_s {mev_s:g} not applied"
            )
            return
        rate = int(round(mev_s * 1e6))
        lo, hi = int(erc.get_min_supported_cd_event_rate()), int(erc.get_max_supported_cd_event_rate())
        if not lo <= rate <= hi:
            raise ParameterError(
                f"parameter erc_rate_mev_s: {mev_s:g} is outside what the "
                f"camera supports ({lo / 1e6:g}..{hi / 1e6:g} Mev/s)"
            )
        erc.set_cd_event_rate(rate)
        erc.enable(True)

    def _set_trigger_in(self, notes: list[str]) -> None:
        tin = self._facility("i_trigger_in")
        if tin is None:
            notes.append(f"{self.describe()} has no trigger input (I_TriggerIn): trigger_in not applied")
            return
        tin.enable(self.hal.I_TriggerIn.Channel.MAIN)

    def _set_trigger_out(self, period_us: int, notes: list[str]) -> None:
        tout = self._facility("i_trigger_out")
        if tout is None:
            notes.append(
                f"{self.describe()} has no trigger output (I_TriggerOut): trigger_out_period_us {period_us} not applied"
            )
            return
        tout.set_period(int(period_us))
        tout.set_duty_cycle(0.5)
        tout.enable()

    def _set_sync_mode(self, mode: str, notes: list[str]) -> None:
        sync = self._facility("i_camera_synchronization")
        if sync is None:
            notes.append(
                f"{self.describe()} has no synchronisation facility (I_CameraSynchronization): "
                f"sync_mode {mode} not applied"
            )
        elif not getattr(sync, f"set_mode_{mode}")():
            raise ParameterError(f"parameter sync_mode: the camera refused mode {mode}")

    def data_format(self) -> str:
        """The stream's encoding, upper case without options ('EVT3', 'EVT21', ...; '' when unknown)."""
        fmt = ""
        hw = self._facility("i_hw_identification")
        if hw is not None:
            try:
                fmt = str(hw.get_current_data_encoding_format())
            except Exception:
                fmt = ""
        if not fmt and self.raw_file:
            fmt = read_raw_header(self.raw_file).format or ""
        return fmt.split(";")[0].strip().upper().replace(".", "")

    def choose_read(self, want: str) -> tuple[str, str]:
        """('raw' or 'decode', why) for the ``device_read`` parameter value ``want`` (auto, raw, decode).
        Raises ParameterError when ``raw`` is asked for and cannot be had."""
        if want not in DEVICE_READS:
            raise ParameterError(f"parameter device_read: {want!r} is not one of {', '.join(DEVICE_READS)}")
        if want == "decode":
            return "decode", "device_read=decode"
        fmt = self.data_format()
        reason = raw_reader_available()
        if reason is None and fmt not in ("EVT3", "EVT30"):
            reason = f"{self.describe()} streams {fmt or 'an unknown format'}, not EVT3"
        if reason is None:
            return "raw", f"the sensor's {fmt} words passed through"
        if want == "raw":
            raise ParameterError(f"parameter device_read: raw is not possible: {reason}")
        return "decode", f"decoded and encoded again as EVT3 ({reason})"

    # -- streaming ---------------------------------------------------------------------------------------
    def start(self, raw: bool = False) -> None:
        self._stream = self._facility("i_events_stream")
        self._raw = raw
        if raw:
            import microexp_openeb_raw

            # without copying where the binding offers it: one piece per OpenEB buffer, kept alive by its packets
            self._raw_read = getattr(microexp_openeb_raw, "read_views", microexp_openeb_raw.read)
            self._stream.start()
            return
        self._decoder = self._facility("i_events_stream_decoder")

        # the callbacks look the lists up on each call: read() swaps them for empty ones
        # (as raw bytes: numpy concatenates structured arrays field by field, bytes in one copy)
        def on_cd(a):
            if a.dtype != HAL_CD_DTYPE:
                raise MicroexpError(f"OpenEB's EventCD dtype {a.dtype} is not the expected {HAL_CD_DTYPE}")
            self._cd.append(a.view(np.uint8))

        self._facility("i_event_cd_decoder").add_event_buffer_callback(on_cd)
        trig = self._facility("i_event_ext_trigger_decoder")
        if trig is not None:  # this binding lends the decoder's memory: copy it
            trig.add_event_buffer_callback(lambda a: self._trig.append(np.array(a, copy=True)))
        self._stream.start()

    def read(self, timeout_s: float = 0.05, max_bytes: int = 4 << 20):
        """The next buffer(s): raw, a list of bytes-like pieces (OpenEB's buffers themselves with a binding that
        has ``read_views``, else one bytes object); decoded, (events, triggers); None when the stream ended."""
        if self._raw:
            got = self._raw_read(self._stream, timeout_s, max_bytes)
            if got is None:
                return None
            data, n = got
            if isinstance(data, list):  # read_views: (buffers, bytes)
                self.buffers += len(data)
                self.bytes_in += n
                return data
            self.buffers += n  # read: (bytes, buffers)
            self.bytes_in += len(data)
            return [data] if len(data) else []
        end = time.monotonic() + timeout_s
        while True:
            r = self._stream.poll_buffer()
            if r < 0:
                return None
            if r > 0:
                break
            if time.monotonic() >= end:
                return np.empty(0, EVENT_DTYPE), np.empty(0, TRIGGER_DTYPE)
            time.sleep(0.0005)
        raw = self._stream.get_latest_raw_data()
        self.buffers += 1
        self.bytes_in += int(raw.size())
        self._decoder.decode(raw)
        cd, self._cd = self._cd, []
        tr, self._trig = self._trig, []
        events = hal_events(cd[0] if len(cd) == 1 else np.concatenate(cd)) if cd else np.empty(0, EVENT_DTYPE)
        triggers = hal_triggers(np.concatenate(tr)) if tr else np.empty(0, TRIGGER_DTYPE)
        return events, triggers

    def close(self) -> None:
        stream = getattr(self, "_stream", None)
        if stream is not None:
            try:
                stream.stop()
            except Exception:
                pass
        self._stream = None
        self.device = None


def make_packetizer(read: str, info: DeviceInfo, packet_time_us: int, max_bytes: int):
    """The packetizer of a ``read`` way ('raw' or 'decode') for the opened device ``info``."""
    if read == "raw":
        return Evt3Cutter(packet_time_us, max_bytes)
    return Evt3Packetizer(info.width, info.height, packet_time_us, max_bytes)


def stream_device(
    dev: OpenEBDevice, packetizer, on_packet: Callable[[Evt3Packet], None], stop, idle_flush_s: float = 0.002
) -> str:
    """Read ``dev`` until it ends or ``stop`` is set, handing every packet to ``on_packet``; the held-back
    interval is flushed when no buffer came for ``idle_flush_s``. Returns 'stopped' or 'ended'."""
    while not stop.is_set():
        got = dev.read(idle_flush_s)
        if got is None:
            for pkt in packetizer.flush():
                on_packet(pkt)
            return "ended"
        for pkt in packetizer.feed(got):
            on_packet(pkt)
    return "stopped"
