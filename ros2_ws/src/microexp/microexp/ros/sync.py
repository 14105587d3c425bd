"""Per-sensor clock mapping in a node: every stamp goes through the sensor-to-ROS estimate of
:mod:`microexp.timesync`, and ``~/sync_status`` (microexp_msgs/SyncStatus) is published at 1 Hz."""

from __future__ import annotations

from microexp.ros.qos import RELIABLE_QOS
from microexp_msgs.msg import SensorSync, SyncStatus


def _estimator():
    from microexp.timesync.estimator import ClockEstimator

    return ClockEstimator()


def fill_sensor_sync(msg: SensorSync, name: str, est, now_msg) -> SensorSync:
    msg.sensor = name
    msg.offset_ms = float(est.offset_ms)
    msg.drift_ppm = float(est.drift_ppm)
    msg.jitter_us = float(est.jitter_us)
    msg.samples = int(est.samples)
    msg.outliers = int(est.outliers)
    msg.locked = bool(est.locked)
    msg.last_update = now_msg
    return msg


class SensorClock:
    """Clock estimate of one sensor, owned by its node."""

    def __init__(self, node, sensor: str, period_s: float = 1.0, topic: str = "~/sync_status"):
        self.node = node
        self.sensor = sensor
        self.est = _estimator()
        self.pub = node.create_publisher(SyncStatus, topic, RELIABLE_QOS)
        self.timer = node.create_timer(period_s, self.publish_status)

    def stamp(self, sensor_us: int, arrival_ns: int, ready_us: int | None = None) -> int:
        """ROS time (ns) of sensor time ``sensor_us``; the arrival itself until the estimate is locked.

        The estimator learns from ``(ready_us, arrival_ns)``: ``ready_us`` is the sensor time at which the
        data was complete (the last event of a packet, the end of a frame's exposure) — data cannot arrive
        before it exists, so pairing the arrival with the first event would bias the offset late by up to
        a packet's span."""
        self.est.update(int(sensor_us if ready_us is None else ready_us), int(arrival_ns))
        return int(self.est.to_ros_ns(int(sensor_us))) if self.est.locked else int(arrival_ns)

    def publish_status(self) -> None:
        try:
            self._publish_status()
        except Exception as exc:  # a diagnostic must never take the node's executor down
            self.node.get_logger().error(f"sync status of {self.sensor} failed: {exc!r}", throttle_duration_sec=10.0)

    def _publish_status(self) -> None:
        now = self.node.get_clock().now().to_msg()
        msg = SyncStatus()
        msg.header.stamp = now
        msg.sensors = [fill_sensor_sync(SensorSync(), self.sensor, self.est, now)]
        msg.frame_pair_median_ms = -1.0
        msg.frame_pairs = 0
        self.pub.publish(msg)
