"""Composition of node classes in one process (the pip install's stand-in for launch files):
parameter files, overrides, and a multi-threaded executor spinning in the background."""
from __future__ import annotations

import threading

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter

from microexp.config import load_params_file


def overrides(node_name: str, params_files: list[str] | None = None, defaults: dict | None = None,
              **values) -> list[Parameter]:
    """Parameters of ``node_name``: ``defaults``, then ROS 2 parameter files (in order), then ``values`` on top."""
    merged: dict = dict(defaults or {})
    for f in params_files or []:
        merged.update(load_params_file(f, node_name))
    merged.update({k: v for k, v in values.items() if v is not None})
    return [Parameter(k, value=v) for k, v in merged.items()]


class Graph:
    """Nodes spun by one MultiThreadedExecutor on a background thread; ``close()`` tears everything down."""

    def __init__(self, threads: int = 6):
        if not rclpy.ok():
            rclpy.init()
        self.executor = MultiThreadedExecutor(num_threads=threads)
        self.nodes = []
        self._thread = None

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def start(self) -> "Graph":
        self._thread = threading.Thread(target=self.executor.spin, name="executor", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        if self._thread is not None:
            # a spin thread still inside rclpy's wait when the interpreter finalizes aborts the process
            self._thread.join(timeout=5.0)
        for n in reversed(self.nodes):
            try:
                n.destroy_node()
            except Exception:
                pass
        self.nodes = []
        if rclpy.ok():
            rclpy.shutdown()
