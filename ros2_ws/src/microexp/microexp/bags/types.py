"""Message definitions for rosbags: the standard ROS 2 Jazzy types plus this workspace's interfaces.

The .msg texts are read from where they live: the workspace sources next to this package (pip install)
or the installed ``share/<pkg>/msg`` folders of every prefix on AMENT_PREFIX_PATH (colcon/Docker).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from microexp.errors import MicroexpError

OWN_PACKAGES = ("event_camera_msgs", "microexp_msgs")


def _msg_dirs(package: str) -> list[Path]:
    here = Path(__file__).resolve()
    candidates = [here.parents[3] / package / "msg"]  # ros2_ws/src/<package>/msg
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / package / "msg")
    return [c for c in candidates if c.is_dir()]


def own_message_definitions() -> dict[str, str]:
    """``{"pkg/msg/Name": msg text}`` for every message of this workspace's interface packages."""
    defs: dict[str, str] = {}
    for package in OWN_PACKAGES:
        dirs = _msg_dirs(package)
        if not dirs:
            raise MicroexpError(
                f"message definitions of {package} not found (looked in the workspace sources "
                "and AMENT_PREFIX_PATH); is the workspace built (`make setup`)?"
            )
        for msg in sorted(dirs[0].glob("*.msg")):
            defs[f"{package}/msg/{msg.stem}"] = msg.read_text()
    return defs


@functools.lru_cache(maxsize=1)
def typestore():
    """A rosbags typestore of ROS 2 Jazzy with event_camera_msgs and microexp_msgs registered."""
    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for name, text in own_message_definitions().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store
