"""The synthetic recording rig: subjects performing AUs in front of a DAVIS346, an EVK4 and a webcam.

It produces what the paper's rig (§3.2-3.4) records, with ground truth:

- DAVIS346 events (chunks) and APS frames (346x260 gray, every 25 ms = 40 fps),
- EVK4 events (1280x720),
- webcam RGB frames (1920x1080 by default, 60 fps),
- labels: subject, AU, trial, phase (neutral / onset / apex / offset), intensity, lux.

Every sensor has its own clock (:class:`~microexp.synth.clock.SensorClock`: offset and drift) and its own
USB link (:class:`~microexp.synth.clock.Transport`: latency, one-sided jitter, outliers), so a consumer sees
sensor stamps that disagree with host arrival times exactly as with real drivers.

Two ways to use it:

- batch: ``clip = rig.clip(subject, "AU12", trial)`` then ``clip.events("davis346")`` (EVENT_DTYPE in sensor
  µs), ``clip.frame("davis346", i)``, ``clip.frame_stamps("webcam")``, ``clip.labels()``;
- streaming: ``for msg in clip.stream(): ...`` (or ``rig.session(plan)`` for many clips back to back) yields
  :class:`RigMessage` in host-arrival order; a ROS node sleeps until ``msg.host_time_s`` to play in real
  time, or publishes at once to play faster. Batch and stream give identical data.

Frames of a camera are regular on *its own* clock (the sensor's crystal drives the frame timer) and are
rendered at their stamp time (the exposure midpoint; motion blur within an exposure is not modelled).
The event simulator's render schedule serves all event sensors of the rig at once, so a clip's events
depend on which event sensors the rig has (for a given set they are fully deterministic).

Time origin: host time is seconds on an arbitrary host clock; a clip starts at ``host_start_s``.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Sequence, Union

import cv2
import numpy as np

from microexp.aus import AU_CODES
from microexp.errors import ParameterError
from microexp.events.dtype import empty_events
from microexp.synth.aus import AU_REGIONS, AUTrial, au_code, au_description, make_trial
from microexp.synth.clock import Link, SensorClock, Transport
from microexp.synth.dvs import DAVIS346_DVS, EVK4_DVS, DvsClipSimulator, DvsConfig
from microexp.synth.face import FaceAnimation, Subject, face_layout
from microexp.synth.render import DAVIS346_VIEW, EVK4_VIEW, CameraView, FrameRenderer, layout_roi, webcam_view

SENSORS = ("davis346", "evk4", "webcam")
EVENT_SENSORS = ("davis346", "evk4")
FRAME_SENSORS = ("davis346", "webcam")


@dataclass(frozen=True)
class Label:
    """Ground truth of a clip at one moment; times are true host times (s)."""

    subject_id: int
    au: int
    trial: int
    phase: str
    intensity: float
    lux: float
    onset_s: float
    apex_s: float
    offset_s: float
    end_s: float


@dataclass(frozen=True)
class RigMessage:
    """One delivery from the rig.

    host_time_s: when it arrives at the host (true host time + transport delay).
    sensor: "davis346", "evk4", "webcam" or "label".
    kind: "events", "frame" or "label".
    sensor_time_us: stamp on the sensor's clock: first event's time / the frame's exposure midpoint
        (a label carries its true host time in µs).
    true_time_s: true host time of that stamp (ground truth for clock synchronisation).
    payload: EVENT_DTYPE array (sensor µs), uint8 image, or :class:`Label`.
    seq: per-(sensor, kind) sequence number within the clip.
    """

    host_time_s: float
    sensor: str
    kind: str
    sensor_time_us: int
    true_time_s: float
    payload: object
    seq: int


@dataclass(frozen=True)
class SensorSetup:
    """One camera of the rig: its view, clock, links and (for event sensors) pixel model."""

    name: str
    view: CameraView
    clock: SensorClock
    event_link: Optional[Transport] = None
    frame_link: Optional[Transport] = None
    dvs: Optional[DvsConfig] = None
    frame_interval_s: Optional[float] = None
    electrons_per_klux: float = 1500.0


def _default_setups(seed: int, webcam_size: tuple, aps_fps: float, webcam_fps: float) -> Dict[str, SensorSetup]:
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xC10C])
    drift = rng.uniform(10.0, 80.0, 2) * rng.choice([-1.0, 1.0], 2)
    offs = rng.uniform(0.5e6, 20e6, 2)
    return {
        "davis346": SensorSetup(
            "davis346",
            DAVIS346_VIEW,
            SensorClock(float(drift[0]), float(offs[0])),
            event_link=Transport(latency_s=0.0010, jitter_s=0.0004, outlier_prob=0.003),
            frame_link=Transport(latency_s=0.0030, jitter_s=0.0010, outlier_prob=0.003),
            dvs=DAVIS346_DVS,
            frame_interval_s=1.0 / aps_fps,
            electrons_per_klux=1500.0,
        ),
        "evk4": SensorSetup(
            "evk4",
            EVK4_VIEW,
            SensorClock(float(drift[1]), float(offs[1])),
            event_link=Transport(latency_s=0.0015, jitter_s=0.0015, outlier_prob=0.003),
            dvs=EVK4_DVS,
        ),
        "webcam": SensorSetup(
            "webcam",
            webcam_view(*webcam_size),
            SensorClock(0.0, 0.0),
            frame_link=Transport(latency_s=0.030, jitter_s=0.004, outlier_prob=0.01),
            frame_interval_s=1.0 / webcam_fps,
            electrons_per_klux=6000.0,
        ),
    }


class SyntheticRig:
    """Synthetic subjects recorded by the three-camera rig.

    Parameters
    ----------
    subjects: number of subjects to generate (ids 0..n-1) or explicit :class:`Subject` objects.
    seed: seeds subjects, trials, sensor clocks and noise.
    sensors: which of "davis346", "evk4", "webcam" to simulate (the EVK4 costs about 10 s per clip).
    webcam_size: (width, height); (1920, 1080) as in the paper, smaller for tests.
    aps_fps, webcam_fps: frame rates (DAVIS APS 40 fps = 25 ms, webcam 60 fps).
    duration_s: clip length (the paper's clips average 2.5 s).
    idle_motion: head sway scale (see :class:`~microexp.synth.face.FaceAnimation`); 0 = still.
    natural_blinks: spontaneous blinks outside the AU movement.
    noise: background-activity noise in the event sensors.
    setups: per-sensor overrides of the defaults (clock, links, DVS config, ...).
    """

    def __init__(
        self,
        subjects: Union[int, Sequence[Subject]] = 7,
        seed: int = 0,
        sensors: Sequence[str] = SENSORS,
        webcam_size: tuple = (1920, 1080),
        aps_fps: float = 40.0,
        webcam_fps: float = 60.0,
        duration_s: float = 2.5,
        idle_motion: float = 1.0,
        natural_blinks: bool = False,
        noise: bool = True,
        setups: Optional[Dict[str, SensorSetup]] = None,
    ):
        unknown = [s for s in sensors if s not in SENSORS]
        if unknown or not sensors:
            raise ParameterError(f"sensors must be a non-empty subset of {SENSORS}, got {tuple(sensors)}")
        if not (1.0 <= aps_fps <= 200.0 and 1.0 <= webcam_fps <= 240.0):
            raise ParameterError(f"frame rates out of range: aps_fps={aps_fps}, webcam_fps={webcam_fps}")
        self.seed = int(seed)
        if isinstance(subjects, int):
            if subjects < 1:
                raise ParameterError(f"subjects must be >= 1, got {subjects}")
            self.subjects = [Subject.generate(i, self.seed) for i in range(subjects)]
        else:
            self.subjects = list(subjects)
        self.sensors = tuple(s for s in SENSORS if s in sensors)
        all_setups = _default_setups(self.seed, tuple(webcam_size), aps_fps, webcam_fps)
        all_setups.update(setups or {})
        if not noise:
            all_setups = {
                k: (replace(v, dvs=replace(v.dvs, noise_rate_hz=0.0)) if v.dvs else v) for k, v in all_setups.items()
            }
        self.setups = {k: all_setups[k] for k in self.sensors}
        self.duration_s = float(duration_s)
        self.idle_motion = float(idle_motion)
        self.natural_blinks = bool(natural_blinks)
        self._frame_renderers: Dict[str, FrameRenderer] = {}
        # One event-sensor pixel array per sensor keeps its threshold mismatch across clips.
        self._dvs_seeds = {name: self.seed * 31 + i for i, name in enumerate(SENSORS)}

    @property
    def event_sensors(self) -> tuple:
        return tuple(s for s in self.sensors if s in EVENT_SENSORS)

    @property
    def frame_sensors(self) -> tuple:
        return tuple(s for s in self.sensors if s in FRAME_SENSORS)

    def subject(self, subject: Union[int, Subject]) -> Subject:
        if isinstance(subject, Subject):
            return subject
        for s in self.subjects:
            if s.subject_id == subject:
                return s
        raise ParameterError(f"no subject {subject!r} in this rig (ids {[s.subject_id for s in self.subjects]})")

    def frame_renderer(self, sensor: str) -> FrameRenderer:
        if sensor not in self._frame_renderers:
            setup = self.setups[sensor]
            self._frame_renderers[sensor] = FrameRenderer(
                setup.view,
                gray=(sensor == "davis346"),
                electrons_per_klux=setup.electrons_per_klux,
                seed=self._dvs_seeds[sensor],
            )
        return self._frame_renderers[sensor]

    def clip(
        self, subject: Union[int, Subject], au, trial: int = 0, host_start_s: float = 0.0, **trial_overrides
    ) -> "Clip":
        """One trial of ``au`` by ``subject``, starting at ``host_start_s`` (true host time, s).
        ``trial_overrides`` (intensity=, movement_s=) fix what :func:`make_trial` would draw."""
        subj = self.subject(subject)
        tr = make_trial(
            au, trial, subject_id=subj.subject_id, seed=self.seed, duration_s=self.duration_s, **trial_overrides
        )
        return Clip(self, subj, tr, float(host_start_s))

    def session(
        self,
        plan: Optional[Iterable[tuple]] = None,
        gap_s: float = 3.0,
        host_start_s: float = 0.0,
        chunk_s: float = 0.005,
    ) -> Iterator[RigMessage]:
        """Clips one after another (``plan``: (subject, au, trial) tuples; default every AU of the first
        subject, trial 0), separated by ``gap_s`` of rest, as one arrival-ordered stream. The sensor
        clocks keep running across clips, as in a real session. Clips are simulated one at a time; the
        gap (at least 0.5 s) exceeds any transport delay, so chaining them keeps arrival order."""
        if gap_s < 0.5:
            raise ParameterError(f"gap_s must be at least 0.5 s (longer than any transport delay), got {gap_s}")
        plan = [(self.subjects[0].subject_id, au, 0) for au in AU_CODES] if plan is None else list(plan)
        clips, start = [], float(host_start_s)
        for subject, au, trial in plan:  # build (and validate) every clip now; simulate lazily
            clips.append(self.clip(subject, au, trial, host_start_s=start))
            start += clips[-1].duration_s + gap_s
        return (msg for clip in clips for msg in clip.stream(chunk_s))


class _SharedEvents:
    """Advances one clip's event simulator for several per-sensor consumers."""

    def __init__(self, sim: DvsClipSimulator):
        self.sim = sim
        self.queues = {name: deque() for name in sim.sensors}

    def until(self, t_s: float) -> None:
        if t_s > self.sim.time_s and not self.sim.done:
            for name, ev in self.sim.advance(t_s).items():
                if len(ev):
                    self.queues[name].append(ev)

    def take(self, name: str, t_end_us: int) -> np.ndarray:
        """Events of ``name`` with scene time < ``t_end_us`` that have been simulated."""
        q = self.queues[name]
        parts = []
        while q:
            ev = q[0]
            if ev["t"][-1] < t_end_us:
                parts.append(q.popleft())
                continue
            cut = int(np.searchsorted(ev["t"], t_end_us, side="left"))
            if cut:
                parts.append(ev[:cut])
                q[0] = ev[cut:]
            break
        return np.concatenate(parts) if parts else empty_events(0)


class Clip:
    """One AU trial recorded by the rig; see the module docstring for the batch and streaming API."""

    def __init__(self, rig: SyntheticRig, subject: Subject, trial: AUTrial, host_start_s: float):
        self.rig = rig
        self.subject = subject
        self.trial = trial
        self.host_start_s = host_start_s
        self.duration_s = trial.duration_s
        self.lux = subject.lux
        self.animation = FaceAnimation(subject, trial, idle_motion=rig.idle_motion, natural_blinks=rig.natural_blinks)
        self._events: Optional[Dict[str, np.ndarray]] = None
        self._rois: Dict[str, tuple] = {}
        self._frame_rois: Dict[str, tuple] = {}

    # ------------------------------------------------------------------ ground truth
    @property
    def au(self) -> int:
        return self.trial.au

    def label(self, phase: Optional[str] = None) -> Label:
        tr, h = self.trial, self.host_start_s
        return Label(
            self.subject.subject_id,
            tr.au,
            tr.trial,
            phase or "neutral",
            tr.intensity,
            self.lux,
            h + tr.onset_s,
            h + tr.apex_s,
            h + tr.offset_s,
            h + tr.end_s,
        )

    def labels(self) -> list:
        """[(true host time s, Label)] at the clip start and at every phase change."""
        return [(self.host_start_s + t, self.label(phase)) for t, phase in self.trial.phase_boundaries()]

    def phase_at(self, host_s: float) -> str:
        return self.trial.phase(host_s - self.host_start_s)

    # ------------------------------------------------------------------ events
    def _simulator(self) -> DvsClipSimulator:
        sensors = {
            name: (self.rig.setups[name].view, self.rig.setups[name].dvs, self.rig._dvs_seeds[name])
            for name in self.rig.event_sensors
        }
        if not sensors:
            raise ParameterError("this rig has no event sensor")
        key = (self.subject.subject_id * 1000 + self.trial.au) * 1000 + self.trial.trial
        return DvsClipSimulator(self.animation, sensors, lux=self.lux, noise_key=key)

    def _to_sensor(self, name: str, ev: np.ndarray) -> np.ndarray:
        out = ev.copy()
        clock = self.rig.setups[name].clock
        out["t"] = clock.sensor_us(self.host_start_s + ev["t"].astype(np.float64) * 1e-6)
        return out

    def scene_events(self, sensor: str) -> np.ndarray:
        """Events of ``sensor`` with ``t`` in µs of scene time (from the clip start)."""
        if sensor not in self.rig.event_sensors:
            raise ParameterError(f"{sensor!r} is not an event sensor of this rig {self.rig.event_sensors}")
        if self._events is None:
            sim = self._simulator()
            self._events = sim.run()
            self._rois = {n: sim.roi(n) for n in sim.sensors}
        return self._events[sensor]

    def events(self, sensor: str) -> np.ndarray:
        """Events of ``sensor`` stamped on its own clock (µs), sorted."""
        return self._to_sensor(sensor, self.scene_events(sensor))

    # ------------------------------------------------------------------ frames
    def frame_stamps(self, sensor: str) -> tuple[np.ndarray, np.ndarray]:
        """(sensor stamps µs int64, true host times s) of ``sensor``'s frames inside the clip; frames are
        regular on the sensor clock (stamp = exposure midpoint)."""
        if sensor not in self.rig.frame_sensors:
            raise ParameterError(f"{sensor!r} is not a frame sensor of this rig {self.rig.frame_sensors}")
        setup = self.rig.setups[sensor]
        period_us = setup.frame_interval_s * 1e6
        lo = setup.clock.sensor_us_float(self.host_start_s)
        hi = setup.clock.sensor_us_float(self.host_start_s + self.duration_s)
        k = np.arange(np.ceil(lo / period_us), np.floor(hi / period_us) + 1)
        stamps = np.round(k * period_us).astype(np.int64)
        stamps = stamps[(stamps >= lo) & (stamps <= hi)]
        return stamps, setup.clock.host_s(stamps)

    def _frame_roi(self, sensor: str):
        if sensor not in self._frame_rois:
            t = np.linspace(0.0, self.duration_s, 41)
            t = np.sort(np.concatenate([t, [self.trial.apex_s, self.trial.offset_s]]))
            layouts = [face_layout(self.subject, self.animation.params(x)) for x in t]
            self._frame_rois[sensor] = layout_roi(layouts, self.subject, self.rig.setups[sensor].view, margin_px=8.0)
        return self._frame_rois[sensor]

    def frame(self, sensor: str, index: int) -> np.ndarray:
        """Frame ``index`` of ``sensor``: uint8 (260, 346) gray for the DAVIS APS, (H, W, 3) RGB webcam."""
        stamps, host = self.frame_stamps(sensor)
        if not 0 <= index < len(stamps):
            raise ParameterError(f"{sensor} frame index {index} out of range [0, {len(stamps)})")
        t = float(host[index] - self.host_start_s)
        layout = face_layout(self.subject, self.animation.params(t))
        roi = self._frame_roi(sensor) if sensor == "webcam" else None
        return self.rig.frame_renderer(sensor).render(layout, self.subject, int(stamps[index]), self.lux, roi)

    def frames(self, sensor: str) -> np.ndarray:
        """All frames of ``sensor`` stacked (mind the memory for a 1920x1080 webcam: ~900 MB per clip)."""
        n = len(self.frame_stamps(sensor)[0])
        return np.stack([self.frame(sensor, i) for i in range(n)])

    # ------------------------------------------------------------------ streaming
    def _link_seed(self, name: str, kind: int) -> tuple:
        return (self.rig.seed, SENSORS.index(name), kind, self.subject.subject_id, self.au, self.trial.trial)

    def _event_messages(self, name: str, shared: _SharedEvents, chunk_s: float) -> Iterator[RigMessage]:
        setup = self.rig.setups[name]
        link = Link(setup.event_link, seed=self._link_seed(name, 0))
        n_chunks = int(np.ceil(self.duration_s / chunk_s - 1e-9))
        seq = 0
        for k in range(n_chunks):
            t_end = min((k + 1) * chunk_s, self.duration_s)
            shared.until(t_end)
            last = k == n_chunks - 1
            ev = shared.take(name, int(round(t_end * 1e6)) + (1 if last else 0))
            if not len(ev):
                continue
            sensor_ev = self._to_sensor(name, ev)
            true_first = self.host_start_s + float(ev["t"][0]) * 1e-6
            yield RigMessage(
                link.arrival_s(self.host_start_s + t_end),
                name,
                "events",
                int(sensor_ev["t"][0]),
                true_first,
                sensor_ev,
                seq,
            )
            seq += 1

    def _frame_messages(self, name: str) -> Iterator[RigMessage]:
        setup = self.rig.setups[name]
        link = Link(setup.frame_link, seed=self._link_seed(name, 1))
        stamps, host = self.frame_stamps(name)
        half_exposure = 0.5 * setup.frame_interval_s
        for i in range(len(stamps)):
            arrival = link.arrival_s(float(host[i]) + half_exposure)
            yield RigMessage(arrival, name, "frame", int(stamps[i]), float(host[i]), _LazyFrame(self, name, i), i)

    def _label_messages(self) -> Iterator[RigMessage]:
        for i, (t, label) in enumerate(self.labels()):
            yield RigMessage(t, "label", "label", int(round(t * 1e6)), t, label, i)

    def stream(self, chunk_s: float = 0.005) -> Iterator[RigMessage]:
        """Everything the rig delivers for this clip, in host-arrival order. Event chunks cover ``chunk_s``
        of scene time each (drivers batch by time: metavision_driver and libcaer_driver default to about
        1 ms; 5 ms keeps Python overhead low). Frames are rendered when their message is consumed."""
        if not 0.0005 <= chunk_s <= 0.5:
            raise ParameterError(f"chunk_s must be in [0.0005, 0.5] s, got {chunk_s}")
        gens = [self._label_messages()]
        if self.rig.event_sensors:
            shared = _SharedEvents(self._simulator())
            gens += [self._event_messages(n, shared, chunk_s) for n in self.rig.event_sensors]
        gens += [self._frame_messages(n) for n in self.rig.frame_sensors]
        for msg in heapq.merge(*gens, key=lambda m: m.host_time_s):
            if isinstance(msg.payload, _LazyFrame):
                msg = replace(msg, payload=msg.payload.render())
            yield msg


@dataclass(frozen=True)
class _LazyFrame:
    clip: Clip
    sensor: str
    index: int

    def render(self) -> np.ndarray:
        return self.clip.frame(self.sensor, self.index)


# ---------------------------------------------------------------------------------------------- pictures


def event_image(events: np.ndarray, width: int, height: int) -> np.ndarray:
    """RGB uint8 picture of events (the paper's two-channel frame, Eq. 1, drawn for eyes): white where
    nothing happened, blue where ON events dominate, red where OFF events dominate; the colour deepens
    with the count."""
    on = np.zeros((height, width), np.float32)
    off = np.zeros((height, width), np.float32)
    if len(events):
        p = events["p"].astype(bool)
        np.add.at(on, (events["y"][p], events["x"][p]), 1.0)
        np.add.at(off, (events["y"][~p], events["x"][~p]), 1.0)
    img = np.full((height, width, 3), 255, np.uint8)
    strength = np.clip((np.abs(on - off) + 1.0) / 4.0, 0.0, 1.0)
    fade = (255 * (1.0 - strength)).astype(np.uint8)
    on_dom = on > off
    off_dom = off > on
    img[on_dom, 0] = fade[on_dom]
    img[on_dom, 1] = fade[on_dom]
    img[off_dom, 1] = fade[off_dom]
    img[off_dom, 2] = fade[off_dom]
    tie = (on == off) & (on > 0)
    img[tie] = (150, 0, 150)
    return img


def contact_sheet(
    path: Union[str, Path],
    rig: Optional[SyntheticRig] = None,
    subject: Union[int, Subject] = 0,
    trial: int = 0,
    aus: Optional[Sequence] = None,
    columns: int = 3,
    scale: float = 1.0,
) -> Path:
    """Write a PNG grid with every AU at its apex: DAVIS APS frame | DAVIS events of the onset (ON blue,
    OFF red) | webcam frame. Returns the path. Uses a DAVIS + small-webcam rig unless ``rig`` is given;
    ``scale`` < 1 shrinks the sheet (each panel is 346x260 at scale 1)."""
    if rig is None:
        subj = subject if isinstance(subject, Subject) else Subject.generate(int(subject), 0)
        rig = SyntheticRig([subj], sensors=("davis346", "webcam"), webcam_size=(640, 360))
        subject = subj
    if "davis346" not in rig.sensors or "webcam" not in rig.sensors:
        raise ParameterError("contact_sheet needs a rig with the davis346 and webcam sensors")
    aus = list(AU_CODES if aus is None else aus)
    tiles = []
    for au in aus:
        clip = rig.clip(subject, au, trial)
        tr = clip.trial
        apex_host = clip.host_start_s + 0.5 * (tr.apex_s + tr.offset_s)
        panels = []
        stamps, host = clip.frame_stamps("davis346")
        aps = clip.frame("davis346", int(np.argmin(np.abs(host - apex_host))))
        panels.append(cv2.cvtColor(aps, cv2.COLOR_GRAY2RGB))
        ev = clip.scene_events("davis346")
        window = ev[(ev["t"] >= tr.onset_s * 1e6) & (ev["t"] < tr.apex_s * 1e6)]
        panels.append(event_image(window, 346, 260))
        stamps, host = clip.frame_stamps("webcam")
        cam = clip.frame("webcam", int(np.argmin(np.abs(host - apex_host))))
        panels.append(
            cv2.resize(cam, (int(round(260 * cam.shape[1] / cam.shape[0])), 260), interpolation=cv2.INTER_AREA)
        )
        tile = np.concatenate([np.concatenate([p, np.full((260, 4, 3), 255, np.uint8)], 1) for p in panels], 1)
        head = np.full((22, tile.shape[1], 3), 255, np.uint8)
        text = f"{au_description(au)}  (intensity {tr.intensity:.2f}, {1e3 * tr.movement_s:.0f} ms, {clip.lux:.0f} lx)"
        cv2.putText(head, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.concatenate([head, tile, np.full((8, tile.shape[1], 3), 255, np.uint8)], 0))
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[i : i + columns], 1) for i in range(0, len(tiles), columns)]
    sheet = np.concatenate(rows, 0)
    if scale != 1.0:
        if not 0.1 <= scale <= 1.0:
            raise ParameterError(f"scale must be in [0.1, 1], got {scale}")
        sheet = cv2.resize(sheet, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), sheet[..., ::-1]):
        raise ParameterError(f"could not write {path}")
    return path


