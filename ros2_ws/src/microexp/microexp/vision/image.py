"""sensor_msgs/Image <-> numpy, the conversion cv_bridge does, for installs without cv_bridge (pip); :func:`to_rgb`
for the RGB images a face detector takes."""

from __future__ import annotations

import numpy as np

from microexp.errors import FormatError, ParameterError

# encoding -> (channels, numpy dtype)
ENCODINGS = {
    "mono8": (1, np.uint8),
    "mono16": (1, np.uint16),
    "bgr8": (3, np.uint8),
    "rgb8": (3, np.uint8),
    "bgra8": (4, np.uint8),
    "rgba8": (4, np.uint8),
    "8UC1": (1, np.uint8),
    "8UC3": (3, np.uint8),
}


def image_fields(array: np.ndarray, encoding: str) -> dict:
    """The Image fields (height, width, encoding, is_bigendian, step, data) of an HxW or HxWxC array."""
    if encoding not in ENCODINGS:
        raise ParameterError(f"image encoding {encoding!r} is not supported (known: {', '.join(ENCODINGS)})")
    channels, dtype = ENCODINGS[encoding]
    a = np.ascontiguousarray(array, dtype=dtype)
    if (a.ndim == 2 and channels != 1) or (a.ndim == 3 and a.shape[2] != channels) or a.ndim not in (2, 3):
        raise ParameterError(f"image of shape {array.shape} does not fit encoding {encoding!r} ({channels} channels)")
    h, w = a.shape[:2]
    return {
        "height": h,
        "width": w,
        "encoding": encoding,
        "is_bigendian": False,
        "step": w * channels * a.dtype.itemsize,
        "data": a.tobytes(),
    }


def fill_image(msg, array: np.ndarray, encoding: str):
    """Fill a sensor_msgs/Image ``msg`` (rclpy or rosbags object) from ``array``; returns ``msg``."""
    for k, v in image_fields(array, encoding).items():
        setattr(msg, k, v)
    return msg


def image_array(msg) -> np.ndarray:
    """The numpy view of a sensor_msgs/Image (rclpy or rosbags), HxW or HxWxC."""
    enc = str(msg.encoding)
    if enc not in ENCODINGS:
        raise FormatError(None, f"sensor_msgs/Image encoding {enc!r} is not supported")
    channels, dtype = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    buf = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, dtype=np.uint8)
    if len(buf) < h * step:
        raise FormatError(None, f"sensor_msgs/Image data has {len(buf)} bytes, {h}x{step} expected")
    rows = buf[: h * step].reshape(h, step)[:, : w * channels * np.dtype(dtype).itemsize]
    a = rows.copy().view(dtype).reshape((h, w) if channels == 1 else (h, w, channels))
    return a


def to_rgb(image: np.ndarray, encoding: str = "rgb8") -> np.ndarray:
    """An HxWx3 uint8 RGB copy of an APS or webcam image (mono8/mono16/bgr8/rgb8/bgra8/rgba8, or HxW)."""
    a = np.asarray(image)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 1):
        a = a.reshape(a.shape[0], a.shape[1])
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ParameterError(f"image of shape {a.shape} is neither grey nor colour")
    if encoding.startswith("bgr"):
        return np.ascontiguousarray(a[:, :, 2::-1])
    return np.ascontiguousarray(a[:, :, :3])
