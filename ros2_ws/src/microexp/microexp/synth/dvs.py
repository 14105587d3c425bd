"""Event-camera simulator in the style of ESIM (Rebecq et al., 2018) and v2e (Hu et al., 2021).

Pixel model
-----------
Each pixel follows the log irradiance ``L = log(I + dark)`` of the rendered scene and remembers a
reference level ``L_ref`` (set to ``L`` of the first frame). Whenever ``L - L_ref`` reaches the pixel's ON
threshold ``C_on`` it emits an ON event and raises ``L_ref`` by ``C_on`` (and likewise OFF for ``-C_off``),
as many times as the change spans thresholds. Between two rendered frames ``L`` is taken to vary linearly,
so the k-th crossing gets the time at which the line through the two frames reaches ``L_ref ± k·C``.
Per-pixel thresholds carry Gaussian mismatch (``C · (1 + mismatch · N(0, 1))``, fixed for the sensor).
After an event a pixel is blind for ``refractory_us``: crossings inside that window still move
``L_ref`` (the pixel is reset) but emit nothing; the final stream honours the refractory period per pixel
exactly, noise events included.

Noise
-----
Background activity is Poisson per pixel with rate ``noise_rate_hz * sqrt(1000 / lux)`` (shot and leak
noise rise in dim light), ON with probability ``noise_on_fraction`` (leak events are mostly ON). Noise
events do not move ``L_ref`` (a simplification). The rendered frames themselves are noise-free.

Render rate
-----------
Linear interpolation is only sound while an edge moves about a pixel or less between two frames, so
frames are placed adaptively (:func:`frame_schedule`): a frame every time the fastest face vertex has
moved ``max_step_px`` pixels (speed bounded from per-parameter displacement gains and the analytic
parameter velocities), at least every ``1 / moving_rate_hz`` while an AU is moving (wrinkles fade in
without moving), at least every ``1 / idle_rate_hz`` otherwise, and never closer than ``1 / max_rate_hz``.
For a 170 ms head turn at the EVK4's scale that is about 3-5 kHz during the fastest part and
100 Hz in the still margins.

Only the part of the frame where the head can be (the ROI) is rendered and simulated: elsewhere the scene
is static and produces noise events only.

Output: sorted :data:`~microexp.events.dtype.EVENT_DTYPE` arrays with ``t`` in integer microseconds of
scene time (from the clip start); :mod:`microexp.synth.rig` maps them onto each sensor's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numba
import numpy as np

from microexp.errors import ParameterError
from microexp.events.dtype import concat_events, empty_events, take_events
from microexp.synth.face import NUM_PARAMS, FaceAnimation, FaceParams, face_layout
from microexp.synth.render import CameraView, Roi, layout_roi, log_irradiance


@dataclass(frozen=True)
class DvsConfig:
    """Pixel and noise parameters of one simulated event sensor (see module docstring for the model).

    contrast_on, contrast_off: mean thresholds in log units (real sensors: about 0.15-0.35).
    mismatch: relative std of the per-pixel thresholds.
    refractory_us: per-pixel dead time after an event (µs).
    noise_rate_hz: background events per pixel per second at 1000 lx (scaled by sqrt(1000 / lux)).
    noise_on_fraction: share of noise events that are ON.
    dark: dark-current floor added to the irradiance before the log.
    max_step_px, moving_rate_hz, idle_rate_hz, max_rate_hz: the adaptive render rate.
    """

    contrast_on: float = 0.25
    contrast_off: float = 0.25
    mismatch: float = 0.03
    refractory_us: float = 500.0
    noise_rate_hz: float = 0.05
    noise_on_fraction: float = 0.6
    dark: float = 0.004
    max_step_px: float = 0.5
    moving_rate_hz: float = 1000.0
    idle_rate_hz: float = 100.0
    max_rate_hz: float = 5000.0

    def check(self) -> "DvsConfig":
        if not (0.01 <= self.contrast_on <= 2.0 and 0.01 <= self.contrast_off <= 2.0):
            raise ParameterError(
                f"contrast thresholds must be in [0.01, 2], got {self.contrast_on}, {self.contrast_off}"
            )
        if not 0.0 <= self.mismatch <= 0.5:
            raise ParameterError(f"mismatch must be in [0, 0.5], got {self.mismatch}")
        if self.refractory_us < 0 or self.noise_rate_hz < 0 or not 0 <= self.noise_on_fraction <= 1:
            raise ParameterError("refractory_us and noise_rate_hz must be >= 0 and noise_on_fraction in [0, 1]")
        if not 0 < self.idle_rate_hz <= self.moving_rate_hz <= self.max_rate_hz or self.max_step_px <= 0:
            raise ParameterError("render rates must satisfy 0 < idle <= moving <= max, and max_step_px > 0")
        return self


DAVIS346_DVS = DvsConfig(contrast_on=0.25, contrast_off=0.25, refractory_us=500.0, noise_rate_hz=0.05)
EVK4_DVS = DvsConfig(contrast_on=0.22, contrast_off=0.22, refractory_us=200.0, noise_rate_hz=0.02)


@numba.njit(cache=True, nogil=True)
def _crossings(l_prev, l_new, ref, last_t, c_on, c_off, t0, t1, refractory, start, xs, ys, ts, ps, x_off, y_off):
    """Threshold crossings of every pixel between two frames; resumable: returns (next pixel, count),
    next pixel -1 when all pixels are done, otherwise the buffers were full before that pixel."""
    h, w = l_new.shape
    cap = xs.shape[0]
    n = 0
    dt = t1 - t0
    for idx in range(start, h * w):
        i = idx // w
        j = idx - i * w
        ln = l_new[i, j]
        r = ref[i, j]
        d = ln - r
        con = c_on[i, j]
        coff = c_off[i, j]
        if d >= con:
            k = int(d / con)
            step = con
            pol = 1
        elif d <= -coff:
            k = int(-d / coff)
            step = -coff
            pol = 0
        else:
            continue
        if n + k > cap:
            return idx, n
        lp = l_prev[i, j]
        span = ln - lp
        last = last_t[i, j]
        for m in range(1, k + 1):
            level = r + m * step
            frac = (level - lp) / span if span != 0.0 else 1.0
            if frac < 0.0:
                frac = 0.0
            elif frac > 1.0:
                frac = 1.0
            t = t0 + frac * dt
            if t - last >= refractory:
                xs[n] = j + x_off
                ys[n] = i + y_off
                ts[n] = t
                ps[n] = pol
                n += 1
                last = t
        last_t[i, j] = last
        ref[i, j] = r + k * step
    return -1, n


@numba.njit(cache=True, nogil=True)
def _refractory_filter(x, y, t, last, refractory):
    """Keep mask of time-sorted events: drop an event closer than ``refractory`` µs to the previous kept
    event of its pixel (``last`` holds each pixel's last kept time and is updated)."""
    keep = np.ones(t.shape[0], dtype=np.bool_)
    for k in range(t.shape[0]):
        yy = y[k]
        xx = x[k]
        if t[k] - last[yy, xx] < refractory:
            keep[k] = False
        else:
            last[yy, xx] = t[k]
    return keep


class DvsPixelArray:
    """The stateful sensor: thresholds, reference levels and refractory state of every pixel.

    Feed it log-irradiance frames of a fixed ROI in time order with :meth:`step`; the first frame
    (:meth:`reset`) only sets the reference levels. Deterministic under ``seed``.
    """

    def __init__(self, width: int, height: int, config: DvsConfig = DvsConfig(), seed: int = 0):
        self.width, self.height = int(width), int(height)
        self.config = config.check()
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0xD75])
        shape = (self.height, self.width)
        self.c_on = np.maximum(0.01, config.contrast_on * (1 + config.mismatch * rng.standard_normal(shape))).astype(
            np.float32
        )
        self.c_off = np.maximum(0.01, config.contrast_off * (1 + config.mismatch * rng.standard_normal(shape))).astype(
            np.float32
        )
        self._buf = 1 << 16
        self._roi: Optional[Roi] = None
        self._l_prev: Optional[np.ndarray] = None
        self._t_prev = 0.0
        self.frames = 0

    def reset(self, log_frame: np.ndarray, roi: Roi, t_us: float, lux: float, noise_key: int = 0) -> None:
        """Start a new run at scene time ``t_us`` with the ROI's first log frame; ``lux`` sets the noise rate,
        ``noise_key`` makes runs with different keys draw different noise."""
        x0, y0, x1, y1 = roi
        if log_frame.shape != (y1 - y0, x1 - x0):
            raise ParameterError(f"log frame of shape {log_frame.shape} does not match the ROI {roi}")
        self._roi = roi
        self._l_prev = np.ascontiguousarray(log_frame, dtype=np.float32)
        self._ref = self._l_prev.copy()
        self._last_sig = np.full((y1 - y0, x1 - x0), -1e18)
        self._last_out = np.full((self.height, self.width), np.iinfo(np.int64).min // 2, dtype=np.int64)
        self._t_prev = float(t_us)
        self._lux = float(lux)
        self._noise_rng = np.random.default_rng([self.seed & 0xFFFFFFFF, int(noise_key) & 0xFFFFFFFFFFFF, 0x0A5E])
        self.frames = 1

    def _noise(self, t0: float, t1: float) -> np.ndarray:
        cfg = self.config
        rate = cfg.noise_rate_hz * np.sqrt(1000.0 / self._lux) * self.width * self.height
        n = int(self._noise_rng.poisson(rate * (t1 - t0) * 1e-6)) if rate > 0 else 0
        ev = empty_events(n)
        if n:
            rng = self._noise_rng
            ev["x"] = rng.integers(0, self.width, n)
            ev["y"] = rng.integers(0, self.height, n)
            ev["t"] = np.floor(rng.uniform(t0, t1, n)).astype(np.int64) + 1
            ev["p"] = rng.random(n) < cfg.noise_on_fraction
        return ev

    def step(self, log_frame: np.ndarray, t_us: float) -> np.ndarray:
        """Events in (previous frame time, ``t_us``], sorted by time, refractory applied."""
        if self._roi is None:
            raise ParameterError("DvsPixelArray.step before reset")
        if t_us <= self._t_prev:
            raise ParameterError(f"frame time {t_us} µs is not after the previous {self._t_prev} µs")
        x0, y0, x1, y1 = self._roi
        l_new = np.ascontiguousarray(log_frame, dtype=np.float32)
        c_on = self.c_on[y0:y1, x0:x1]
        c_off = self.c_off[y0:y1, x0:x1]
        parts = []
        start = 0
        while True:
            xs = np.empty(self._buf, np.uint16)
            ys = np.empty(self._buf, np.uint16)
            ts = np.empty(self._buf, np.float64)
            ps = np.empty(self._buf, np.uint8)
            nxt, n = _crossings(
                self._l_prev,
                l_new,
                self._ref,
                self._last_sig,
                c_on,
                c_off,
                self._t_prev,
                float(t_us),
                float(self.config.refractory_us),
                start,
                xs,
                ys,
                ts,
                ps,
                x0,
                y0,
            )
            if n:
                ev = empty_events(n)
                ev["x"], ev["y"], ev["p"] = xs[:n], ys[:n], ps[:n]
                ev["t"] = np.floor(ts[:n] + 0.5).astype(np.int64)
                parts.append(ev)
            if nxt < 0:
                break
            if nxt == start and n == 0:
                self._buf *= 4  # one pixel needs more room than the buffer has
            start = nxt
        parts.append(self._noise(self._t_prev, float(t_us)))
        ev = concat_events(parts) if len(parts) > 1 else parts[0]
        ev = take_events(ev, np.argsort(ev["t"], kind="stable"))
        keep = _refractory_filter(ev["x"], ev["y"], ev["t"], self._last_out, np.int64(round(self.config.refractory_us)))
        self._l_prev = l_new
        self._t_prev = float(t_us)
        self.frames += 1
        return take_events(ev, keep)


# ------------------------------------------------------------------------------------------ render schedule

_FIRST_FEATURE = 5  # primitives before it: body (3), hair volume, face skin


def displacement_gains(animation: FaceAnimation, pixels_per_unit: float, delta: float = 1e-3) -> np.ndarray:
    """Largest vertex displacement (pixels) per unit change of each face parameter, at the neutral face.

    Measured on the facial features (the outline is a silhouette whose vertices slide along it, and the
    features on the face front move the furthest for head rotations anyway)."""
    first = _FIRST_FEATURE

    def features(values) -> np.ndarray:
        return np.concatenate([p.pts for p in face_layout(animation.subject, FaceParams(values)).primitives[first:]])

    ref = features(np.zeros(NUM_PARAMS))
    gains = np.zeros(NUM_PARAMS)
    for k in range(NUM_PARAMS):
        v = np.zeros(NUM_PARAMS)
        v[k] = delta
        gains[k] = np.abs(features(v) - ref).max() / delta * pixels_per_unit
    return gains


def frame_schedule(
    animation: FaceAnimation, pixels_per_unit: float, config: DvsConfig, t_end_s: Optional[float] = None
) -> np.ndarray:
    """Render times (s, from 0 to ``t_end_s``) for the event simulator; see module docstring."""
    t_end = animation.duration_s if t_end_s is None else float(t_end_s)
    grid_dt = 1e-4
    grid = np.arange(0.0, t_end + grid_dt / 2, grid_dt)
    params = animation.param_matrix(grid)
    gains = displacement_gains(animation, pixels_per_unit)
    speed = np.abs(np.diff(params, axis=0)) @ gains  # pixels moved per grid step (upper bound)
    travel = np.concatenate([[0.0], np.cumsum(speed)])
    moving = animation.moving(grid)
    move_starts = grid[1:][moving[1:] & ~moving[:-1]]
    dt_min, dt_move, dt_idle = 1.0 / config.max_rate_hz, 1.0 / config.moving_rate_hz, 1.0 / config.idle_rate_hz
    times = [0.0]
    t, i = 0.0, 0
    while t < t_end - 1e-9:
        j = int(np.searchsorted(travel, travel[i] + config.max_step_px))
        candidates = [t + dt_idle, grid[j] if j < len(grid) else t_end]
        if moving[i]:
            candidates.append(t + dt_move)
        later = move_starts[move_starts > t + 1e-9]
        if later.size:
            candidates.append(later[0])
        t = min(max(min(candidates), t + dt_min), t_end)
        if t_end - t < dt_min / 2:
            t = t_end
        times.append(t)
        i = min(int(round(t / grid_dt)), len(grid) - 1)
    return np.asarray(times)


# ------------------------------------------------------------------------------------------ clip simulation


class DvsClipSimulator:
    """Events of one clip for one or more event sensors sharing one render schedule.

    The schedule follows the largest face among the views (so every sensor gets at least its own
    required rate) and each frame's layout is computed once and rendered for every view. Use
    :meth:`run` for the whole clip or :meth:`advance` to stream it; both give identical events.

    Parameters
    ----------
    animation: the clip's face animation.
    sensors: ``{name: (CameraView, DvsConfig, seed)}``.
    lux: illuminance (defaults to the subject's).
    noise_key: varies the noise between clips.
    """

    def __init__(
        self, animation: FaceAnimation, sensors: Dict[str, tuple], *, lux: Optional[float] = None, noise_key: int = 0
    ):
        if not sensors:
            raise ParameterError("DvsClipSimulator needs at least one sensor")
        self.animation = animation
        subject = animation.subject
        self.lux = float(subject.lux if lux is None else lux)
        self.sensors = {}
        scale = max(view.transform(subject)[0] for view, _, _ in sensors.values())
        strictest = min((cfg for _, cfg, _ in sensors.values()), key=lambda c: c.max_step_px)
        # Frames on whole microseconds, so that every event of a step lies within its step's time span.
        self.times_s = np.unique(np.round(frame_schedule(animation, scale, strictest) * 1e6)) / 1e6
        probe_t = np.linspace(0.0, animation.duration_s, 61)
        if animation.trial is not None:
            tr = animation.trial
            probe_t = np.sort(np.concatenate([probe_t, [tr.apex_s, 0.5 * (tr.apex_s + tr.offset_s), tr.offset_s]]))
        probe = [face_layout(subject, FaceParams(row)) for row in animation.param_matrix(probe_t)]
        for name, (view, cfg, seed) in sensors.items():
            roi = layout_roi(probe, subject, view, margin_px=6.0 + 4.0)
            self.sensors[name] = (view, cfg, roi, DvsPixelArray(view.width, view.height, cfg, seed))
        self._noise_key = int(noise_key)
        self._next = 0

    def _frame(self, k: int) -> Dict[str, np.ndarray]:
        t = float(self.times_s[k])
        layout = face_layout(self.animation.subject, self.animation.params(t))
        out = {}
        for name, (view, cfg, roi, pixels) in self.sensors.items():
            log = log_irradiance(layout, self.animation.subject, view, roi, cfg.dark, self.lux)
            if k == 0:
                pixels.reset(log, roi, 0.0, self.lux, self._noise_key)
                out[name] = empty_events(0)
            else:
                out[name] = pixels.step(log, round(t * 1e6))
        return out

    def advance(self, t_s: float) -> Dict[str, np.ndarray]:
        """Process every scheduled frame up to scene time ``t_s``; events since the previous call."""
        parts: Dict[str, list] = {name: [] for name in self.sensors}
        while self._next < len(self.times_s) and self.times_s[self._next] <= t_s + 1e-12:
            for name, ev in self._frame(self._next).items():
                parts[name].append(ev)
            self._next += 1
        return {name: (concat_events(p) if p else empty_events(0)) for name, p in parts.items()}

    @property
    def done(self) -> bool:
        return self._next >= len(self.times_s)

    @property
    def time_s(self) -> float:
        """Scene time up to which events have been produced."""
        return float(self.times_s[self._next - 1]) if self._next else 0.0

    def run(self) -> Dict[str, np.ndarray]:
        """All events of the clip, per sensor."""
        return self.advance(float(self.times_s[-1]))

    def roi(self, name: str) -> Roi:
        return self.sensors[name][2]


def simulate(
    animation: FaceAnimation,
    view: CameraView,
    config: DvsConfig = DvsConfig(),
    seed: int = 0,
    lux: Optional[float] = None,
) -> np.ndarray:
    """Events of one sensor for a whole clip (scene-time µs), e.g.
    ``simulate(FaceAnimation(subject, make_trial("AU12")), DAVIS346_VIEW)``."""
    return DvsClipSimulator(animation, {view.name: (view, config, seed)}, lux=lux).run()[view.name]
