"""EVK4 (Prophesee IMX636) node: a live camera through OpenEB's HAL Python bindings, or RAW file playback.

Publishes ``~/events`` (event_camera_msgs/EventPacket, encoding ``evt3``, batched by time and size: in file
mode the file's words passed through undecoded; in device mode the sensor's words passed through
(``device_read:=raw``) or the HAL's decoded events encoded again, trigger edges included
(``device_read:=decode``), see :mod:`microexp.drivers.evk4`), ``~/triggers`` (EventPacket, ``evt3``: for each
external-trigger edge a TIME_HIGH, TIME_LOW, EXT_TRIGGER word triple, so any EVT3 decoder reads it),
``~/sensor_info`` (std_msgs/String, latched: JSON with serial, geometry, sensor, source) and ``~/sync_status``.

``mode:=device`` opens the camera ``serial`` (empty = the first found), or with ``device_file:=REC.raw`` a RAW
file through OpenEB as a device: the same code path, for tests and benchmarks without a camera.
"""

from __future__ import annotations

import numpy as np

from event_camera_msgs.msg import EventPacket
from microexp.bags.cdr import event_packet_cdr
from microexp.config import Param
from microexp.errors import MicroexpError, input_file
from microexp.events.evt3_split import PIECE_WORDS, Evt3Cutter
from microexp.playback import LagMonitor, Pacer
from microexp.ros.main import run_node
from microexp.ros.nodes.sensor import SensorNode, retry_param, wait_param
from microexp.ros.qos import qos_named

PARAMS = (
    Param("mode", "file", "where events come from: a RAW file or the camera", choices=("file", "device")),
    Param("file", "", "RAW file to play back (mode=file)"),
    Param(
        "rate",
        1.0,
        "playback speed of a file (mode=file, or device_file): 1 = real time, 0 = as fast as possible",
        min=0.0,
        max=1000.0,
    ),
    Param("loop", False, "start the file again at its end"),
    Param(
        "width", 0, "sensor width when the RAW header has no geometry (0 = from the header)", min=0, max=8192, unit="px"
    ),
    Param(
        "height",
        0,
        "sensor height when the RAW header has no geometry (0 = from the header)",
        min=0,
        max=8192,
        unit="px",
    ),
    Param("packet_time_us", 1000, "a packet spans at most this much sensor time", min=50, max=1_000_000, unit="µs"),
    Param(
        "packet_max_bytes",
        1_000_000,
        "a packet holds at most this many payload bytes",
        min=64,
        max=64_000_000,
        unit="B",
    ),
    Param("frame_id", "evk4", "frame_id of the published headers (empty = the camera's serial number)"),
    Param("qos", "sensor", "QoS of ~/events: sensor (best effort) or reliable", choices=("sensor", "reliable")),
    Param("serial", "", "camera serial number (mode=device; empty = first camera found)"),
    Param("device_file", "", "mode=device: open this RAW file through OpenEB as a device instead of a camera"),
    Param(
        "device_read",
        "auto",
        "mode=device: how the camera's buffers become ~/events: raw = the sensor's EVT3 "
        "words passed through (microexp's OpenEB binding), decode = OpenEB's decoders, then microexp's EVT3 "
        "encoder, auto = raw where the binding is built and the camera streams EVT3, else decode",
        choices=("auto", "raw", "decode"),
    ),
    Param("bias_file", "", "Metavision .bias file ('VALUE % NAME' lines) applied at start (mode=device)"),
    Param("roi", "", "region of interest x,y,width,height (mode=device; empty = full sensor)"),
    Param(
        "erc_rate_mev_s", 0.0, "event-rate controller limit (mode=device; 0 = off)", min=0.0, max=1000.0, unit="Mev/s"
    ),
    Param("trigger_in", False, "enable the external trigger input (mode=device)"),
    Param("trigger_out_period_us", 0, "trigger-out period (mode=device; 0 = off)", min=0, max=10_000_000, unit="µs"),
    Param(
        "sync_mode",
        "standalone",
        "camera synchronisation for multi-camera rigs (mode=device)",
        choices=("standalone", "master", "slave"),
    ),
    Param(
        "lag_warn_ms",
        500.0,
        "mode=device: warn once and count the packets published when ~/events falls this far behind the camera "
        "(it produces more than the node and DDS carry; 0 = off)",
        min=0.0,
        max=600_000.0,
        unit="ms",
    ),
    wait_param("file playback (mode=file, or device_file)"),
    retry_param("an absent, busy or unplugged camera"),
)


