"""The start and end of a stream: waiting for subscribers before the first message, and for their
acknowledgements after the last."""

from __future__ import annotations


def wait_for_subscribers(node, stop, param: str = "wait_for_subscribers_s") -> None:
    """Block until every publisher of ``node`` has a subscriber, at most ``node.p[param]`` seconds (file
    playback, also of a RAW file opened as a device, so that a counting or recording subscriber sees the first
    message too)."""
    import time

    limit = node.p.get(param, 0.0) if hasattr(node, "p") else 0.0
    params = getattr(node, "p", {})
    if params.get("mode", "file") != "file" and not params.get("device_file"):
        return  # a live camera does not wait: its data exists whether or not anyone listens
    end = time.monotonic() + limit
    pubs = [p for p in node.publishers if not p.topic_name.endswith(("/rosout", "/parameter_events"))]
    while limit and time.monotonic() < end and not stop.is_set():
        if all(p.get_subscription_count() > 0 for p in pubs):
            stop.wait(0.5)  # discovery is not symmetric: let the subscriber match us back
            return
        stop.wait(0.02)


def data_publishers(node) -> list:
    """The node's publishers other than rosout and parameter events."""
    return [p for p in node.publishers if not p.topic_name.endswith(("/rosout", "/parameter_events"))]


def wait_acked(pubs, timeout_s: float, stop=None) -> list[str]:
    """Wait until every reliable subscriber of each publisher in ``pubs`` has acknowledged everything published,
    at most ``timeout_s`` (or until ``stop``, a threading.Event, is set); returns the topics still waiting
    (empty: all acknowledged).

    A reliable writer keeps unacknowledged messages in its history and loses them when it is destroyed: a
    subscriber that lags (a loaded machine, a recorder on a slow disk) would miss the end of a stream. The wait
    polls in short slices: rclpy holds the GIL inside ``wait_for_all_acked``, and one long call freezes every
    other thread of the process for as long as it waits."""
    import time

    from rclpy.duration import Duration

    slice_ = Duration(nanoseconds=1_000_000)
    end = time.monotonic() + timeout_s
    left = list(pubs)
    while left:
        try:
            left = [p for p in left if not p.wait_for_all_acked(slice_)]
        except Exception:  # noqa: BLE001 - rclpy is shutting down: nothing left to wait for
            return []
        if not left or time.monotonic() >= end or (stop is not None and stop.is_set()):
            break
        time.sleep(0.005)
    return [p.topic_name for p in left]
