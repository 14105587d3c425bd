"""Face detection on one image: MTCNN (facenet-pytorch) and the rules that turn its output into a face box.

- :class:`MtcnnDetector`: facenet-pytorch's MTCNN (its P/R/O-Net weights ship in the wheel) on one image;
  returns the most confident face box in that image's pixels, or None.
- :data:`FACE_BOX_RULES`: ``mtcnn`` (MTCNN's own box) or ``landmarks`` (:func:`landmark_box`, a box placed
  by MTCNN's five landmarks).

Used by the live pipeline (:mod:`microexp.infer.face` runs a detector on its own thread) and by the dataset
builder (:mod:`microexp.learn.build`). facenet-pytorch is imported when a detector first runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from typing import Optional, Sequence

import numpy as np

from microexp.errors import MicroexpError, ParameterError
from microexp.vision.crop import Box
from microexp.vision.image import to_rgb

__all__ = ["FACE_BOX_RULES", "LANDMARK_DROP", "LANDMARK_SIDE", "MtcnnDetector", "landmark_box"]


def _import_mtcnn():
    """facenet_pytorch's MTCNN class. The package's ``__init__`` also imports its face-recognition model, which
    needs ``requests`` (absent here: facenet-pytorch is installed without its dependencies); the MTCNN module
    itself does not, so when that import fails the package shells are set up by hand and only it is loaded."""
    try:
        from facenet_pytorch.models.mtcnn import MTCNN

        return MTCNN
    except ModuleNotFoundError as exc:
        if exc.name in ("facenet_pytorch", None):
            raise MicroexpError("face detection needs facenet-pytorch (requirements/nodeps.txt)") from None
    spec = importlib.util.find_spec("facenet_pytorch")
    root = os.path.dirname(spec.origin)
    for name, path in (("facenet_pytorch", root), ("facenet_pytorch.models", os.path.join(root, "models"))):
        pkg = sys.modules.get(name)
        if pkg is None or not hasattr(pkg, "__path__"):
            pkg = types.ModuleType(name)
            pkg.__path__ = [path]
            sys.modules[name] = pkg
    return importlib.import_module("facenet_pytorch.models.mtcnn").MTCNN


#: face-box rules: ``mtcnn`` = MTCNN's box (paper §3.4); ``landmarks`` = a box placed by MTCNN's five landmarks
FACE_BOX_RULES = ("mtcnn", "landmarks")

#: canonical geometry of :func:`landmark_box` (see there), fitted to MTCNN's boxes of the synthetic rig's faces
LANDMARK_SIDE = 2.35  # box side / eye-to-mouth distance
LANDMARK_DROP = 0.33  # box centre below the eye midpoint, in eye-to-mouth distances


def landmark_box(landmarks: Sequence) -> Box:
    """A face box placed by MTCNN's five landmarks (left eye, right eye, nose, left and right mouth corner).

    With ``d`` the distance from the eyes' midpoint E to the mouth corners' midpoint M, the box is the square
    of side ``LANDMARK_SIDE * d`` centred horizontally on the mean x of the eyes and mouth corners and
    vertically ``LANDMARK_DROP * d`` below E. Squared with the usual margin (1.2) it puts the eyes and mouth
    of every face at the same crop pixels, where MTCNN's own box lets them wander between people by as much as
    the difference between, e.g., gaze left and gaze right at 64 x 64 (figures: docs/offline.md). The constants make the box as large as MTCNN's on average, so ``margin``
    keeps its meaning. Assumes an upright face (no roll correction).
    """
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    if not np.all(np.isfinite(lm)):
        raise ParameterError(f"landmarks must be 5 finite (x, y) points, got {lm.tolist()}")
    eyes, mouth = lm[0:2].mean(axis=0), lm[3:5].mean(axis=0)
    d = float(np.hypot(*(mouth - eyes)))
    if not d > 0:
        raise ParameterError("landmarks: the eyes and the mouth coincide")
    cx = float(np.mean(lm[[0, 1, 3, 4], 0]))
    cy = float(eyes[1] + LANDMARK_DROP * d)
    half = LANDMARK_SIDE * d / 2.0
    return (cx - half, cy - half, cx + half, cy + half)


class MtcnnDetector:
    """MTCNN face detector: ``detector(rgb_image) -> (x0, y0, x1, y1) | None`` (the most confident face).

    ``min_probability`` rejects weak detections; ``min_face_size`` (pixels) bounds the image pyramid (MTCNN's
    own parameter); ``box`` chooses the rule (:data:`FACE_BOX_RULES`): MTCNN's box, or :func:`landmark_box`
    of its landmarks. The network is built on first use (about half a second), on the calling thread.
    """

    def __init__(self, device: str = "cpu", min_probability: float = 0.9, min_face_size: int = 20, box: str = "mtcnn"):
        if box not in FACE_BOX_RULES:
            raise ParameterError(f"face box rule must be one of {', '.join(FACE_BOX_RULES)}, got {box!r}")
        self.device = device
        self.min_probability = float(min_probability)
        self.min_face_size = int(min_face_size)
        self.box = box
        self._mtcnn = None

    def _net(self):
        if self._mtcnn is None:
            mtcnn_cls = _import_mtcnn()
            self._mtcnn = mtcnn_cls(keep_all=True, min_face_size=self.min_face_size, device=self.device)
        return self._mtcnn

    def __call__(self, rgb: np.ndarray) -> Optional[Box]:
        if self.box == "landmarks":
            boxes, probs, points = self._net().detect(to_rgb(rgb), landmarks=True)
        else:
            boxes, probs = self._net().detect(to_rgb(rgb))
        if boxes is None or len(boxes) == 0:
            return None
        probs = np.asarray([p if p is not None else 0.0 for p in np.atleast_1d(probs)], dtype=np.float64)
        best = int(np.argmax(probs))
        if probs[best] < self.min_probability:
            return None
        if self.box == "landmarks":
            return landmark_box(points[best])
        return tuple(float(v) for v in boxes[best])
