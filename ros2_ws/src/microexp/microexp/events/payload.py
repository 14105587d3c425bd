"""What the payload codecs (EVT3, EVT2, libcaer) share: a byte view of a payload, the sensor-size check."""

from __future__ import annotations

import numpy as np

from microexp.errors import ParameterError


def as_uint8(payload) -> np.ndarray:
    """A flat uint8 view (no copy where possible) of bytes, bytearray, memoryview, array.array or ndarray."""
    if isinstance(payload, np.ndarray):
        arr = np.ascontiguousarray(payload).reshape(-1)
        return arr if arr.dtype == np.uint8 else arr.view(np.uint8)
    try:
        return np.frombuffer(memoryview(payload).cast("B"), dtype=np.uint8)
    except TypeError:
        try:
            return np.asarray(payload, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ParameterError(
                f"payload must be bytes-like or a sequence of uint8, not {type(payload).__name__}"
            ) from exc


def check_size(width, height, largest: int) -> tuple[int, int]:
    """(width, height) as ints, each in 1..largest; ParameterError otherwise."""
    try:
        w, h = int(width), int(height)
    except (TypeError, ValueError):
        raise ParameterError(f"width/height must be integers, not {width!r}x{height!r}") from None
    if not (0 < w <= largest and 0 < h <= largest):
        raise ParameterError(f"sensor size {w}x{h} is outside 1..{largest} (width, height)")
    return w, h
