"""Subscribes to every topic of a bag, counts arrivals and measures inter-arrival against recorded intervals.

Usage: python replay_listener.py BAG_DIR   (prints one JSON line when nothing arrived for 3 s)
"""

import json
import sys
import time

import numpy as np
import rclpy

from microexp.bags.reader import Bag
from microexp.ros.messages import msg_class
from microexp.ros.qos import LOSSLESS_QOS as RELIABLE_QOS


def main() -> int:
    bag_dir = sys.argv[1]
    with Bag(bag_dir) as bag:
        types = {t.name: t.msgtype for t in bag.topics().values() if t.messages}
        recorded = [t for _, _, t, _ in bag.messages()]
    rclpy.init()
    node = rclpy.create_node("replay_listener")
    arrivals = []
    counts = {}

    def cb(topic):
        def f(_raw):
            arrivals.append(time.perf_counter())
            counts[topic] = counts.get(topic, 0) + 1

        return f

    for topic, msgtype in types.items():
        node.create_subscription(msg_class(msgtype), topic, cb(topic), RELIABLE_QOS, raw=True)
    print("ready", flush=True)
    last = time.monotonic()
    start = time.monotonic()
    while time.monotonic() - (last if arrivals else start) < (3.0 if arrivals else 60.0):
        n = len(arrivals)
        rclpy.spin_once(node, timeout_sec=0.05)
        if len(arrivals) != n:
            last = time.monotonic()
    node.destroy_node()
    rclpy.shutdown()
    k = min(len(arrivals), len(recorded))
    err = np.abs(np.diff(np.array(arrivals[:k])) - np.diff(np.array(recorded[:k], dtype=np.float64) * 1e-9)) * 1e3
    print(
        json.dumps(
            {
                "counts": counts,
                "interval_error_p50_ms": float(np.percentile(err, 50)) if k > 1 else None,
                "interval_error_p99_ms": float(np.percentile(err, 99)) if k > 1 else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
