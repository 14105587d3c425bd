"""DAVIS346 node: a live camera through dv-processing, or AEDAT4 playback (real time, a rate factor, loop).

Publishes ``~/events`` (EventPacket; ``libcaer`` like libcaer_driver by default, or ``libcaer_cmp`` /
``evt3``: all decodable by event_camera_codecs), batched by time and size; ``~/image_raw`` (mono8 APS
frames); ``~/imu`` (sensor_msgs/Imu: m/s², rad/s); ``~/triggers`` (EventPacket ``evt3``: a TIME_HIGH, TIME_LOW,
EXT_TRIGGER word triple per trigger, sensor time modulo 2^24 µs; the header stamp is the first trigger's time
on the ROS clock); ``~/camera_info`` when a calibration file is given; ``~/sync_status``.

``mode:=device`` drives the camera through dv-processing 2's ``dv.io.camera.DAVIS`` (see
:mod:`microexp.drivers.davis`); a method it lacks is an error at start.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml
from sensor_msgs.msg import CameraInfo, Image, Imu

from event_camera_msgs.msg import EventPacket
from microexp.config import Param
from microexp.errors import MicroexpError, input_file
from microexp.events.codecs import make_encoder
from microexp.events.packets import cut_packets
from microexp.playback import Pacer
from microexp.ros.images import to_msg
from microexp.ros.main import run_node
from microexp.ros.messages import event_packet
from microexp.ros.nodes.sensor import SensorNode, retry_param, wait_param
from microexp.ros.qos import qos_named

G = 9.80665

PARAMS = (
    Param("mode", "file", "where data comes from: an AEDAT4 file or the camera", choices=("file", "device")),
    Param("file", "", "AEDAT4 file to play back (mode=file)"),
    Param("rate", 1.0, "playback speed: 1 = real time, 0 = as fast as possible", min=0.0, max=1000.0),
    Param("loop", False, "start the file again at its end"),
    Param("encoding", "libcaer", "payload encoding of ~/events", choices=("libcaer", "libcaer_cmp", "evt3")),
    Param("packet_time_us", 1000, "a packet spans at most this much sensor time", min=50, max=1_000_000, unit="µs"),
    Param("packet_max_events", 100_000, "a packet holds at most this many events", min=1, max=10_000_000),
    Param("frame_id", "davis346", "frame_id of the published headers"),
    Param("qos", "sensor", "QoS of the topics: sensor (best effort) or reliable", choices=("sensor", "reliable")),
    Param("calibration_file", "", "camera calibration YAML (ROS camera_info format); empty = no ~/camera_info"),
    Param("serial", "", "camera serial number (mode=device; empty = first DAVIS found)"),
    Param("frame_interval_ms", 25.0, "APS frame interval (mode=device)", min=1.0, max=1000.0, unit="ms"),
    Param("exposure_us", 0, "APS exposure (mode=device; 0 = auto exposure)", min=0, max=1_000_000, unit="µs"),
    Param("noise_filter", True, "background-activity noise filter of the camera, 2 ms (mode=device)"),
    Param(
        "bias_preset",
        "",
        "DAVIS bias file ('NAME COARSE FINE' lines) applied at start (mode=device; empty = camera defaults)",
    ),
    Param(
        "trigger_in", True, "detect rising and falling edges on the SIGNAL_IN line, publish ~/triggers (mode=device)"
    ),
    wait_param(),
    retry_param(),
)


def _camera_info(path: str, frame_id: str) -> CameraInfo:
    try:
        doc = yaml.safe_load(Path(path).read_text())
        info = CameraInfo()
        info.header.frame_id = frame_id
        info.width, info.height = int(doc["image_width"]), int(doc["image_height"])
        info.distortion_model = str(doc.get("distortion_model", "plumb_bob"))
        info.k = [float(v) for v in doc["camera_matrix"]["data"]]
        info.d = [float(v) for v in doc["distortion_coefficients"]["data"]]
        info.r = [float(v) for v in doc.get("rectification_matrix", {}).get("data", [1, 0, 0, 0, 1, 0, 0, 0, 1])]
        info.p = [float(v) for v in doc["projection_matrix"]["data"]]
        return info
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise MicroexpError(f"calibration_file {path}: not a ROS camera_info YAML ({exc})") from None


class Davis346Node(SensorNode):
    def __init__(self, name: str = "davis346", namespace: str = "", parameter_overrides=None, camera_factory=None):
        """``camera_factory(serial)`` opens the camera (default: ``dv.io.camera.DAVIS``); tests replace it."""
        super().__init__(name, PARAMS, namespace, parameter_overrides)
        qos = qos_named(self.p["qos"])
        self.event_pub = self.create_publisher(EventPacket, "~/events", qos)
        self.image_pub = self.create_publisher(Image, "~/image_raw", qos_named(self.p["qos"], "image"))
        self.imu_pub = self.create_publisher(Imu, "~/imu", qos)
        self.trigger_pub = self.create_publisher(EventPacket, "~/triggers", qos_named("reliable"))
        self.trigger_seq = 0
        self.info_pub = None
        self.camera_info = None
        if self.p["calibration_file"]:
            self.camera_info = _camera_info(self.p["calibration_file"], self.p["frame_id"])
            self.info_pub = self.create_publisher(CameraInfo, "~/camera_info", qos)
        self.add_clock("davis346")
        self.events_published = 0
        if self.p["mode"] == "file":
            if not self.p["file"]:
                raise MicroexpError(f"{self.get_name()}: parameter file: empty; mode=file needs an AEDAT4 file")
            from microexp.events.aedat4 import check_aedat4

            check_aedat4(input_file(self.p["file"], "AEDAT4"))  # a clear error at start for a file that is not AEDAT4
            target = self._play_file
        else:
            from microexp.drivers.davis import bias_names, davis_class, parse_davis_bias_file

            self.davis_cls = davis_class()  # a method the device path calls and dv-processing lacks: error here
            self.biases = (
                parse_davis_bias_file(self.p["bias_preset"], bias_names(self.davis_cls))
                if self.p["bias_preset"]
                else []
            )
            self.camera_factory = camera_factory or (
                lambda serial: self.davis_cls(serial) if serial else self.davis_cls()
            )
            target = self._run_device
        self.start_source(target, "davis346")

    # -- sources ------------------------------------------------------------------------------------------
    def _play_file(self) -> None:
        self.play_file(
            self._play_items, lambda: f"playback finished: {self.seq} event packets, {self.events_published} events"
        )

    def _play_items(self) -> None:
        from microexp.events.aedat4 import iter_aedat4

        pacer = Pacer(self.p["rate"], self._stop)
        while not self._stop.is_set():
            pacer.restart()
            self.encoder = None
            for item in iter_aedat4(self.p["file"]):
                if not pacer.wait(item.t):
                    return
                self._dispatch(item.kind, item.data)
            if not self.p["loop"]:
                break

    def _run_device(self) -> None:
        from microexp.drivers.davis import configure, open_failure, read_loop

        log = self.get_logger()
        self.wait_for_subscribers()
        try:
            while not self._stop.is_set():
                try:
                    cam = self.camera_factory(self.p["serial"])
                except Exception as exc:  # absent, unplugged, or busy
                    if self.retry_later(
                        f"DAVIS346 {self.p['serial'] or '(any)'} cannot be opened ({open_failure(exc)}); "
                        f"retrying in {self.p['retry_interval_s']:g} s"
                    ):
                        break
                    continue
                self.clock_sync.est.reset()  # an opened camera starts a new sensor clock
                done = configure(cam, self.davis_cls, self.p, self.biases)
                log.info(f"DAVIS346 {cam.getSerialNumber()} open: {'; '.join(done)}")
                self.encoder = None
                if read_loop(cam, self._dispatch, self._stop) == "stopped":
                    break
                del cam
                if self.retry_later(
                    f"DAVIS346 stopped delivering data (unplugged?); reopening in {self.p['retry_interval_s']:g} s"
                ):
                    break
        except Exception as exc:  # a camera refusing a setting: one line, the node stays up without data
            log.error(f"DAVIS346 device stopped: {type(exc).__name__}: {exc}")
        finally:
            self.finished.set()

    # -- publishing ------------------------------------------------------------------------------------------
    def _dispatch(self, kind: str, data) -> None:
        if kind == "events":
            self._publish_events(data)
        elif kind == "frame":
            self._publish_frame(data)
        elif kind == "imu":
            self._publish_imu(data)
        elif kind == "triggers":
            self._publish_triggers(data)

    def _stamp(self, sensor_us: int, ready_us: int | None = None):
        return self.stamp(self.clock_sync, sensor_us, ready_us)

    def _publish_events(self, events: np.ndarray) -> None:
        if len(events) == 0:
            return
        if getattr(self, "encoder", None) is None:
            self.encoder = make_encoder(self.p["encoding"], 346, 260)
        # cut at packet_time_us boundaries of sensor time and at packet_max_events
        for chunk in cut_packets(events, self.p["packet_time_us"], self.p["packet_max_events"]):
            payload, time_base = self.encoder.encode(chunk)
            stamp = self._stamp(chunk["t"][0], int(chunk["t"][-1]))
            msg = event_packet(stamp, self.p["frame_id"], 346, 260, self.seq, payload, self.p["encoding"], time_base)
            self.event_pub.publish(msg)
            self.seq += 1
            self.events_published += len(chunk)
            self.count(self.event_pub)

    def _publish_frame(self, frame) -> None:
        image = frame.image
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        msg = to_msg(image, "mono8" if image.ndim == 2 else "bgr8")
        msg.header.frame_id = self.p["frame_id"]
        msg.header.stamp.sec, msg.header.stamp.nanosec = self._stamp(frame.t, frame.t + frame.exposure_us)
        self.image_pub.publish(msg)
        self.count(self.image_pub)
        if self.info_pub is not None:
            self.camera_info.header.stamp = msg.header.stamp
            self.info_pub.publish(self.camera_info)
            self.count(self.info_pub)

    def _publish_imu(self, imu: np.ndarray) -> None:
        for s in imu:
            msg = Imu()
            msg.header.frame_id = self.p["frame_id"]
            msg.header.stamp.sec, msg.header.stamp.nanosec = self._stamp(s["t"])
            msg.orientation_covariance[0] = -1.0  # no orientation estimate
            msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = (
                float(s["ax"]) * G,
                float(s["ay"]) * G,
                float(s["az"]) * G,
            )
            d2r = math.pi / 180.0
            msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = (
                float(s["gx"]) * d2r,
                float(s["gy"]) * d2r,
                float(s["gz"]) * d2r,
            )
            self.imu_pub.publish(msg)
            self.count(self.imu_pub)

    def _publish_triggers(self, triggers: np.ndarray) -> None:
        if len(triggers) == 0:
            return
        from microexp.events.evt3_split import trigger_triples

        stamp = self._stamp(int(triggers["t"][0]))
        msg = event_packet(stamp, self.p["frame_id"], 346, 260, self.trigger_seq, trigger_triples(triggers).tobytes())
        self.trigger_pub.publish(msg)
        self.trigger_seq += 1
        self.count(self.trigger_pub)


def main(args=None) -> int:
    return run_node(Davis346Node, args)
