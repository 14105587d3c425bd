"""Runs a recorder under a file-size limit (the stand-in for a full disk) and prints what happened as JSON.

Usage: python disk_full_recorder.py OUT_DIR LIMIT_BYTES
Segment 1 (1 MB) fits; segment 2 (8 MB) hits the limit; segment 3 (1 MB) fits again.
"""

import json
import resource
import signal
import sys
import time
from pathlib import Path

from rclpy.node import Node

from event_camera_msgs.msg import EventPacket
from microexp.ros.compose import overrides
from microexp.ros.nodes.recorder_node import RecorderNode
from microexp.ros.qos import LATCHED_QOS, RELIABLE_QOS
from microexp.ros.runner import Runner
from microexp_msgs.msg import SegmentMarker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: run as a script, helpers is not on the path
from helpers.wait import wait_until  # noqa: E402


def main() -> int:
    out, limit = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    graph = Runner(threads=3)
    rec = graph.add(
        RecorderNode(
            parameter_overrides=overrides(
                "recorder",
                None,
                out=out,
                subject="S09",
                topics=[
                    "/fake/events|event_camera_msgs/msg/EventPacket",
                    "/recorder/segments|microexp_msgs/msg/SegmentMarker",
                ],
            )
        )
    )
    pub_node = graph.add(Node("fake_camera"))
    pub = pub_node.create_publisher(EventPacket, "/fake/events", RELIABLE_QOS)
    markers = []
    pub_node.create_subscription(
        SegmentMarker,
        "/recorder/segments",
        lambda m: markers.append({"event": m.event, "segment": m.segment_id, "status": m.status, "message": m.message}),
        LATCHED_QOS,
    )
    graph.start()

    def matched():
        rec.discover()
        return pub.get_subscription_count() > 0

    wait_until(matched, 10, "the recorder never subscribed to /fake/events", period_s=0.05)
    seq = 0

    def send(megabytes):
        nonlocal seq
        for _ in range(megabytes * 4):
            m = EventPacket()
            m.encoding, m.width, m.height, m.seq = "evt3", 1280, 720, seq
            m.events = bytes(256 * 1024)
            pub.publish(m)
            seq += 1
            time.sleep(0.002)  # stimulus: paces the camera (a burst would only fill the DDS queue); not a wait
        # every packet of the segment reached the recorder before it stops (its writer may still refuse them)
        if not rec.wait_received({"/fake/events": seq}, 30):
            raise AssertionError(f"the recorder took fewer than the {seq} packets published")

    for au, size in (("AU2", 1), ("AU4", 8), ("AU5", 1)):
        rec.start_segment("S09", au, 1, 300.0)
        send(size)
        rec.stop_segment("kept")
    # the stop marker of the last segment came back through DDS: every marker before it did too
    wait_until(
        lambda: any(m["event"] == "stop" and m["segment"] == 3 for m in markers), 10, "no stop marker of segment 3"
    )
    summary = rec.finish()
    graph.close()
    print(
        json.dumps(
            {
                "markers": markers,
                "summary": summary,
                "segments": [
                    {k: s.get(k) for k in ("name", "au", "status", "error", "messages")} for s in rec.manifest.segments
                ],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