# ---------------------------------------------------------------------------------------------- statistics


def au_statistics(
    rig: Optional[SyntheticRig] = None,
    aus: Optional[Sequence] = None,
    subjects: Sequence = (0,),
    trials: Sequence[int] = (0,),
    sensor: str = "davis346",
) -> list:
    """Per-AU statistics of the events of ``sensor`` during the movement (onset start to offset end).

    Signal statistics come from a noise-free run (so that background activity does not blur where the
    events are); the expected noise rate of the configured sensor is reported alongside. Positions are
    in face units of the neutral head (u right, v down, head half-height 1; eyes near v = -0.1, mouth
    near v = 0.47, chin at v = 1).

    Returns a list of dicts: au, clips, events (mean per clip), rate_kev_s (signal events per second of
    movement, thousands), on_fraction, u, v (centroid), u05, u95, v05, v95 (5th/95th percentiles),
    in_region (share of events inside :data:`~microexp.synth.aus.AU_REGIONS`), noise_kev_s.
    """
    rig = rig or SyntheticRig(subjects=max(int(s) for s in subjects) + 1, sensors=(sensor,))
    if sensor not in rig.event_sensors:
        raise ParameterError(f"{sensor!r} is not an event sensor of the rig")
    quiet = SyntheticRig(
        rig.subjects,
        rig.seed,
        sensors=rig.event_sensors,
        duration_s=rig.duration_s,
        idle_motion=rig.idle_motion,
        natural_blinks=rig.natural_blinks,
        noise=False,
        setups=dict(rig.setups),
    )
    view = rig.setups[sensor].view
    cfg = rig.setups[sensor].dvs
    rows = []
    for au in AU_CODES if aus is None else aus:
        code = au_code(au)
        us, vs, pol, counts, rates, noise = [], [], [], [], [], []
        for subj in subjects:
            s = quiet.subject(subj)
            for tr in trials:
                clip = quiet.clip(s, code, tr)
                ev = clip.scene_events(sensor)
                t = clip.trial
                w = ev[(ev["t"] >= t.onset_s * 1e6) & (ev["t"] < t.end_s * 1e6)]
                u, v = view.to_face_units(s, w["x"], w["y"])
                us.append(u)
                vs.append(v)
                pol.append(w["p"])
                counts.append(len(w))
                rates.append(len(w) / t.movement_s)
                noise.append(cfg.noise_rate_hz * np.sqrt(1000.0 / s.lux) * view.width * view.height)
        u, v, p = np.concatenate(us), np.concatenate(vs), np.concatenate(pol)
        x0, y0, x1, y1 = AU_REGIONS[code]
        inside = (u >= x0) & (u <= x1) & (v >= y0) & (v <= y1)

        def q(a, f):
            return float(np.quantile(a, f)) if a.size else float("nan")

        rows.append(
            dict(
                au=code,
                clips=len(counts),
                events=float(np.mean(counts)),
                rate_kev_s=float(np.mean(rates)) / 1e3,
                on_fraction=float(p.mean()) if p.size else float("nan"),
                u=float(u.mean()) if u.size else float("nan"),
                v=float(v.mean()) if v.size else float("nan"),
                u05=q(u, 0.05),
                u95=q(u, 0.95),
                v05=q(v, 0.05),
                v95=q(v, 0.95),
                in_region=float(inside.mean()) if u.size else float("nan"),
                noise_kev_s=float(np.mean(noise)) / 1e3,
            )
        )
    return rows


def statistics_table(rows: Sequence[dict]) -> str:
    """Markdown table of :func:`au_statistics` rows."""
    head = (
        "| AU | events/clip | signal kev/s | ON share | centroid u, v | u p5..p95 | v p5..p95 | in region | "
        "noise kev/s |\n|---|---:|---:|---:|---|---|---|---:|---:|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {au_description(r['au'])} | {r['events']:.0f} | {r['rate_kev_s']:.1f} | {r['on_fraction']:.2f} | "
            f"{r['u']:+.2f}, {r['v']:+.2f} | {r['u05']:+.2f}..{r['u95']:+.2f} | {r['v05']:+.2f}..{r['v95']:+.2f} | "
            f"{r['in_region']:.2f} | {r['noise_kev_s']:.1f} |"
        )
    return "\n".join(lines)
