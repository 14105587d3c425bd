"""Webcam node: OpenCV capture from a device (index or path) or a video file.

Publishes ``~/image_raw`` (sensor_msgs/Image, bgr8) stamped at capture time (through the clock estimate of
the capture timestamps), ``~/preview/image_raw`` (downscaled) and ``~/sync_status``.
"""

from __future__ import annotations

import cv2
from sensor_msgs.msg import Image

from microexp.config import Param
from microexp.errors import MicroexpError, input_file
from microexp.playback import Pacer
from microexp.ros.images import to_msg
from microexp.ros.main import run_node
from microexp.ros.nodes.sensor import SensorNode, retry_param, wait_param
from microexp.ros.qos import qos_named

PARAMS = (
    Param("mode", "device", "capture from a camera or play a video file", choices=("device", "file")),
    Param("device", "0", "camera index or device path (mode=device)"),
    Param("file", "", "video file to play (mode=file)"),
    Param("width", 1920, "requested capture width", min=16, max=7680, unit="px"),
    Param("height", 1080, "requested capture height", min=16, max=4320, unit="px"),
    Param("fps", 60.0, "requested frame rate", min=1.0, max=1000.0, unit="Hz"),
    Param("fourcc", "MJPG", "requested pixel format (four characters)"),
    Param("exposure", -1.0, "manual exposure in the driver's units (-1 = automatic)"),
    Param("preview_width", 480, "width of ~/preview/image_raw (0 = no preview)", min=0, max=7680, unit="px"),
    Param("rate", 1.0, "file playback speed (1 = real time, 0 = as fast as possible)", min=0.0, max=1000.0),
    Param("loop", False, "play the file again at its end"),
    Param("frame_id", "webcam", "frame_id of the published headers"),
    Param("qos", "sensor", "QoS of the image topics: sensor (best effort) or reliable", choices=("sensor", "reliable")),
    wait_param(),
    retry_param(),
)


class WebcamNode(SensorNode):
    def __init__(self, name: str = "webcam", namespace: str = "", parameter_overrides=None):
        super().__init__(name, PARAMS, namespace, parameter_overrides)
        if len(self.p["fourcc"]) != 4:
            raise MicroexpError(f"{self.get_name()}: parameter fourcc: {self.p['fourcc']!r} is not four characters")
        if self.p["mode"] == "file" and not self.p["file"]:
            raise MicroexpError(f"{self.get_name()}: parameter file: empty; mode=file needs a video file")
        if self.p["mode"] == "file":
            input_file(self.p["file"], "video")
        qos = qos_named(self.p["qos"], "image")
        self.pub = self.create_publisher(Image, "~/image_raw", qos)
        self.preview_pub = self.create_publisher(Image, "~/preview/image_raw", qos) if self.p["preview_width"] else None
        self.add_clock("webcam")
        self.frames = 0
        self.start_source(self._run, "webcam_capture")

    def _open(self):
        if self.p["mode"] == "file":
            cap = cv2.VideoCapture(self.p["file"])
            if not cap.isOpened():
                raise MicroexpError(f"{self.p['file']}: OpenCV cannot open this video file")
            return cap
        dev = self.p["device"]
        cap = cv2.VideoCapture(int(dev) if dev.isdigit() else dev)
        if not cap.isOpened():
            return None
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.p["fourcc"]))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.p["width"])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.p["height"])
        cap.set(cv2.CAP_PROP_FPS, self.p["fps"])
        if self.p["exposure"] >= 0:
            cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1)
            cap.set(cv2.CAP_PROP_EXPOSURE, self.p["exposure"])
        return cap

    def _run(self):
        self.wait_for_subscribers()
        try:
            while not self._stop.is_set():
                try:
                    cap = self._open()
                except MicroexpError as exc:
                    self.playback_error = str(exc)
                    self.get_logger().error(self.playback_error)
                    return
                if cap is None:
                    self.retry_later(
                        f"camera {self.p['device']!r} is absent or busy; retrying in {self.p['retry_interval_s']} s"
                    )
                    continue
                self._capture(cap)
                cap.release()
                if self.p["mode"] == "file" and self.frames == 0 and not self._stop.is_set():
                    self.playback_error = f"{self.p['file']}: OpenCV read no frame from this video file"
                    self.get_logger().error(self.playback_error)
                    return
                if self.p["mode"] == "file" and not self.p["loop"]:
                    return
        finally:
            self.get_logger().info(f"capture finished: {self.frames} frames")
            self.finished.set()

    def _capture(self, cap):
        pacer = Pacer(self.p["rate"] if self.p["mode"] == "file" else 0.0, self._stop)
        while not self._stop.is_set():
            ok, frame = cap.read()
            arrival = self.get_clock().now().nanoseconds
            if not ok or frame is None:
                if self.p["mode"] == "device":
                    self.get_logger().error("camera stopped delivering frames; reopening")
                return
            pos_us = int(cap.get(cv2.CAP_PROP_POS_MSEC) * 1000)
            if self.p["mode"] == "file" and not pacer.wait(pos_us):
                return
            stamp = self.clock_sync.stamp(pos_us, arrival) if pos_us > 0 else arrival
            self._publish(frame, stamp)

    def _publish(self, frame, stamp_ns: int):
        msg = to_msg(frame, "bgr8")
        msg.header.frame_id = self.p["frame_id"]
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        self.pub.publish(msg)
        if self.preview_pub is not None:
            h, w = frame.shape[:2]
            pw = self.p["preview_width"]
            small = cv2.resize(frame, (pw, max(1, round(h * pw / w))), interpolation=cv2.INTER_AREA)
            pmsg = to_msg(small, "bgr8")
            pmsg.header = msg.header
            self.preview_pub.publish(pmsg)
        self.frames += 1
        self.published[self.pub.topic_name] = self.frames
        if self.preview_pub is not None:
            self.published[self.preview_pub.topic_name] = self.frames


def main(args=None) -> int:
    return run_node(WebcamNode, args)
