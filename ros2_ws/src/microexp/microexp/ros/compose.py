"""Composition of node classes in one process (the pip install's stand-in for launch files): the parameters
of a node from parameter files and overrides. :class:`microexp.ros.runner.Runner` spins the composed nodes."""

from __future__ import annotations

from rclpy.parameter import Parameter

from microexp.config import load_params_file


def overrides(
    node_name: str, params_files: list[str] | None = None, defaults: dict | None = None, **values
) -> list[Parameter]:
    """Parameters of ``node_name``: ``defaults``, then ROS 2 parameter files (in order), then ``values`` on top."""
    merged: dict = dict(defaults or {})
    for f in params_files or []:
        merged.update(load_params_file(f, node_name))
    merged.update({k: v for k, v in values.items() if v is not None})
    return [Parameter(k, value=v) for k, v in merged.items()]
