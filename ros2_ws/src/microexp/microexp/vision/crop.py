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

Downscaling is computed event-driven (:func:`_sparse_area`): event frames are mostly zero, so a numba loop
visits the box once and spreads each non-zero pixel over the (at most 2 x 2) output pixels it overlaps, with
OpenCV's area weights (including its rule that overlaps under 1/1000 of a pixel are ignored). That equals
``cv2.resize(INTER_AREA)`` up to float summation order (tested within 1e-5) at a fraction of its cost on a
sparse 400 x 400 box (the live node crops every 33 ms window).

Example
-------
>>> import numpy as np
>>> frame = np.zeros((2, 260, 346), np.uint16); frame[1, 100:164, 100:164] = 4
>>> crop = crop_resize(frame, (100, 100, 228, 228), size=64)
>>> crop.shape, crop.dtype, float(crop[1, 0, 0]), float(crop[1, 40, 40])
((2, 64, 64), dtype('float32'), 4.0, 0.0)
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import cv2
import numpy as np

from microexp.errors import ParameterError

__all__ = [
    "CROP_SIZE",
    "Box",
    "crop_resize",
    "crop_events",
    "pixel_box",
    "square_box",
    "parse_roi",
    "full_box",
    "clip_box",
]

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


def crop_resize(
    frame: np.ndarray, box: Optional[Sequence[float]] = None, size: int = CROP_SIZE, out: Optional[np.ndarray] = None
) -> np.ndarray:
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
    if y1 - y0 >= size and x1 - x0 >= size and (y1 - y0, x1 - x0) != (size, size):
        ty, tx = _area_table(y1 - y0, size), _area_table(x1 - x0, size)
        _sparse_area_kernel()(frame, y0, x0, *ty, *tx, out)
        return out
    inside = x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h
    if inside:
        region = frame[:, y0:y1, x0:x1]
    else:  # pad with zeros: the parts outside the sensor saw no events
        region = np.zeros((c, y1 - y0, x1 - x0), dtype=np.float32)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if sx1 > sx0 and sy1 > sy0:
            region[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = frame[:, sy0:sy1, sx0:sx1]
    for k in range(c):
        plane = np.ascontiguousarray(region[k], dtype=np.float32)
        if plane.shape == (size, size):
            out[k] = plane
        else:
            out[k] = cv2.resize(plane, (size, size), interpolation=cv2.INTER_AREA)
    return out


def crop_events(
    events: np.ndarray,
    width: int,
    height: int,
    box: Optional[Sequence[float]] = None,
    size: int = CROP_SIZE,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """The crop of the Eq. (1) frame of ``events``, computed from the events themselves.

    Equal (up to float summation order; tested within 1e-5) to::

        crop_resize(event_frames(events, width, height, n_slices=1, t_start=<their window>)[0], box, size)

    for the events of one window, without the (2, height, width) frame: area resampling is linear in the
    counts, so each event inside the box adds its pixel's area weights (at most 2 x 2 output pixels) to the
    output. The cost is one pass over the events instead of one over the box (a 432 x 432 EVK4 face box is
    373,000 pixel reads per 33 ms window, while the synthetic rig's face sends ~8,000 events into it). Events
    outside the sensor or with a polarity other than 0/1 are ignored, as :func:`event_frames` ignores them.
    The frame's saturation at 65,535 events per pixel and window is not reproduced (a pixel cannot fire that
    often in 33 ms). When the box is not larger than ``size`` (upscaling), the box region is binned and
    handed to :func:`crop_resize`.

    ``events``: EVENT_DTYPE array (x, y, t, p) of one window, any order.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise ParameterError(f"crop_events: size must be a positive integer, got {size!r}")
    width, height = int(width), int(height)
    x0, y0, x1, y1 = (0, 0, width, height) if box is None else pixel_box(box)
    if out is None:
        out = np.empty((2, size, size), dtype=np.float32)
    elif out.shape != (2, size, size) or out.dtype != np.float32:
        raise ParameterError(f"crop_events: out must be float32 {(2, size, size)}, got {out.dtype} {out.shape}")
    x, y, p = events["x"], events["y"], events["p"]
    if y1 - y0 >= size and x1 - x0 >= size and (y1 - y0, x1 - x0) != (size, size):
        ty, tx = _area_table(y1 - y0, size), _area_table(x1 - x0, size)
        _event_area_kernel()(x, y, p, width, height, y0, x0, *ty, *tx, out)
        return out
    region = np.zeros((2, y1 - y0, x1 - x0), dtype=np.float32)
    keep = (x < width) & (y < height) & (p < 2)
    xi, yi = x[keep].astype(np.int64) - x0, y[keep].astype(np.int64) - y0
    inside = (xi >= 0) & (xi < x1 - x0) & (yi >= 0) & (yi < y1 - y0)
    np.add.at(region, (p[keep][inside].astype(np.int64), yi[inside], xi[inside]), 1.0)
    return crop_resize(region, None, size, out=out)


@functools.lru_cache(maxsize=64)
def _area_table(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Area weights of downscaling ``src`` pixels to ``dst`` (``src >= dst``) along one axis, per source pixel:
    (first output index, its weight, second output index or -1, its weight). OpenCV's INTER_AREA tables:
    output ``d`` covers source ``[d·s, (d+1)·s)`` with ``s = src / dst``; each source pixel weighs its overlap
    divided by the cell width; overlaps of at most 1/1000 of a pixel are dropped."""
    scale = src / dst
    d0 = np.full(src, -1, np.int64)
    w0 = np.zeros(src, np.float32)
    d1 = np.full(src, -1, np.int64)
    w1 = np.zeros(src, np.float32)

    def add(i: int, d: int, weight: float) -> None:
        if d0[i] < 0:
            d0[i], w0[i] = d, weight
        else:
            d1[i], w1[i] = d, weight

    for d in range(dst):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, src - f1)
        s1, s2 = math.ceil(f1), math.floor(f2)
        s2 = min(s2, src - 1)
        s1 = min(s1, s2)
        if s1 - f1 > 1e-3:
            add(s1 - 1, d, (s1 - f1) / cell)
        for i in range(s1, s2):
            add(i, d, 1.0 / cell)
        if f2 - s2 > 1e-3:
            add(s2, d, min(min(f2 - s2, 1.0), cell) / cell)
    d0.setflags(write=False)
    d1.setflags(write=False)
    return d0, w0, d1, w1


@functools.lru_cache(maxsize=None)
def _sparse_area_kernel():
    from numba import njit

    @njit(cache=True, nogil=True, boundscheck=False)
    def area(frame, y0, x0, yd0, yw0, yd1, yw1, xd0, xw0, xd1, xw1, out):  # pragma: no cover - compiled
        C, H, W = frame.shape
        hr, wr = yd0.shape[0], xd0.shape[0]
        out[:] = 0.0
        for k in range(C):
            for ry in range(max(0, -y0), min(hr, H - y0)):
                a0, aw0, a1, aw1 = yd0[ry], yw0[ry], yd1[ry], yw1[ry]
                for rx in range(max(0, -x0), min(wr, W - x0)):
                    v = frame[k, y0 + ry, x0 + rx]
                    if v == 0:
                        continue
                    val = np.float32(v)
                    b0, bw0, b1, bw1 = xd0[rx], xw0[rx], xd1[rx], xw1[rx]
                    out[k, a0, b0] += val * aw0 * bw0
                    if b1 >= 0:
                        out[k, a0, b1] += val * aw0 * bw1
                    if a1 >= 0:
                        out[k, a1, b0] += val * aw1 * bw0
                        if b1 >= 0:
                            out[k, a1, b1] += val * aw1 * bw1

    return area


@functools.lru_cache(maxsize=None)
def _event_area_kernel():
    from numba import njit

    @njit(cache=True, nogil=True, boundscheck=False)
    def area(xs, ys, ps, width, height, y0, x0, yd0, yw0, yd1, yw1, xd0, xw0, xd1, xw1, out):  # pragma: no cover
        hr, wr = yd0.shape[0], xd0.shape[0]
        out[:] = 0.0
        for i in range(xs.shape[0]):
            x, y, k = np.intp(xs[i]), np.intp(ys[i]), np.intp(ps[i])
            if x >= width or y >= height or k >= 2:
                continue
            ry, rx = y - y0, x - x0
            if ry < 0 or ry >= hr or rx < 0 or rx >= wr:
                continue
            a0, aw0, a1, aw1 = yd0[ry], yw0[ry], yd1[ry], yw1[ry]
            b0, bw0, b1, bw1 = xd0[rx], xw0[rx], xd1[rx], xw1[rx]
            out[k, a0, b0] += aw0 * bw0
            if b1 >= 0:
                out[k, a0, b1] += aw0 * bw1
            if a1 >= 0:
                out[k, a1, b0] += aw1 * bw0
                if b1 >= 0:
                    out[k, a1, b1] += aw1 * bw1

    return area


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
