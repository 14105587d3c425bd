"""Sensor-to-ROS clock synchronisation (no rclpy): :class:`ClockEstimator` maps each sensor's µs counter
onto ROS time from (sensor stamp, arrival) pairs; :func:`pair_streams` / :class:`ApproximatePairer` pair
frame streams of different rates by stamp."""

from microexp.timesync.estimator import ClockEstimator, envelope_line, lower_hull
from microexp.timesync.pairing import ApproximatePairer, Pair, PairingResult, pair_streams

__all__ = [
    "ClockEstimator",
    "envelope_line",
    "lower_hull",
    "ApproximatePairer",
    "Pair",
    "PairingResult",
    "pair_streams",
]
