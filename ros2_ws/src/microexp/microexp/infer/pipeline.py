"""The streaming AU pipeline: events in, one Action Unit prediction per 33 ms window out (no rclpy).

Per window (sensor time, the grid of :class:`microexp.events.frames.EventBinner`, i.e. the paper's Eq. (1) as
in training)::
    events --slice--> the window's events --crop_events--> 2 x 64 x 64 --SNN step--> running mean m (21)
           --> probabilities softmax(m / temperature), top-3, smoothed mean over the horizon

:func:`microexp.vision.crop.crop_events` equals ``crop_resize`` of the window's Eq. (1) frame (tested) and is
what the dataset builder uses, but it costs one pass over the window's events instead of a full-sensor frame
(3.7 MB for the EVK4) and a pass over the face box.

The work splits in two halves so that a node can run them on two threads:

- :meth:`StreamingAUPipeline.bin` (cheap; the node's subscription callback): gap detection, cutting the
  stream into windows (:class:`microexp.events.frames.EventSlicer`); returns the completed :class:`Window`
  objects.
- :meth:`StreamingAUPipeline.infer` (the worker): crop to the face box (or fixed ROI), one SNN step, the
  :class:`WindowResult`.

:meth:`push` does both in one call (offline use, tests).

State resets
------------
The SNN keeps membrane state across windows; it is reset (together with the horizon smoother) before a
window when:

- ``start``: the first window;
- ``gap``: no events for more than ``gap_us`` of sensor time (or time jumped backwards by as much). The open
  window is closed, the window grid restarts at the next event, and the empty windows of the gap are not
  run through the model;
- ``seq_gap`` / ``stream``: the caller reported lost packets or a changed stream (:meth:`note_discontinuity`);
  the reset happens before the first window completed after the report (the one missing events);
- ``skipped``: windows were skipped (:meth:`skip`: the worker could not keep up): continuing the state over
  a missing step would give a sequence that matches no offline computation;
- ``face_lost`` / ``face_found``: the crop changed between the face box and the fixed ROI;
- ``segment`` (or any reason given to :meth:`reset`): an external boundary, e.g. a new recording segment.

Counters (:meth:`counters`): windows, skipped, empty windows, windows without a face, late events, gaps and
resets by reason.

Time: window bounds are sensor µs. Latencies are measured on ``time.monotonic_ns`` from ``arrival_ns``, the
moment the caller received the data that closed the window (the node: its subscription callback start).
"""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from microexp.aus import AU_LABELS, NUM_CLASSES
from microexp.errors import ParameterError
from microexp.events.dtype import EVENT_DTYPE, concat_events
from microexp.events.filters import BackgroundActivityFilter
from microexp.events.frames import DEFAULT_SLICE_US, EventSlicer
from microexp.infer.smoothing import HorizonSmoother, LatencyStats, au_probabilities, top_k
from microexp.models.device import resolve_device
from microexp.models.snn_graph import CudaGraphStep
from microexp.vision.crop import Box, clip_box, crop_events, pixel_box

__all__ = ["Window", "WindowResult", "MovementVerdict", "StreamingAUPipeline", "offline_probabilities"]


@dataclass
class Window:
    """One completed event window, waiting for inference."""

    index: int  #: emission order since the pipeline was made (consecutive unless windows were skipped)
    t0: int  #: window start, sensor µs (inclusive)
    t1: int  #: window end, sensor µs (exclusive)
    data: np.ndarray  #: the window's events (EVENT_DTYPE, time-sorted); read-only use
    events: int  #: events in the window
    arrival_ns: int  #: monotonic ns at which the data closing the window arrived
    ready_ns: int  #: monotonic ns at which the window was cut
    reset: Optional[str] = None  #: reason to reset the SNN before this window, if any
    decode_ms: float = 0.0  #: decoding time of the packet that closed the window (if the caller gave it)
    bin_ms: float = 0.0  #: slicing time of the push that completed the window
    end_of_clip: bool = False  #: the stream broke after this window (gap, end): the spotter closes what is open


