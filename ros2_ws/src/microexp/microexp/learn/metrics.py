"""Metrics of the paper's tables, in numpy (no torch needed):

- AU recognition (Table 5): :func:`accuracy`, :func:`top_k_accuracy`, :func:`per_class_f1`,
  :func:`confusion_matrix`, :func:`classification_metrics`.
- Frame reconstruction (Table 6), per frame then averaged over frames ("Mean MSE", ...): :func:`mse`,
  :func:`rmse`, :func:`mae`, :func:`psnr`, :func:`ssim`, :func:`ncc`, :func:`image_metrics`.

They are written here (vectorised over a batch) and checked in ``tests/test_learn.py`` against the reference
implementations: torchmetrics for accuracy, top-k accuracy, F1, the confusion matrix, MSE, MAE and PSNR;
scikit-image's ``structural_similarity`` for SSIM (same 7x7 uniform window, K1 = 0.01, K2 = 0.03, sample
covariances, border of 3 pixels excluded); NCC, which neither provides, is the zero-normalised
cross-correlation ``sum((x - mean x)(y - mean y)) / sqrt(sum((x - mean x)^2) sum((y - mean y)^2))`` per frame.
Images are floats in [0, 1] (``data_range`` = 1).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from microexp.errors import ParameterError

# what identifies a training run, and its leave-one-subject-out results, as run_training's summary names them
RUN_FIELDS = ("model", "modality", "sensor", "config")
LOSO_FIELDS = (
    "accuracy",
    "accuracy_std",
    "top3_accuracy",
    "top3_accuracy_std",
    "macro_f1",
    "macro_f1_std",
    "folds",
    "pooled_accuracy",
)

# ---------------------------------------------------------------------------------------------- classification


def _labels(target) -> np.ndarray:
    t = np.asarray(target)
    if t.ndim != 1:
        raise ParameterError(f"targets must be class indices of shape (N,), got {t.shape}")
    return t.astype(np.int64)


def accuracy(scores_or_pred, target) -> float:
    """Fraction of samples whose prediction (argmax of scores (N, C), or class indices (N,)) is the target."""
    t = _labels(target)
    p = np.asarray(scores_or_pred)
    pred = p.argmax(1) if p.ndim == 2 else p.astype(np.int64)
    return float(np.mean(pred == t)) if len(t) else float("nan")


def top_k_accuracy(scores, target, k: int = 3) -> float:
    """Fraction of samples whose target is among the ``k`` highest scores (ties: the lower class index
    first, as ``torch.topk`` on CPU in practice; with distinct scores there is no ambiguity)."""
    s = np.asarray(scores, dtype=np.float64)
    t = _labels(target)
    if s.ndim != 2 or s.shape[0] != len(t):
        raise ParameterError(f"scores must be (N, C) with N = {len(t)}, got {s.shape}")
    k = min(int(k), s.shape[1])
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return float(np.mean((order == t[:, None]).any(1))) if len(t) else float("nan")


def confusion_matrix(pred, target, num_classes: int) -> np.ndarray:
    """(C, C) int counts: row = true class, column = predicted class."""
    p = np.asarray(pred)
    p = p.argmax(1) if p.ndim == 2 else p.astype(np.int64)
    t = _labels(target)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def per_class_f1(pred, target, num_classes: int) -> np.ndarray:
    """F1 of each class (one-vs-rest); 0 where a class has neither samples nor predictions (torchmetrics'
    convention, ``zero_division=0``)."""
    cm = confusion_matrix(pred, target, num_classes)
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def classification_metrics(scores, target, labels: Sequence[str], k: int = 3) -> dict:
    """Accuracy, top-k accuracy, macro F1, per-class F1 (by label) and the confusion matrix of one test set."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(labels)
    f1 = per_class_f1(scores, target, n)
    present = np.bincount(_labels(target), minlength=n) > 0
    return {
        "n": int(len(target)),
        "accuracy": accuracy(scores, target),
        f"top{k}_accuracy": top_k_accuracy(scores, target, k),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "per_class_f1": {label: float(v) for label, v in zip(labels, f1)},
        "confusion": confusion_matrix(scores, target, n).tolist(),
    }


