"""microexp.ros.runner.Runner: closing waits for callbacks still running on the executor's threads."""

from __future__ import annotations

import gc
import threading
import time

import pytest

pytestmark = pytest.mark.ros


def test_close_waits_for_a_running_callback_before_destroying_its_node(capfd):
    import rclpy
    from std_msgs.msg import String

    from microexp.ros.runner import Runner

    runner = Runner("multi", threads=2)
    node = rclpy.create_node("runner_close_test")
    pub = node.create_publisher(String, "runner_close_test", 10)
    entered, outcome = threading.Event(), []

    def slow():
        if entered.is_set():
            return
        entered.set()
        time.sleep(0.5)  # stimulus: a callback still running while close() is called (not a wait)
        try:
            pub.publish(String(data="late"))  # the node must still be there
            outcome.append("published")
        except Exception as exc:  # noqa: BLE001 - the outcome is the assertion
            outcome.append(repr(exc))

    node.create_timer(0.01, slow)
    runner.add(node)
    runner.start()
    assert entered.wait(10.0)
    t0 = time.monotonic()
    runner.close()
    took = time.monotonic() - t0
    gc.collect()
    err = capfd.readouterr().err
    assert outcome == ["published"], outcome
    assert took >= 0.3, f"close returned after {took:.2f} s, before the callback ended"
    assert "never retrieved" not in err and "raised as the nodes stopped" not in err, err