@dataclass
class WindowResult:
    """The prediction of one window (what ``~/au`` publishes)."""

    index: int
    t0: int
    t1: int
    probabilities: np.ndarray  #: float32 (21,): softmax of the running time-averaged SNN output
    top3: tuple  #: class indices, best first
    smoothed: np.ndarray  #: float32 (21,): mean of the last ``horizon`` probability vectors since the reset
    smoothed_top1: int
    smoothed_windows: int  #: windows in ``smoothed``
    steps: int  #: SNN steps since the last reset (1 right after a reset)
    events: int
    face_found: bool
    crop: str  #: "face" (face box), "roi" (the fixed ROI) or "full" (the whole sensor)
    box: Box  #: crop box in event pixels
    reset: Optional[str]  #: reasons of the reset done before this window ("gap", "start,face_lost", ...)
    arrival_ns: int
    latency: dict = field(default_factory=dict)  #: ms per stage (decode, bin, queue, crop, snn, post, ready)
    state: str = "movement"  #: "movement" (a prediction), "rest" (no movement), "no_face" (no prediction)
    activity: int = 0  #: events inside the crop box that passed the spotter's activity filter (spotting mode)
    spotted: list = field(default_factory=list)  #: :class:`~microexp.infer.spotting.Spotted` movements to judge

    @property
    def labels(self) -> tuple:
        return tuple(AU_LABELS[i] for i in self.top3)


@dataclass
class MovementVerdict:
    """The model's verdict on one spotted movement (what ``~/au_events`` publishes)."""

    onset_us: int  #: sensor µs: start of the movement's first active window
    apex_us: int  #: sensor µs: centre of its peak window
    offset_us: int  #: sensor µs: end of its last active window
    probabilities: np.ndarray  #: float32 (21,): softmax of the time-averaged output over the verdict window
    top3: tuple  #: class indices, best first
    windows: int  #: windows of the verdict (the training window)
    events: int  #: filtered events of the movement
    forced: str  #: why the movement was closed early ("gap", "face_lost", "max_windows", "end"), else ""
    snn_ms: float = 0.0  #: time of the verdict's forward pass
    arrival_ns: int = 0  #: monotonic ns at which the data closing the window that completed it arrived
    decided_us: int = 0  #: sensor µs: end of the window that completed it (the data the verdict waited for)

    @property
    def au(self) -> str:
        return AU_LABELS[self.top3[0]]

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.top3[0]])


def offline_probabilities(model, crops: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """What the pipeline publishes for T consecutive windows after a reset, by multi-step inference.

    ``crops`` (T, 2, 64, 64) are the windows' :func:`~microexp.vision.crop.crop_resize` outputs; the result
    (T, 21) holds, for each t, ``softmax(mean(per_step[:t + 1]) / temperature)``: the model run once over the
    whole clip in multi-step mode (``model(x, return_sequence=True)``), then the running mean of its per-step
    activations.
    """
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(crops, dtype=np.float32), device=device)[:, None]
    with torch.inference_mode():
        _, per_step = model(x, return_sequence=True)
        steps = torch.arange(1, per_step.shape[0] + 1, device=device, dtype=per_step.dtype)
        running = per_step[:, 0].cumsum(0) / steps[:, None]
    model.reset()
    return np.stack([au_probabilities(running[t], temperature) for t in range(running.shape[0])])


def _check_model_and_timing(config, gap_us, chunk_us, temperature) -> None:
    """ParameterError unless the model is a 2-channel AU network and the pipeline's times are positive."""
    if getattr(config, "in_channels", None) != 2 or getattr(config, "num_classes", None) != NUM_CLASSES:
        raise ParameterError(
            f"the pipeline needs an AUSpikingNet with 2 input channels (event polarities) and {NUM_CLASSES} classes"
        )
    if not gap_us > 0 or not chunk_us > 0:
        raise ParameterError(f"gap_us and chunk_us must be > 0, got {gap_us!r}, {chunk_us!r}")
    if not temperature > 0:
        raise ParameterError(f"temperature must be > 0, got {temperature!r}")