# ---------------------------------------------------------------------------------------------- images


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    """As float64 (N, H, W); (H, W) and (N, 1, H, W) accepted."""
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise ParameterError(f"prediction {p.shape} and target {t.shape} differ in shape")
    if p.ndim == 2:
        p, t = p[None], t[None]
    elif p.ndim == 4:
        if p.shape[1] != 1:
            raise ParameterError(f"images must be grayscale (N, 1, H, W), got {p.shape}")
        p, t = p[:, 0], t[:, 0]
    elif p.ndim != 3:
        raise ParameterError(f"images must be (H, W), (N, H, W) or (N, 1, H, W), got {p.shape}")
    return p, t


def mse(pred, target) -> np.ndarray:
    """Per-frame mean squared error (N,)."""
    p, t = _pair(pred, target)
    return ((p - t) ** 2).mean(axis=(1, 2))


def rmse(pred, target) -> np.ndarray:
    return np.sqrt(mse(pred, target))


def mae(pred, target) -> np.ndarray:
    p, t = _pair(pred, target)
    return np.abs(p - t).mean(axis=(1, 2))


def psnr(pred, target, data_range: float = 1.0) -> np.ndarray:
    """Per-frame PSNR in dB, ``10 log10(data_range^2 / MSE)`` (inf for identical frames)."""
    m = mse(pred, target)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / m)


def _uniform_filter(a: np.ndarray, size: int) -> np.ndarray:
    """Mean over ``size`` x ``size`` windows of each frame of (N, H, W), 'valid' part only (summed-area table)."""
    c = np.pad(a, ((0, 0), (1, 0), (1, 0))).cumsum(1).cumsum(2)
    s = c[:, size:, size:] - c[:, :-size, size:] - c[:, size:, :-size] + c[:, :-size, :-size]
    return s / float(size * size)


def ssim(pred, target, data_range: float = 1.0, win_size: int = 7, k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Per-frame SSIM as ``skimage.metrics.structural_similarity(target, pred, data_range=1)`` computes it
    by default: uniform ``win_size`` window, sample (N-1) covariances, mean over the windows that lie inside
    the frame (skimage filters with reflection and then crops the border of ``(win_size - 1) // 2``; the
    windows left are exactly the 'valid' ones)."""
    p, t = _pair(pred, target)
    if min(p.shape[1:]) < win_size:
        raise ParameterError(f"frames of {p.shape[1:]} are smaller than the SSIM window {win_size}")
    npix = win_size * win_size
    cov_norm = npix / (npix - 1.0)
    ux, uy = _uniform_filter(t, win_size), _uniform_filter(p, win_size)
    uxx, uyy, uxy = _uniform_filter(t * t, win_size), _uniform_filter(p * p, win_size), _uniform_filter(t * p, win_size)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.mean(axis=(1, 2))


def ncc(pred, target, eps: float = 1e-12) -> np.ndarray:
    """Per-frame zero-normalised cross-correlation in [-1, 1] (0 when a frame is constant)."""
    p, t = _pair(pred, target)
    p = p - p.mean(axis=(1, 2), keepdims=True)
    t = t - t.mean(axis=(1, 2), keepdims=True)
    num = (p * t).sum(axis=(1, 2))
    den = np.sqrt((p * p).sum(axis=(1, 2)) * (t * t).sum(axis=(1, 2)))
    return np.where(den > eps, num / np.maximum(den, eps), 0.0)


IMAGE_METRICS = ("mse", "rmse", "mae", "psnr", "ssim", "ncc")


def image_metrics(pred, target, per_frame: bool = False) -> dict:
    """Mean over frames of the six metrics of Table 6 (and the per-frame arrays when ``per_frame``)."""
    values = {
        "mse": mse(pred, target),
        "rmse": rmse(pred, target),
        "mae": mae(pred, target),
        "psnr": psnr(pred, target),
        "ssim": ssim(pred, target),
        "ncc": ncc(pred, target),
    }
    out = {k: float(np.mean(v)) for k, v in values.items()}
    out["frames"] = int(len(values["mse"]))
    if per_frame:
        out["per_frame"] = {k: v.tolist() for k, v in values.items()}
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (the spread of the folds themselves)."""
    a = np.asarray([v for v in values if v == v], dtype=np.float64)
    if not len(a):
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std())


def optional_float(v) -> Optional[float]:
    return None if v is None or v != v else float(v)
