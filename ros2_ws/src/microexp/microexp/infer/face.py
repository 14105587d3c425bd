"""Where the face is, for the live pipeline: a face detector on APS or webcam frames, off the per-window path.

The detector itself (MTCNN, the face-box rules) is :mod:`microexp.vision.face`. Here:

- :class:`FaceTracker`: the face state the pipeline reads at every window. Detections (hits and misses) come
  in from any thread; the box is smoothed exponentially, mapped from the frame sensor to the event sensor
  (:class:`BoxMap`) and made square with a margin (:func:`microexp.vision.crop.square_box`). The face is
  *lost* after ``lost_after`` consecutive misses, or when no detection at all came for ``stale_s`` seconds
  (the frames stopped); the pipeline then resets the SNN and falls back to the fixed ROI.
- :class:`FaceDetectorThread`: runs a detector on its own thread at most ``rate_hz`` times per second on the
  newest submitted frame (older waiting frames are replaced, never queued), so that detection (7-16 ms per
  346 x 260 frame on a CPU core, more for webcam frames) never sits on the per-window path.

Box mapping across sensors
--------------------------
A box found in frame pixels ``(u, v)`` is mapped to event-sensor pixels with a per-axis scale and offset::

    x = sx * u + ox        y = sy * v + oy

given as the node parameter ``frame_to_events = [sx, sy, ox, oy]``. For the DAVIS346, whose APS frames and
events share one pixel array, it is the identity ``[1, 1, 0, 0]`` (the default). For a webcam next to the
event camera it is the scale and offset that best maps one image onto the other for a face at the working
distance (from a calibration pattern seen by both, or two face boxes measured once); a scale+offset is exact
for co-planar, parallel, undistorted cameras and a good approximation for a face at a fixed distance.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from microexp.errors import ParameterError
from microexp.infer.smoothing import LatencyStats
from microexp.vision.crop import Box, square_box

__all__ = ["BoxMap", "FaceTracker", "FaceDetectorThread"]


@dataclass(frozen=True)
class BoxMap:
    """Frame pixels -> event pixels: ``x = sx * u + ox``, ``y = sy * v + oy`` (see the module docstring)."""

    sx: float = 1.0
    sy: float = 1.0
    ox: float = 0.0
    oy: float = 0.0

    @classmethod
    def from_list(cls, values: Sequence[float]) -> "BoxMap":
        """From the node parameter ``[sx, sy, ox, oy]``."""
        values = list(values)
        if len(values) != 4 or not all(math.isfinite(float(v)) for v in values):
            raise ParameterError(f"frame_to_events must be 4 finite numbers [sx, sy, ox, oy], got {values!r}")
        sx, sy, ox, oy = (float(v) for v in values)
        if sx <= 0 or sy <= 0:
            raise ParameterError(f"frame_to_events: the scales sx, sy must be > 0, got {sx}, {sy}")
        return cls(sx, sy, ox, oy)

    @property
    def is_identity(self) -> bool:
        return (self.sx, self.sy, self.ox, self.oy) == (1.0, 1.0, 0.0, 0.0)

    def apply(self, box: Sequence[float]) -> Box:
        x0, y0, x1, y1 = (float(v) for v in box)
        return (self.sx * x0 + self.ox, self.sy * y0 + self.oy, self.sx * x1 + self.ox, self.sy * y1 + self.oy)


class FaceTracker:
    """Thread-safe face state: :meth:`update` with detections, :meth:`current` for the crop box.

    Parameters
    ----------
    smoothing:
        Weight of the newest detection in the exponential smoothing of the box corners
        (``box = s * new + (1 - s) * box``); 1 = no smoothing.
    lost_after:
        Consecutive misses after which the face is lost (the box is forgotten).
    box_map:
        Frame pixels -> event pixels.
    margin:
        The crop is the square around the (mapped) box whose side is ``margin`` times the box's longer side.
    stale_s:
        The face is also lost when no detection (hit or miss) came for this long; 0 = never.
    clock:
        Time source in seconds (monotonic); injectable for tests.
    """

    def __init__(
        self,
        smoothing: float = 0.5,
        lost_after: int = 3,
        box_map: BoxMap = BoxMap(),
        margin: float = 1.2,
        stale_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not 0.0 < smoothing <= 1.0:
            raise ParameterError(f"face smoothing must be in (0, 1], got {smoothing!r}")
        if isinstance(lost_after, bool) or int(lost_after) < 1:
            raise ParameterError(f"face lost_after must be >= 1, got {lost_after!r}")
        if not margin > 0:
            raise ParameterError(f"face margin must be > 0, got {margin!r}")
        self.smoothing = float(smoothing)
        self.lost_after = int(lost_after)
        self.box_map = box_map
        self.margin = float(margin)
        self.stale_s = float(stale_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._box: Optional[np.ndarray] = None  # smoothed, in frame pixels
        self._misses = 0
        self._last_update: Optional[float] = None
        self.hits = 0
        self.misses = 0
        self.losses = 0  # found -> lost transitions

    def update(self, box: Optional[Sequence[float]]) -> None:
        """One detection result: a box in frame pixels, or None when the detector found no face."""
        now = self._clock()
        with self._lock:
            self._last_update = now
            if box is None:
                self.misses += 1
                self._misses += 1
                if self._box is not None and self._misses >= self.lost_after:
                    self._box = None
                    self.losses += 1
                return
            new = np.asarray(box, dtype=np.float64).reshape(4)
            self.hits += 1
            self._misses = 0
            self._box = new if self._box is None else self.smoothing * new + (1.0 - self.smoothing) * self._box

    def current(self) -> Optional[Box]:
        """The crop box in event pixels (mapped, squared, with margin), or None while the face is lost."""
        with self._lock:
            if self._box is None:
                return None
            if self.stale_s > 0 and self._last_update is not None and self._clock() - self._last_update > self.stale_s:
                self._box = None
                self.losses += 1
                return None
            box = tuple(float(v) for v in self._box)
        return square_box(self.box_map.apply(box), self.margin)

    @property
    def found(self) -> bool:
        return self.current() is not None

    def state(self) -> dict:
        box = self.current()
        return {
            "found": box is not None,
            "box": None if box is None else [round(v, 1) for v in box],
            "hits": self.hits,
            "misses": self.misses,
            "losses": self.losses,
        }


class FaceDetectorThread:
    """Runs ``detector`` on its own thread, at most ``rate_hz`` times a second, on the newest submitted frame,
    and feeds the result to ``tracker``. :meth:`submit` never blocks (a waiting frame is replaced).

    ``on_error`` receives the message of a detector exception (the thread goes on with the next frame).
    """

    def __init__(
        self,
        detector: Callable[[np.ndarray], Optional[Box]],
        tracker: FaceTracker,
        rate_hz: float = 5.0,
        on_error: Optional[Callable[[str], None]] = None,
    ):
        if not rate_hz > 0:
            raise ParameterError(f"face detection rate must be > 0 Hz, got {rate_hz!r}")
        self.detector = detector
        self.tracker = tracker
        self.period_s = 1.0 / float(rate_hz)
        self.on_error = on_error
        self.latency = LatencyStats(maxlen=500)
        self.frames_in = 0
        self.frames_replaced = 0
        self.detections = 0
        self.errors = 0
        self._frame: Optional[np.ndarray] = None
        self._cond = threading.Condition()
        self._stop = False
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "FaceDetectorThread":
        self._thread = threading.Thread(target=self._loop, name="face_detector", daemon=True)
        self._thread.start()
        return self

    def submit(self, rgb: np.ndarray) -> None:
        """Offer a frame (HxWx3 RGB uint8); it replaces any frame still waiting."""
        with self._cond:
            if self._frame is not None:
                self.frames_replaced += 1
            self._frame = rgb
            self.frames_in += 1
            self._cond.notify()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        next_at = 0.0
        while True:
            with self._cond:
                while self._frame is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
            wait = next_at - time.monotonic()
            if wait > 0:  # rate limit; frames submitted meanwhile replace the waiting one
                with self._cond:
                    if self._cond.wait_for(lambda: self._stop, timeout=wait):
                        return
            with self._cond:
                frame, self._frame = self._frame, None
            if frame is None:
                continue
            started = time.monotonic()
            next_at = started + self.period_s
            try:
                box = self.detector(frame)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not end face tracking
                self.errors += 1
                if self.on_error is not None:
                    self.on_error(f"face detection failed: {type(exc).__name__}: {exc}")
                continue
            self.latency.add("detect", (time.monotonic() - started) * 1e3)
            self.detections += 1
            self.tracker.update(box)
