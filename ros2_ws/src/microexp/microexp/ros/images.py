"""Image conversion for nodes: cv_bridge where the ROS install has it (Docker), else the core's equivalent."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

from microexp.vision.image import fill_image, image_array

try:  # present in full ROS installs, absent from the pip install
    from cv_bridge import CvBridge

    _BRIDGE = CvBridge()
except Exception:  # ImportError, or the PyPI ROS 1 port failing under numpy 2
    _BRIDGE = None

BACKEND = "cv_bridge" if _BRIDGE is not None else "microexp.vision.image"


def _disable_bridge(exc: Exception) -> None:
    """cv_bridge compiled against numpy 1 can import yet fail on numpy 2 arrays: fall back for good."""
    global _BRIDGE, BACKEND
    _BRIDGE, BACKEND = None, f"microexp.vision.image (cv_bridge failed: {exc})"


def to_msg(array: np.ndarray, encoding: str) -> Image:
    if _BRIDGE is not None:
        try:
            return _BRIDGE.cv2_to_imgmsg(np.ascontiguousarray(array), encoding=encoding)
        except Exception as exc:  # noqa: BLE001
            _disable_bridge(exc)
    return fill_image(Image(), array, encoding)


def from_msg(msg: Image) -> np.ndarray:
    if _BRIDGE is not None:
        try:
            return _BRIDGE.imgmsg_to_cv2(msg)
        except Exception as exc:  # noqa: BLE001
            _disable_bridge(exc)
    return image_array(msg)