class StreamingAUPipeline:
    """Live AU inference on one event stream (see the module docstring).

    Parameters
    ----------
    model:
        An :class:`~microexp.models.AUSpikingNet` in eval mode (2 input channels, 21 classes).
    width, height:
        Event sensor size (pixels).
    slice_us:
        Window length (µs of sensor time); 33 ms as in the paper.
    roi:
        Fixed crop box ``(x0, y0, x1, y1)`` in event pixels used when there is no face tracker or the face is
        lost; None = the whole sensor.
    device:
        torch device of the model ("cpu", "cuda", "auto").
    horizon:
        Windows averaged by the smoothed decision.
    gap_us:
        A pause in the events longer than this (sensor µs) ends the clip (reset, see the module docstring).
    temperature:
        Of the softmax (:func:`~microexp.infer.smoothing.au_probabilities`).
    face:
        Optional :class:`~microexp.infer.face.FaceTracker` (anything with ``current() -> box | None``).
    chunk_us:
        Incoming events are buffered and handed to the slicer when they span this much sensor time, or as
        soon as they close a window (fewer, larger pieces per window). Results do not depend on it.
    spotting:
        A :class:`~microexp.infer.spotting.SpotterConfig`: spot movements first (module
        :mod:`microexp.infer.spotting`): a window in rest is not run through the SNN and its result says
        ``state = "rest"`` with zero probabilities; the SNN starts from a fresh state at a movement's first
        window; each spotted movement is judged by :meth:`judge` over the training window centred on its peak.
        None: every window is a prediction, the SNN runs on across windows until a reset (continuous mode).
    activity_filter_us:
        The spotter's background-activity filter (µs of neighbour support).
    """

    def __init__(
        self,
        model,
        width: int,
        height: int,
        slice_us: int = DEFAULT_SLICE_US,
        roi: Optional[Sequence[float]] = None,
        device: str = "cpu",
        horizon: int = 10,
        gap_us: int = 200_000,
        temperature: float = 1.0,
        face=None,
        chunk_us: int = 8_000,
        stats_len: int = 2000,
        cuda_graph: bool = True,
        noise_filter_us: int = 0,
        spotting=None,
        activity_filter_us: int = 20_000,
    ):
        self._torch = torch
        config = getattr(model, "config", None)
        _check_model_and_timing(config, gap_us, chunk_us, temperature)
        self._place_model(model, device, cuda_graph)
        self.size = int(config.input_size)
        self.binner = EventSlicer(slice_us)
        self.noise_filter = None
        if noise_filter_us:  # the dataset builder's filter (events.filters); windows still close on raw events
            self.noise_filter = BackgroundActivityFilter(width, height, int(noise_filter_us))
        if isinstance(width, bool) or isinstance(height, bool) or not (int(width) > 0 and int(height) > 0):
            raise ParameterError(f"sensor size must be positive integers, got {width!r} x {height!r}")
        self.width, self.height, self.slice_us = int(width), int(height), self.binner.slice_us
        self.roi = None if roi is None else tuple(float(v) for v in roi)
        if self.roi is not None and clip_box(self.roi, self.width, self.height) is None:
            raise ParameterError(f"roi {self.roi} lies outside the {self.width}x{self.height} sensor")
        self.face = face
        self.spotter = None
        self.activity_filter = None
        if spotting is not None:
            from microexp.infer.spotting import MovementSpotter

            self.spotter = MovementSpotter(spotting)
            self.activity_filter = BackgroundActivityFilter(self.width, self.height, int(activity_filter_us))
            # the verdicts' own copy of the module (under a CUDA graph wrapper, its model): a verdict never
            # touches the state of the per-window steps
            self._net = copy.deepcopy(getattr(self.model, "model", self.model)).eval()
        self._moving = False
        self.gap_us = int(gap_us)
        self.chunk_us = int(chunk_us)
        self.temperature = float(temperature)
        self.smoother = HorizonSmoother(horizon)
        self.latency = LatencyStats(stats_len)
        self._init_state()

    def _place_model(self, model, device: str, cuda_graph: bool) -> None:
        """The model on its device, in eval mode; under a CUDA graph where asked and possible."""
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.graph_error: Optional[str] = None
        if cuda_graph and self.device.startswith("cuda"):
            try:  # one graph replay per window instead of ~20 kernel launches (models.snn_graph)
                self.model = CudaGraphStep(self.model, device=self.device)
            except Exception as exc:  # eager steps still work; the node logs why
                self.graph_error = f"{type(exc).__name__}: {exc}"

    def _init_state(self) -> None:
        """The binning side's and the inference side's state, and the counters they share."""
        # binning side (one thread)
        self._buf: list = []
        self._buf_t0: Optional[int] = None
        self._last_t: Optional[int] = None
        self._next_index = 0
        self._next_reset: Optional[str] = "start"
        self._arrival_ns = 0
        self._decode_ms = 0.0
        # inference side (one thread)
        self._last_index: Optional[int] = None
        self._last_crop: Optional[str] = None
        self._crop = np.empty((2, self.size, self.size), dtype=np.float32)
        # shared
        self._lock = threading.Lock()
        self._requested: list[str] = []
        self.resets: Counter = Counter()  # by reason (one reset can have several)
        self.reset_count = 0
        self.windows = 0
        self.skipped = 0
        self.empty_windows = 0
        self.no_face_windows = 0
        self.rest_windows = 0
        self.verdicts = 0
        self.gaps = 0

    # ------------------------------------------------------------------------------------------ binning side
    def bin(self, events: np.ndarray, arrival_ns: Optional[int] = None, decode_ms: float = 0.0) -> list:
        """Add time-sorted events; return the :class:`Window` objects they complete (possibly none)."""
        self._arrival_ns = time.monotonic_ns() if arrival_ns is None else int(arrival_ns)
        self._decode_ms = float(decode_ms)
        if events.dtype != EVENT_DTYPE:
            raise ParameterError(f"events must be EVENT_DTYPE arrays, got {events.dtype}")
        if events.shape[0] == 0:
            return []
        out: list = []
        t = events["t"]
        start = 0
        if self._last_t is not None and abs(int(t[0]) - self._last_t) > self.gap_us:
            self._break(out, "gap")
        jumps = np.flatnonzero(np.abs(np.diff(t)) > self.gap_us) + 1 if t.shape[0] > 1 else ()
        for cut in jumps:
            self._add(events[start:cut], out)
            self._break(out, "gap")
            start = int(cut)
        self._add(events[start:], out)
        self._last_t = int(t[-1])
        return out

    def flush_windows(self, arrival_ns: Optional[int] = None) -> list:
        """Close the open window (end of stream): the windows still held, as :class:`Window` objects.

        Their latency counts from ``arrival_ns`` (default: now), the moment the stream was found to end.
        """
        self._arrival_ns = time.monotonic_ns() if arrival_ns is None else int(arrival_ns)
        self._decode_ms = 0.0
        out: list = []
        self._push(out)
        self._emit(out, self.binner.flush())
        if out:
            out[-1].end_of_clip = True
        return out

    def note_discontinuity(self, reason: str = "seq_gap") -> None:
        """Data was lost or the stream changed: reset before the next window that completes (binning side)."""
        self._next_reset = reason if self._next_reset is None else f"{self._next_reset},{reason}"

    def _add(self, events: np.ndarray, out: list) -> None:
        if events.shape[0] == 0:
            return
        self._buf.append(events)
        if self._buf_t0 is None:
            self._buf_t0 = int(events["t"][0])
        last = int(events["t"][-1])
        start = self.binner.window_start
        if start is None or last >= start + self.slice_us or last - self._buf_t0 >= self.chunk_us:
            self._push(out)

    def _push(self, out: list) -> None:
        if not self._buf:
            return
        ev = self._buf[0] if len(self._buf) == 1 else concat_events(self._buf)
        self._buf, self._buf_t0 = [], None
        t_start = time.monotonic_ns()
        if self.noise_filter is None:
            done = self.binner.push(ev)
        else:  # bin what passes the filter; the raw events keep the window grid and close windows on time
            kept = self.noise_filter(ev)
            done = self.binner.advance(int(ev["t"][0])) if self.binner.window_start is None else []
            done += self.binner.push(kept)
            done += self.binner.advance(int(ev["t"][-1]))
        bin_ms = (time.monotonic_ns() - t_start) / 1e6
        self._emit(out, done, bin_ms)

    def _emit(self, out: list, done: list, bin_ms: float = 0.0) -> None:
        now = time.monotonic_ns()
        for t0, t1, data in done:
            out.append(
                Window(
                    self._next_index,
                    int(t0),
                    int(t1),
                    data,
                    int(data.shape[0]),
                    self._arrival_ns,
                    now,
                    self._next_reset,
                    self._decode_ms,
                    bin_ms,
                )
            )
            self._next_index += 1
            self._next_reset = None

    def _break(self, out: list, reason: str) -> None:
        """End the clip: emit what is open, restart the window grid at the next event."""
        self._push(out)
        self._emit(out, self.binner.flush())
        if out:
            out[-1].end_of_clip = True
        self.binner.reset()
        self.gaps += 1
        self.note_discontinuity(reason)

    # ---------------------------------------------------------------------------------------- inference side
    def reset(self, reason: str = "segment") -> None:
        """Reset the SNN before the next window inferred (thread-safe; e.g. at a segment boundary)."""
        with self._lock:
            self._requested.append(reason)

    def skip(self, window: Window) -> None:
        """Count ``window`` as skipped (not inferred); the next inferred window starts a new clip."""
        with self._lock:
            self.skipped += 1

    def _crop_box(self) -> tuple:
        if self.face is not None:
            box = self.face.current()
            if box is not None:
                return box, "face", True
        if self.roi is not None:
            return self.roi, "roi", False
        return (0.0, 0.0, float(self.width), float(self.height)), "full", False

    def infer(self, window: Window) -> WindowResult:
        """Crop, one SNN step and the probabilities of ``window`` (the windows must come in order). In spotting
        mode a window in rest (or without a face) is not run through the SNN, and the result lists the spotted
        movements to hand to :meth:`judge`."""
        t_start = time.monotonic_ns()
        reasons, (box, crop_kind, face_found), spotted = self._restart(window)

        t_crop = time.monotonic_ns()
        crop = crop_events(window.data, self.width, self.height, box, self.size, out=self._crop)
        state, activity = "movement", 0
        if self.spotter is not None:
            state, activity = self._spot(window, box, crop, face_found, spotted)
        t_snn = time.monotonic_ns()
        probs = self._predict(crop) if state == "movement" else np.zeros(NUM_CLASSES, dtype=np.float32)
        self._moving = state == "movement"
        t_post = time.monotonic_ns()
        top3 = top_k(probs, 3) if state == "movement" else (0, 0, 0)
        smoothed = self.smoother.push(probs) if state == "movement" else probs
        smoothed_top1 = int(np.argmax(smoothed))
        t_end = time.monotonic_ns()

        self._count(window, face_found, state)
        latency = {
            "decode": window.decode_ms,
            "bin": window.bin_ms,
            "queue": (t_start - window.ready_ns) / 1e6,
            "crop": (t_snn - t_crop) / 1e6,
            "snn": (t_post - t_snn) / 1e6,
            "post": (t_end - t_post) / 1e6,
            "ready": (t_end - window.arrival_ns) / 1e6,
        }
        self.latency.add_all(latency)
        return WindowResult(
            index=window.index,
            t0=window.t0,
            t1=window.t1,
            probabilities=probs,
            top3=top3,
            smoothed=smoothed,
            smoothed_top1=smoothed_top1,
            smoothed_windows=self.smoother.count if state == "movement" else 0,
            steps=self.model.steps,
            events=window.events,
            face_found=face_found,
            crop=crop_kind,
            box=tuple(box),
            reset=",".join(reasons) or None,
            arrival_ns=window.arrival_ns,
            latency=latency,
            state=state,
            activity=activity,
            spotted=spotted,
        )

    def _restart(self, window: Window) -> tuple:
        """Before ``window``: the reasons to restart the SNN (the window's, a skipped index, those requested, a
        face lost or found, the start), the crop ``(box, kind, face found)``, and the movements a restart ends
        (spotting). Resets the model and the smoother when the reasons call for it."""
        reasons = [] if window.reset is None else window.reset.split(",")
        if self._last_index is not None and window.index != self._last_index + 1 and "skipped" not in reasons:
            reasons.append("skipped")
        with self._lock:
            if self._requested:
                reasons.extend(r for r in self._requested if r not in reasons)
                self._requested.clear()
        box, crop_kind, face_found = self._crop_box()
        if self._last_crop is not None and (crop_kind == "face") != (self._last_crop == "face"):
            reasons.append("face_lost" if self._last_crop == "face" else "face_found")
        if self._last_index is None and "start" not in reasons:
            reasons.insert(0, "start")
        spotted: list = []
        if self.spotter is not None and reasons and set(reasons) - {"segment", "start", "face_found"}:
            spotted = self.spotter.end(reasons[0] if reasons[0] != "segment" else reasons[-1])
        if reasons and (self.spotter is None or set(reasons) != {"segment"}):
            self.model.reset()
            self.smoother.reset()
            self._moving = False
            with self._lock:
                self.reset_count += 1
                self.resets.update(reasons)
        self._last_index = window.index
        self._last_crop = crop_kind
        return reasons, (box, crop_kind, face_found), spotted

    def _spot(self, window: Window, box, crop: np.ndarray, face_found: bool, spotted: list) -> tuple[str, int]:
        """Spotting mode: the window's state (movement, rest, no_face) and box activity; the movements it
        ends are added to ``spotted``."""
        state, activity = "movement", 0
        if self.face is not None and not face_found:
            state = "no_face"
        else:
            raw, activity = self._activity(window.data, box)
            spotted += self.spotter.push(window.index, window.t0, window.t1, raw, activity, crop)
            state = "movement" if self.spotter.moving else "rest"
        if window.end_of_clip:
            spotted += self.spotter.end("gap")
        return state, activity

    def _predict(self, crop: np.ndarray) -> np.ndarray:
        """The SNN step of a window in movement; a movement confirmed just now first replays its earlier crops
        from a fresh state (from its onset)."""
        if self.spotter is not None and not self._moving:
            self.model.reset()
            self.smoother.reset()
            for earlier in self.spotter.movement_crops()[:-1]:
                self._step(earlier)
        return self._step(crop)

    def _count(self, window: Window, face_found: bool, state: str) -> None:
        self.windows += 1
        if window.events == 0:
            self.empty_windows += 1
        if self.face is not None and not face_found:
            self.no_face_windows += 1
        if state == "rest":
            self.rest_windows += 1

    def _activity(self, events: np.ndarray, box) -> tuple[int, int]:
        """(events inside the box, those of them with neighbour support): the filter sees the box's events
        only, so its cost follows the face, not the sensor."""
        return self.activity_filter.count_in_box(events, pixel_box(clip_box(box, self.width, self.height) or box))

    def _step(self, crop: np.ndarray) -> np.ndarray:
        """One SNN step on a crop: the probabilities of the running mean since the last reset."""
        torch = self._torch
        x = torch.from_numpy(crop).unsqueeze(0)
        if self.device != "cpu":
            x = x.to(self.device, non_blocking=True)
        with torch.inference_mode():
            running = self.model.step(x)
            return au_probabilities(running[0], self.temperature)  # .cpu() inside: waits for the GPU

    def judge(self, spotted) -> MovementVerdict:
        """The verdict on a spotted movement: the model from a fresh state over its crops (the training
        window centred on the movement's peak), as offline evaluation runs it, on a copy of the model of its
        own (the per-window state goes on)."""
        torch = self._torch
        t0 = time.monotonic_ns()
        x = torch.from_numpy(np.ascontiguousarray(spotted.crops, dtype=np.float32))[:, None].to(self.device)
        with torch.inference_mode():
            scores = self._net(x)[0]
            probs = au_probabilities(scores, self.temperature)
        self._net.reset()
        with self._lock:
            self.verdicts += 1
        return MovementVerdict(
            onset_us=int(spotted.onset_us),
            apex_us=int(spotted.apex_us),
            offset_us=int(spotted.offset_us),
            probabilities=probs,
            top3=top_k(probs, 3),
            windows=int(spotted.crops.shape[0]),
            events=int(spotted.events),
            forced=spotted.forced,
            decided_us=int(spotted.decided_us),
            snn_ms=(time.monotonic_ns() - t0) / 1e6,
        )

    # ---------------------------------------------------------------------------------------------- both
    def push(self, events: np.ndarray, arrival_ns: Optional[int] = None) -> list:
        """Bin ``events`` and infer every window they complete: a list of :class:`WindowResult`."""
        return [self.infer(w) for w in self.bin(events, arrival_ns)]

    def flush(self) -> list:
        """End of stream: infer the windows still held (the open one included)."""
        return [self.infer(w) for w in self.flush_windows()]

    def counters(self) -> dict:
        """Windows inferred, skipped, empty, without a face, in rest; verdicts; late events; gaps; resets by
        reason."""
        with self._lock:
            resets = dict(self.resets)
            skipped, reset_count = self.skipped, self.reset_count
        return {
            "windows": self.windows,
            "skipped": skipped,
            "empty_windows": self.empty_windows,
            "no_face_windows": self.no_face_windows,
            "rest_windows": self.rest_windows,
            "verdicts": self.verdicts,
            "late_events": int(self.binner.late),
            "gaps": self.gaps,
            "resets": reset_count,
            "resets_by_reason": resets,
        }
