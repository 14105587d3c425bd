"""The QoS profiles of microexp's topics, and the named profiles of the nodes' ``qos`` parameters."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from microexp.errors import ParameterError

# Sensor streams: best effort, shallow, never blocks the publisher (the ecosystem's sensor-data QoS).
SENSOR_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
# Streams that must not lose a message between processes on one host (recording, tests, labels).
RELIABLE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1000,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
# History depth of a reliable sensor stream per kind: how far a subscriber (the recorder) may fall behind
# before the publisher overwrites what it has not acknowledged. Events and IMU: 10 s of 1 kHz packets;
# images: 10 s at 30 fps (a 1080p frame is 6 MB: depth is memory when a subscriber stalls).
STREAM_DEPTH = {"events": 10000, "imu": 10000, "image": 300, "other": 1000}
# Intake of a recorder or counter: everything the publisher sends is kept until taken (reliable: KEEP_ALL,
# the publisher waits when the reader's resource limits are reached; best effort: a deep KEEP_LAST).
INTAKE_RELIABLE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
)
INTAKE_BEST_EFFORT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10000,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
# Replay and benchmarks: nothing may be lost, a slow reader slows the writer down instead (KEEP_ALL).
LOSSLESS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
)
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


def qos_named(name: str, kind: str = "events") -> QoSProfile:
    """'sensor' (best effort, shallow) or 'reliable' (history depth by stream ``kind``: :data:`STREAM_DEPTH`)."""
    if name == "sensor":
        return SENSOR_QOS
    if name == "reliable":
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=STREAM_DEPTH.get(kind, STREAM_DEPTH["other"]),
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
        )
    raise ParameterError(f"parameter qos: {name!r} is not one of 'sensor', 'reliable'")
