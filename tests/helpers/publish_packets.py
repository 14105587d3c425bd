"""Publishes N EventPackets with seeded random payloads on a topic, then exits (a separate DDS process).

Usage: python publish_packets.py TOPIC N SEED
"""

import sys
import time

import numpy as np
import rclpy
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from event_camera_msgs.msg import EventPacket


def packets(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(n):
        size = int(rng.integers(0, 200_000))
        msg = EventPacket()
        msg.header.frame_id = "evk4"
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_000 + i, int(rng.integers(0, 1_000_000_000))
        msg.height, msg.width = 720, 1280
        msg.seq = i
        msg.time_base = int(rng.integers(0, 2**63))
        msg.encoding = "evt3"
        msg.is_bigendian = False
        msg.events = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        yield msg


def main() -> int:
    topic, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rclpy.init()
    node = rclpy.create_node("packet_publisher")
    qos = QoSProfile(
        depth=n,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
        history=HistoryPolicy.KEEP_LAST,
    )
    pub = node.create_publisher(EventPacket, topic, qos)
    deadline = time.monotonic() + 20.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    for msg in packets(n, seed):
        pub.publish(msg)
    # stay until the subscriber has had time to take everything
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