class Evk4Node(SensorNode):
    """See the module docstring; parameters in :data:`PARAMS` and config/evk4_node.yaml."""

    def __init__(self, name: str = "evk4", namespace: str = "", parameter_overrides=None):
        super().__init__(name, PARAMS, namespace, parameter_overrides)
        self.pub = self.create_publisher(EventPacket, "~/events", qos_named(self.p["qos"]))
        self.trigger_pub = self.create_publisher(EventPacket, "~/triggers", qos_named("reliable"))
        self.trigger_seq = 0
        self.add_clock("evk4")
        self.packets = 0
        self.events_bytes = 0
        self.error = ""
        self.frame_id = self.p["frame_id"]
        self.add_sensor_info()
        if self.p["mode"] == "device":
            self._start_device()
            return
        if not self.p["file"]:
            raise MicroexpError(f"{self.get_name()}: parameter file: empty; mode=file needs a RAW file")
        from microexp.events.raw import raw_payload, read_raw_header

        input_file(self.p["file"], "RAW")
        self.header = read_raw_header(self.p["file"], width=self.p["width"] or None, height=self.p["height"] or None)
        if self.header.format not in ("evt3", "evt2"):
            raise MicroexpError(f"{self.p['file']}: format {self.header.format} cannot be played")
        if self.header.width is None:
            raise MicroexpError(
                f"{self.p['file']}: the header gives no sensor size; set the width and height parameters"
            )
        self._payload = raw_payload
        self.frame_id = self.p["frame_id"] or self.header.serial or "evk4"
        self._publish_info(
            {
                "serial": self.header.serial or "",
                "width": self.header.width,
                "height": self.header.height,
                "sensor": "",
                "plugin": self.header.plugin or "",
                "source": self.p["file"],
            }
        )
        self.start_source(self._play, "evk4_playback")

    # -- device mode ------------------------------------------------------------------------------------------
    def _start_device(self):
        from microexp.drivers.evk4 import openeb_available
        from microexp.drivers.evk4_settings import make_settings

        reason = openeb_available()
        if reason:
            raise MicroexpError(f"{self.get_name()}: mode=device needs OpenEB: {reason}")
        if self.p["device_file"]:
            input_file(self.p["device_file"], "RAW")
        # bad parameters and an unreadable bias file fail here, at start, not in the thread
        self.settings = make_settings(self.p)
        # a camera runs in real time; a RAW file opened as a device at its playback rate (0: flat out, no lag)
        self.lag = LagMonitor(self.p["lag_warn_ms"], self.p["rate"] if self.p["device_file"] else 1.0)
        self.header = None
        self.device_info = None
        self.start_source(self._run_device, "evk4_device")

    def _run_device(self):
        from microexp.drivers.evk4 import DeviceUnavailable, OpenEBDevice, make_packetizer, stream_device

        log = self.get_logger()
        try:
            while not self._stop.is_set():
                dev = OpenEBDevice(serial=self.p["serial"], raw_file=self.p["device_file"])
                try:
                    info = dev.open()
                except DeviceUnavailable as exc:
                    if self.retry_later(f"EVK4 {exc}; retrying in {self.p['retry_interval_s']:g} s"):
                        break
                    continue
                self.device_info = info
                self.clock_sync.est.reset()  # an opened camera starts a new sensor clock
                self.header = info  # width/height of the published packets
                self.frame_id = self.p["frame_id"] or info.serial
                for note in dev.configure(self.settings):
                    log.warning(note)
                self._publish_info(
                    {
                        "serial": info.serial,
                        "width": info.width,
                        "height": info.height,
                        "sensor": info.sensor,
                        "plugin": info.plugin,
                        "source": info.source,
                        "biases": self.settings.biases,
                    }
                )
                read, why = dev.choose_read(self.p["device_read"])
                self.device_read = read
                log.info(
                    f"EVK4 {info.serial or '(no serial)'} open: {info.width}x{info.height} {info.sensor} "
                    f"({dev.describe()}); events: {why}"
                )
                self.wait_for_subscribers()
                packetizer = make_packetizer(read, info, self.p["packet_time_us"], self.p["packet_max_bytes"])
                self.packetizer = packetizer
                pacer = Pacer(self.p["rate"] if self.p["device_file"] else 0.0, self._stop)
                self.lag.restart()

                dev.start(raw=read == "raw")
                try:
                    how = stream_device(
                        dev, packetizer, lambda pkt, pacer=pacer: self._send_live(pkt, pacer), self._stop
                    )
                finally:
                    dev.close()
                self.device_stats = {
                    "buffers": dev.buffers,
                    "bytes_in": dev.bytes_in,
                    "events": packetizer.events_in,
                    "triggers": packetizer.triggers_in,
                    "reordered": getattr(packetizer, "reordered", 0),
                    "outside": getattr(packetizer, "dropped_outside", 0),
                    "read": read,
                    **self._lag_figures(),
                }
                if self.lag.late and not self._stop.is_set():  # the final lag figures, for the manifest
                    self._publish_info({**self.sensor_info_fields, **self._lag_figures()})
                if how == "stopped":
                    break
                if self.p["device_file"]:
                    log.info(
                        f"device_file {self.p['device_file']} ended: {packetizer.events_in} events, "
                        f"{packetizer.triggers_in} triggers in {self.packets} packets"
                    )
                    if not self.p["loop"]:
                        break
                    continue
                if self.retry_later(
                    f"EVK4 {info.serial} stopped delivering data (unplugged?); reopening in "
                    f"{self.p['retry_interval_s']:g} s"
                ):
                    break
        except MicroexpError as exc:
            log.error(f"EVK4 device stopped: {exc}")
            self.error = self.playback_error = str(exc)
        except Exception as exc:
            log.error(f"EVK4 device stopped: {type(exc).__name__}: {exc}")
            self.error = self.playback_error = str(exc)
        finally:
            if self.p["device_file"] and not self._stop.is_set():
                self.drain()
            self.finished.set()

    def _send_live(self, pkt, pacer: Pacer) -> bool:
        """:meth:`_send` for a camera, measuring how far publishing falls behind it (:class:`LagMonitor`)."""
        if not self._send(pkt, pacer):
            return False
        if self.lag.update(pkt.t_last_us):
            self.get_logger().warning(
                f"~/events is {self.lag.lag_ms:.0f} ms behind the camera: it produces more events than this node "
                "and DDS carry; OpenEB holds them (memory grows) and drops what its buffers cannot hold. Lower the "
                "event rate (erc_rate_mev_s, the biases, a roi) or give the node a core of its own; late packets "
                "are counted in ~/sensor_info (late_packets, max_lag_ms)"
            )
            self._publish_info({**self.sensor_info_fields, **self._lag_figures()})
        return True

    def _lag_figures(self) -> dict:
        return {"late_packets": self.lag.late, "max_lag_ms": round(self.lag.max_ms, 1)}

    def _publish_info(self, info: dict):
        self.sensor_info_fields = info
        self.publish_sensor_info("evk4", self.pub.topic_name, info)

    def _play(self):
        self.play_file(
            self._play_words, lambda: f"playback finished: {self.packets} packets, {self.events_bytes} bytes"
        )

    def _play_words(self):
        pacer = Pacer(self.p["rate"], self._stop)
        while not self._stop.is_set():
            words = self._words()
            pacer.restart()
            self.clock_sync.est.reset()  # a loop starts the file's sensor clock again
            cutter = Evt3Cutter(self.p["packet_time_us"], self.p["packet_max_bytes"])
            for start in range(0, len(words), PIECE_WORDS):
                for pkt in cutter.add_words(words[start : start + PIECE_WORDS]):
                    if not self._send(pkt, pacer):
                        return
            for pkt in cutter.flush():
                if not self._send(pkt, pacer):
                    return
            if not self.p["loop"]:
                break

    def _send(self, pkt, pacer: Pacer) -> bool:
        """Publish one packet (and its trigger edges) when the pacer says so; false when stopping."""
        if not pacer.wait(max(pkt.t_first_us, 0)):
            return False
        self._publish(pkt.parts, pkt.t_first_us, pkt.t_last_us)
        self._publish_triggers(pkt.trigger_words)
        return True

    def _words(self) -> np.ndarray:
        """The EVT3 words to publish: the file's own (passthrough), or EVT2 re-encoded as EVT3. A payload that
        turns corrupt (reserved word types) is cut there, with a message."""
        if self.header.format == "evt2":
            from microexp.events.evt3 import Evt3Encoder
            from microexp.events.raw import read_raw

            rec = read_raw(self.p["file"], width=self.header.width, height=self.header.height)
            events = rec.events
            if len(events) and np.any(np.diff(events["t"]) < 0):
                events = events[np.argsort(events["t"], kind="stable")]
            payload, _ = Evt3Encoder(rec.width, rec.height).encode(events)
            return np.frombuffer(payload, dtype="<u2")
        raw = self._payload(self.p["file"])
        if len(raw) % 2:
            self.get_logger().error(
                f"{self.p['file']}: ends inside a word at byte {self.header.header_bytes + len(raw) - 1}; "
                "the last byte is ignored"
            )
            raw = raw[: len(raw) - 1]
        words = np.frombuffer(raw, dtype="<u2")
        bad = np.nonzero(np.isin(words >> 12, (0x1, 0x9, 0xB, 0xC, 0xD)))[0]
        if len(bad):
            offset = self.header.header_bytes + 2 * int(bad[0])
            self.playback_error = (
                f"{self.p['file']}: corrupt EVT3 data at byte {offset} (reserved word type "
                f"{int(words[bad[0]] >> 12):#x}); playback stops there"
            )
            self.get_logger().error(self.playback_error)
            words = words[: bad[0]]
        return words

    def _publish(self, parts, t_first_us: int, t_last_us: int | None = None):
        """One ~/events message of the EVT3 words in ``parts`` (pieces that follow each other), serialized here
        in one copy and handed to DDS as CDR bytes."""
        arrival = self.get_clock().now().nanoseconds
        stamp = self.clock_sync.stamp(t_first_us, arrival, t_last_us) if t_first_us >= 0 else arrival
        data = event_packet_cdr(stamp, self.frame_id, self.header.width, self.header.height, self.seq, parts)
        self.pub.publish(data)
        self.seq += 1
        self.packets += 1
        self.published[self.pub.topic_name] = self.seq
        self.events_bytes += sum(p.nbytes for p in parts)

    def _publish_triggers(self, out: np.ndarray):
        if len(out) == 0:
            return
        stamp = self.get_clock().now().nanoseconds
        data = event_packet_cdr(stamp, self.frame_id, self.header.width, self.header.height, self.trigger_seq, [out])
        self.trigger_pub.publish(data)
        self.trigger_seq += 1
        self.published[self.trigger_pub.topic_name] = self.trigger_seq


def main(args=None) -> int:
    return run_node(Evk4Node, args)
