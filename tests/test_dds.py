"""Real DDS between two processes: EventPackets published by one process arrive bit-exact in another."""

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")
from helpers.publish_packets import packets  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from event_camera_msgs.msg import EventPacket  # noqa: E402

pytestmark = pytest.mark.ros


def digest(msg) -> str:
    """Hash of every field's value. (Not of serialize_message's bytes: Fast CDR leaves its alignment padding
    bytes uninitialised, so two serialisations of one message can differ in padding only.)"""
    h = hashlib.sha256()
    for part in (
        msg.header.stamp.sec,
        msg.header.stamp.nanosec,
        msg.header.frame_id,
        msg.height,
        msg.width,
        msg.seq,
        msg.time_base,
        msg.encoding,
        msg.is_bigendian,
    ):
        h.update(repr(part).encode())
    h.update(bytes(msg.events))
    return h.hexdigest()


def test_eventpacket_crosses_processes_bit_exact():
    n, seed, topic = 12, 1234, "/dds_test/events"
    expected = [digest(m) for m in packets(n, seed)]
    rclpy.init()
    try:
        node = rclpy.create_node("packet_subscriber")
        got = []
        qos = QoSProfile(
            depth=n,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
            history=HistoryPolicy.KEEP_LAST,
        )
        node.create_subscription(EventPacket, topic, lambda m: got.append(m), qos)
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "helpers" / "publish_packets.py"), topic, str(n), str(seed)]
        )
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        proc.wait(timeout=30)
        assert proc.returncode == 0
        assert [m.seq for m in got] == list(range(n))
        assert [digest(m) for m in got] == expected
        assert sum(len(m.events) for m in got) > 0
        node.destroy_node()
    finally:
        rclpy.shutdown()


def test_interface_fields_match_the_ecosystem():
    """Field names and types of EventPacket are exactly those of ros-event-camera/event_camera_msgs."""
    fields = EventPacket.get_fields_and_field_types()
    assert fields == {
        "header": "std_msgs/Header",
        "height": "uint32",
        "width": "uint32",
        "seq": "uint64",
        "time_base": "uint64",
        "encoding": "string",
        "is_bigendian": "boolean",
        "events": "sequence<uint8>",
    }
