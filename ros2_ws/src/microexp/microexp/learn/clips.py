"""The clip windows a training run reads: held in memory (:class:`ClipBank`), cut around the movement,
and augmented (start jitter, shifts, a left-right mirror with the lateral AUs swapped)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from microexp.aus import AU_LABELS, au_index
from microexp.learn.folds import Sample

#: label permutation of a left-right mirror: head turn left <-> right, eyes left <-> right
MIRROR_SWAP = {"AU51": "AU52", "AU52": "AU51", "AU61": "AU62", "AU62": "AU61"}


class ClipBank:
    """The windows of every sample, held in memory: (slices + 2 jitter) slices around each movement centre,
    as float32 (events as stored, RGB / 255). Clips shorter than the window are padded with empty frames
    (events) or their last frame (RGB)."""

    def __init__(self, ds, samples: Sequence[Sample], slices: int, jitter: int):
        self.slices, self.jitter = int(slices), int(jitter)
        span = self.slices + 2 * self.jitter
        self.data = []
        for s in samples:
            a = ds.array(_clip(ds, s.clip_id), s.array)
            start = s.peak - self.slices // 2 - self.jitter
            w = _window(a, start, span, pad_last=(s.array == "webcam_rgb"))
            if s.array == "webcam_rgb":
                w = w.astype(np.float32) / 255.0
            self.data.append(np.ascontiguousarray(w, dtype=np.float32))

    def batch(
        self,
        idx: Sequence[int],
        rng: Optional[np.random.Generator] = None,
        shift_px: int = 0,
        mirror: Sequence[bool] = (),
    ) -> np.ndarray:
        """(B, T, C, S, S) windows; with ``rng``: random start within ±jitter and shifts within ±shift_px."""
        out = []
        for j, i in enumerate(idx):
            a = self.data[i]
            off = self.jitter if rng is None else int(rng.integers(0, 2 * self.jitter + 1))
            w = a[off : off + self.slices]
            if rng is not None and shift_px:
                dy, dx = (int(v) for v in rng.integers(-shift_px, shift_px + 1, size=2))
                w = _shift(w, dy, dx)
            if len(mirror) and mirror[j]:
                w = w[..., ::-1]
            out.append(w)
        return np.ascontiguousarray(np.stack(out))


def _clip(ds, clip_id: str) -> dict:
    if not hasattr(ds, "_by_id"):
        ds._by_id = {c["id"]: c for c in ds.clips}
    return ds._by_id[clip_id]


def _window(a: np.ndarray, start: int, length: int, pad_last: bool) -> np.ndarray:
    """Slices [start, start + length) of ``a``, clamped into the clip; padded when the clip is shorter."""
    n = a.shape[0]
    if n >= length:
        start = min(max(start, 0), n - length)
        return np.asarray(a[start : start + length])
    pad = (
        np.repeat(np.asarray(a[-1:]), length - n, axis=0)
        if pad_last
        else np.zeros((length - n,) + a.shape[1:], a.dtype)
    )
    return np.concatenate([np.asarray(a), pad])


def _shift(w: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate the frames by (dy, dx) pixels, filling with zeros."""
    if dy == 0 and dx == 0:
        return w
    out = np.zeros_like(w)
    h, wd = w.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, wd - dx), slice(dx, wd)) if dx >= 0 else (slice(-dx, wd), slice(0, wd + dx))
    out[..., yd, xd] = w[..., ys, xs]
    return out


MIRROR_PERMUTATION = np.array([au_index(MIRROR_SWAP.get(label, label)) for label in AU_LABELS])
