"""List the ROS 2 nodes this machine's graph shows and say whether one matches a pattern (docker/healthcheck.sh).

    python3 health_probe.py REGEX [SPIN_SECONDS]

Prints one line and exits 0 when a node other than this probe matches the extended regular expression REGEX,
1 otherwise. Uses rclpy only, so it runs the same on the apt and the pip routes of the image (the pip route has no
ros2 command line).
"""

import re
import sys
import time


def main() -> int:
    pattern = re.compile(sys.argv[1] if len(sys.argv) > 1 else ".")
    spin_s = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    import rclpy

    rclpy.init(args=["--ros-args", "--log-level", "error"])
    node = rclpy.create_node(f"microexp_health_probe_{int(time.time() * 1000) % 100000}")
    try:
        deadline = time.monotonic() + spin_s
        names: list[str] = []
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.2)
            names = sorted(
                {
                    (ns.rstrip("/") + "/" + name)
                    for name, ns in node.get_node_names_and_namespaces()
                    if not name.startswith("microexp_health_probe_")
                }
            )
            if any(pattern.search(n) for n in names):
                break
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    matched = [n for n in names if pattern.search(n)]
    if matched:
        print(f"healthy: node {matched[0]}")
        return 0
    print(f"unhealthy: no node matches /{pattern.pattern}/; nodes seen: {' '.join(names) or 'none'}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
