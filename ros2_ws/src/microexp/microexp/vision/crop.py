"""Face crops of event frames: the one crop-and-resize used by the offline dataset builder and the live node.

Boxes are ``(x0, y0, x1, y1)`` in pixels of the frame they apply to (x right, y down, origin at the top-left
corner of the top-left pixel; ``x1``/``y1`` exclusive), as floats. :func:`crop_resize` turns a box into whole
pixels by rounding each edge to the nearest integer (halves up): columns ``[round(x0), round(x1))``, rows
``[round(y0), round(y1))``, at least one pixel each way. Parts of the box outside the frame read as zero counts,
so a face at the border keeps its geometry instead of being stretched.

Resampling is **area resampling of counts per channel** (OpenCV ``cv2.resize`` with ``INTER_AREA`` on float32,
one polarity plane at a time): when the box is larger than the output (the usual case: a 200-400 px face to
64 px), each output pixel is the area-weighted *mean* count of the source pixels it covers, so the values stay
on the scale of events per source pixel whatever the face size (a box of exactly the output size is copied
unchanged). When the box is smaller than the output, OpenCV's ``INTER_AREA`` interpolates bilinearly.

Example
-------
>>> import numpy as np
>>> frame = np.zeros((2, 260, 346), np.uint16); frame[1, 100:164, 100:164] = 4
>>> crop = crop_resize(frame, (100, 100, 228, 228), size=64)
>>> crop.shape, crop.dtype, float(crop[1, 0, 0]), float(crop[1, 40, 40])
((2, 64, 64), dtype('float32'), 4.0, 0.0)
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import cv2
import numpy as np

from microexp.errors import ParameterError

__all__ = ["CROP_SIZE", "Box", "crop_resize", "pixel_box", "square_box", "parse_roi", "full_box", "clip_box"]

CROP_SIZE = 64
"""Side of the model's input frames (the paper's 64 x 64)."""

Box = tuple  # (x0, y0, x1, y1) floats


def _round_half_up(v: float) -> int:
    return int(math.floor(v + 0.5))


def pixel_box(box: Sequence[float]) -> tuple[int, int, int, int]:
    """Integer pixel bounds ``(x0, y0, x1, y1)`` of a float box: edges rounded half up, at least 1 x 1."""
    if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        raise ParameterError(f"box must be 4 finite numbers (x0, y0, x1, y1), got {tuple(box)!r}")
    x0, y0 = _round_half_up(float(box[0])), _round_half_up(float(box[1]))
    x1, y1 = _round_half_up(float(box[2])), _round_half_up(float(box[3]))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def crop_resize(frame: np.ndarray, box: Optional[Sequence[float]] = None, size: int = CROP_SIZE,
                out: Optional[np.ndarray] = None) -> np.ndarray:
    """Crop ``frame`` (C, H, W) of event counts to ``box`` and area-resample each channel to ``size`` x ``size``.

    Parameters
    ----------
    frame:
        Counts, e.g. one window of :func:`microexp.events.frames.event_frames` (2, H, W), any numeric dtype.
    box:
        ``(x0, y0, x1, y1)`` in frame pixels (see the module docstring); None = the whole frame.
    size:
        Output side (64 for the paper's models).
    out:
        Optional float32 array (C, size, size) to write into.

    Returns
    -------
    float32 array (C, size, size).
    """
    if frame.ndim != 3:
        raise ParameterError(f"crop_resize: frame must be (C, H, W), got shape {frame.shape}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise ParameterError(f"crop_resize: size must be a positive integer, got {size!r}")
    c, h, w = frame.shape
    x0, y0, x1, y1 = (0, 0, w, h) if box is None else pixel_box(box)
    if out is None:
        out = np.empty((c, size, size), dtype=np.float32)
    elif out.shape != (c, size, size) or out.dtype != np.float32:
        raise ParameterError(f"crop_resize: out must be float32 {(c, size, size)}, got {out.dtype} {out.shape}")
    inside = x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h
    if inside:
        region = frame[:, y0:y1, x0:x1]
    else:  # pad with zeros: the parts outside the sensor saw no events
        region = np.zeros((c, y1 - y0, x1 - x0), dtype=np.float32)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if sx1 > sx0 and sy1 > sy0:
            region[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[:, sy0:sy1, sx0:sx1]
    for k in range(c):
        plane = np.ascontiguousarray(region[k], dtype=np.float32)
        if plane.shape == (size, size):
            out[k] = plane
        else:
            out[k] = cv2.resize(plane, (size, size), interpolation=cv2.INTER_AREA)
    return out


def square_box(box: Sequence[float], margin: float = 1.0) -> Box:
    """The square box centred on ``box`` whose side is ``margin`` times the longer side of ``box``.

    Face detectors return tight, slightly tall boxes; a square crop keeps the face's aspect ratio at 64 x 64.
    """
    if not margin > 0:
        raise ParameterError(f"square_box: margin must be > 0, got {margin!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    half = max(x1 - x0, y1 - y0) * margin / 2.0
    return (cx - half, cy - half, cx + half, cy + half)


def full_box(width: int, height: int) -> Box:
    """The box covering a whole ``width`` x ``height`` frame."""
    return (0.0, 0.0, float(width), float(height))


def clip_box(box: Sequence[float], width: int, height: int) -> Optional[Box]:
    """``box`` intersected with the frame, or None when they do not overlap."""
    x0, y0 = max(float(box[0]), 0.0), max(float(box[1]), 0.0)
    x1, y1 = min(float(box[2]), float(width)), min(float(box[3]), float(height))
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1, y1)


def parse_roi(text: str) -> Optional[Box]:
    """A region of interest ``"x,y,width,height"`` (pixels) as a box; ``""`` gives None (whole frame).

    Example
    -------
    >>> parse_roi("100, 50, 200, 200")
    (100.0, 50.0, 300.0, 250.0)
    """
    text = (text or "").strip()
    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        x, y, w, h = (float(p) for p in parts)
    except ValueError:
        raise ParameterError(f"roi {text!r}: expected 'x,y,width,height' (4 numbers)") from None
    if not (w > 0 and h > 0) or not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ParameterError(f"roi {text!r}: width and height must be positive")
    return (x, y, x + w, y + h)
