"""A procedural 2-D face on a 3-D head ellipsoid: subjects, face parameters, animation and layout.

No external assets. A face is built in *face units*: u to the image right, v down, z towards the camera,
origin at the head centre, head half-height 1. Features (brows, eyes with lids, iris and pupil, nose,
cheeks, lips, chin, jaw line, hair) are polygons and polylines whose vertices are placed on the head
ellipsoid (semi-axes ``face_width``, 1, ``head_depth``; the nose rises out of it), rotated about a neck
pivot behind and below the head centre (yaw, pitch, roll), and projected orthographically. The head
outline is the exact silhouette of the rotated ellipsoid, so a head turn shifts and foreshortens the face
the way a real one does, with the nose moving further than the outline.

A :class:`FaceLayout` is the result for one instant: primitives in image-plane face units plus the head
pose, ready for :mod:`microexp.synth.render` to draw for any camera at any scale.

The parameters are the named fields of :data:`PARAM_NAMES`; zero everywhere is the neutral face. AUs
(:mod:`microexp.synth.aus`) move them; :class:`FaceAnimation` adds idle micro-motion (head sway) and,
optionally, natural blinks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from microexp.errors import ParameterError
from microexp.synth.aus import AUTrial, raised_cosine

#: Face parameters. Closures, wrinkles and AU strengths are 0..1; head angles are radians (yaw > 0 turns
#: the head to the subject's left = image right; pitch > 0 tips it up); head_dx/dy in face units; gaze
#: -1..1 (x > 0 = image right, y > 0 = down).
PARAM_NAMES: tuple[str, ...] = (
    "brow_outer_raise",
    "brow_lower",
    "brow_together",
    "upper_lid_raise",
    "lid_droop",
    "eye_closure",
    "cheek_raise",
    "nose_wrinkle",
    "lip_corner_pull",
    "lip_corner_depress",
    "chin_raise",
    "lip_tighten",
    "jaw_drop",
    "head_yaw",
    "head_pitch",
    "head_roll",
    "head_dx",
    "head_dy",
    "gaze_x",
    "gaze_y",
)
_PARAM_INDEX: Dict[str, int] = {name: i for i, name in enumerate(PARAM_NAMES)}
NUM_PARAMS = len(PARAM_NAMES)

# Neck pivot of head rotations, in face units (below and behind the head centre).
_PIVOT = np.array([0.0, 0.6, -0.4])


class FaceParams:
    """Values of :data:`PARAM_NAMES`, read as attributes (``p.jaw_drop``); all zero = neutral face."""

    __slots__ = ("values",)

    def __init__(self, values: Optional[Sequence[float]] = None):
        v = np.zeros(NUM_PARAMS) if values is None else np.asarray(values, dtype=np.float64).copy()
        if v.shape != (NUM_PARAMS,):
            raise ParameterError(f"FaceParams needs {NUM_PARAMS} values, got shape {v.shape}")
        self.values = v

    def __getattr__(self, name: str) -> float:
        try:
            return float(self.values[_PARAM_INDEX[name]])
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> "FaceParams":
        """Neutral face with the named parameters set; unknown names raise ParameterError."""
        p = cls()
        for name, value in values.items():
            if name not in _PARAM_INDEX:
                raise ParameterError(f"unknown face parameter {name!r}; known: {', '.join(PARAM_NAMES)}")
            p.values[_PARAM_INDEX[name]] = value
        return p

    def as_dict(self) -> Dict[str, float]:
        return {name: float(self.values[i]) for i, name in enumerate(PARAM_NAMES)}

    def __repr__(self) -> str:
        nonzero = {k: round(v, 4) for k, v in self.as_dict().items() if v != 0.0}
        return f"FaceParams({nonzero})"


def param_index(name: str) -> int:
    """Column of parameter ``name`` in :meth:`FaceAnimation.param_matrix`."""
    return _PARAM_INDEX[name]


# ----------------------------------------------------------------------------------------------- subjects

_SKIN_LIGHT = np.array([0.86, 0.69, 0.58])
_SKIN_DARK = np.array([0.36, 0.24, 0.17])
_HAIR = (
    np.array([0.10, 0.08, 0.07]),
    np.array([0.30, 0.19, 0.10]),
    np.array([0.62, 0.50, 0.30]),
    np.array([0.45, 0.42, 0.40]),
)
_IRIS = (
    np.array([0.30, 0.18, 0.09]),
    np.array([0.25, 0.40, 0.55]),
    np.array([0.30, 0.42, 0.25]),
    np.array([0.18, 0.11, 0.06]),
)


def _rgb(v) -> tuple:
    return tuple(float(c) for c in np.clip(v, 0.0, 1.0))


@dataclass(frozen=True)
class Subject:
    """One synthetic person: face proportions, colours, framing and lighting. Build with :meth:`generate`.

    Geometry is in face units (head half-height 1). ``scale`` multiplies the face size of every camera,
    ``offset_x``/``offset_y`` shift the face by fractions of the frame (the subject does not sit exactly
    centred). ``lux`` is the illuminance on the face (the paper measured 150-1400 lx); the light comes
    from ``light_azimuth`` (rad, > 0 = image right) and ``light_elevation`` (rad, > 0 = above).
    """

    subject_id: int
    seed: int
    face_width: float
    head_depth: float
    eye_spacing: float
    eye_y: float
    eye_size: float
    brow_gap: float
    brow_thickness: float
    nose_tip_y: float
    nose_width: float
    mouth_y: float
    mouth_width: float
    lip_thickness: float
    hair_y: float
    skin_rgb: tuple
    hair_rgb: tuple
    iris_rgb: tuple
    lip_rgb: tuple
    shirt_rgb: tuple
    background_rgb: tuple
    scale: float
    offset_x: float
    offset_y: float
    lux: float
    light_azimuth: float
    light_elevation: float
    sway_amplitude: float
    sway_freqs: tuple = field(repr=False)
    sway_phases: tuple = field(repr=False)
    blink_rate_hz: float = 0.3

    @classmethod
    def generate(cls, subject_id: int, seed: int = 0, *, lux: Optional[float] = None) -> "Subject":
        """Draw subject ``subject_id`` (deterministic in ``(subject_id, seed)``).

        Example
        -------
        >>> s = Subject.generate(3, seed=7)
        >>> s == Subject.generate(3, seed=7), 150 <= s.lux <= 1400
        (True, True)
        """
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(subject_id), 0x5B])
        u = rng.uniform
        tone = u(0.0, 1.0)
        skin = (1 - tone) * _SKIN_LIGHT + tone * _SKIN_DARK
        hair = _HAIR[int(rng.integers(len(_HAIR)))] * u(0.85, 1.15)
        iris = _IRIS[int(rng.integers(len(_IRIS)))] * u(0.85, 1.15)
        lips = skin * np.array([0.92, 0.62, 0.62]) * u(0.85, 1.0)
        shirt = rng.uniform(0.1, 0.8, 3)
        wall = np.array([0.72, 0.70, 0.66]) * u(0.8, 1.1)
        draw_lux = float(np.exp(u(np.log(150.0), np.log(1400.0)))) if lux is None else float(lux)
        if not 1.0 <= draw_lux <= 1e5:
            raise ParameterError(f"lux must be in [1, 1e5], got {draw_lux}")
        return cls(
            subject_id=int(subject_id),
            seed=int(seed),
            face_width=u(0.70, 0.80),
            head_depth=u(0.80, 0.90),
            eye_spacing=u(0.28, 0.33),
            eye_y=u(-0.14, -0.08),
            eye_size=u(0.9, 1.1),
            brow_gap=u(0.16, 0.20),
            brow_thickness=u(0.035, 0.055),
            nose_tip_y=u(0.18, 0.26),
            nose_width=u(0.09, 0.12),
            mouth_y=u(0.44, 0.50),
            mouth_width=u(0.17, 0.21),
            lip_thickness=u(0.8, 1.2),
            hair_y=u(-0.66, -0.56),
            skin_rgb=_rgb(skin),
            hair_rgb=_rgb(hair),
            iris_rgb=_rgb(iris),
            lip_rgb=_rgb(lips),
            shirt_rgb=_rgb(shirt),
            background_rgb=_rgb(wall),
            scale=u(0.92, 1.08),
            offset_x=u(-0.03, 0.03),
            offset_y=u(-0.03, 0.03),
            lux=draw_lux,
            light_azimuth=u(-0.9, 0.9),
            light_elevation=u(0.15, 0.7),
            sway_amplitude=u(0.6, 1.4),
            sway_freqs=tuple(float(f) for f in rng.uniform(0.1, 0.6, 15)),
            sway_phases=tuple(float(f) for f in rng.uniform(0, 2 * np.pi, 15)),
            blink_rate_hz=u(0.2, 0.4),
        )

    def light_vector(self) -> np.ndarray:
        """Unit vector towards the light in face axes (u right, v down, z towards the camera)."""
        az, el = self.light_azimuth, self.light_elevation
        return np.array([np.sin(az) * np.cos(el), -np.sin(el), np.cos(az) * np.cos(el)])


# ------------------------------------------------------------------------------------------------ animation


class FaceAnimation:
    """Face parameters over scene time for one clip: an AU trial, idle micro-motion, optional blinks.

    Parameters
    ----------
    subject: the person.
    trial: the AU performance (None: a neutral clip).
    duration_s: clip length (s); defaults to the trial's.
    idle_motion: scale of the subject's head sway (0 = perfectly still; 1 = about ±0.25 % of the head
        height and ±0.15° at 0.1-0.6 Hz — a still, seated person's micro-motion).
    natural_blinks: add spontaneous blinks (Poisson, the subject's blink rate) outside the AU movement;
        off by default so that a clip's label is the only thing that moves.
    """

    def __init__(
        self,
        subject: Subject,
        trial: Optional[AUTrial] = None,
        *,
        duration_s: Optional[float] = None,
        idle_motion: float = 1.0,
        natural_blinks: bool = False,
    ):
        self.subject = subject
        self.trial = trial
        self.duration_s = float(duration_s if duration_s is not None else (trial.duration_s if trial else 2.5))
        if idle_motion < 0:
            raise ParameterError(f"idle_motion must be >= 0, got {idle_motion}")
        self.idle_motion = float(idle_motion)
        self._delta = np.zeros(NUM_PARAMS)
        if trial is not None:
            for name, value in trial.deformation().items():
                self._delta[_PARAM_INDEX[name]] = value
        self._blinks = np.zeros(0)
        if natural_blinks:
            rng = np.random.default_rng(
                [
                    subject.seed & 0xFFFFFFFF,
                    subject.subject_id,
                    trial.au if trial else 0,
                    trial.trial if trial else 0,
                    0xB1,
                ]
            )
            n = rng.poisson(subject.blink_rate_hz * self.duration_s)
            starts = np.sort(rng.uniform(0.0, self.duration_s - 0.25, n))
            if trial is not None:
                starts = starts[(starts + 0.25 < trial.onset_s - 0.1) | (starts > trial.end_s + 0.1)]
            self._blinks = starts

    def _idle(self, t: np.ndarray) -> np.ndarray:
        s = self.subject
        out = np.zeros((t.shape[0], NUM_PARAMS))
        if self.idle_motion == 0.0:
            return out
        f = np.asarray(s.sway_freqs).reshape(5, 3)
        ph = np.asarray(s.sway_phases).reshape(5, 3)
        amp = self.idle_motion * s.sway_amplitude
        scales = {"head_dx": 0.002, "head_dy": 0.0015, "head_yaw": 0.002, "head_pitch": 0.0015, "head_roll": 0.0015}
        for k, (name, a) in enumerate(scales.items()):
            wave = np.sin(2 * np.pi * f[k][None, :] * t[:, None] + ph[k][None, :]).sum(axis=1) / np.sqrt(1.5)
            out[:, _PARAM_INDEX[name]] = amp * a * wave / 2.0
        return out

    def _blink_closure(self, t: np.ndarray) -> np.ndarray:
        closure = np.zeros_like(t)
        for b in self._blinks:
            close = raised_cosine((t - b) / 0.07)
            reopen = 1.0 - raised_cosine((t - b - 0.09) / 0.13)
            closure = np.maximum(closure, np.where(t < b + 0.07, close, np.where(t < b + 0.09, 1.0, reopen)))
        return closure

    def param_matrix(self, t) -> np.ndarray:
        """Parameters at scene times ``t`` (s), shape (len(t), NUM_PARAMS)."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        out = self._idle(t)
        if self.trial is not None:
            out += self.trial.activation(t)[:, None] * self._delta[None, :]
        if self._blinks.size:
            j = _PARAM_INDEX["eye_closure"]
            out[:, j] = np.maximum(out[:, j], self._blink_closure(t))
        return out

    def params(self, t: float) -> FaceParams:
        """Parameters at scene time ``t`` (s)."""
        return FaceParams(self.param_matrix([t])[0])

    def moving(self, t) -> np.ndarray:
        """True where something other than idle sway changes (AU onset/offset or a natural blink)."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        m = self.trial.moving(t) if self.trial is not None else np.zeros(t.shape, bool)
        for b in self._blinks:
            m |= (t >= b) & (t < b + 0.22)
        return m


# --------------------------------------------------------------------------------------------------- layout


@dataclass
class Primitive:
    """A filled polygon (``thickness`` 0) or an open polyline (``thickness`` in face units), in image-plane
    face units, with an RGB albedo in 0..1."""

    pts: np.ndarray
    rgb: tuple
    thickness: float = 0.0


@dataclass
class HeadPose:
    """What shading needs: rotation ``R`` (face -> world), world translation ``t`` (world = R p + t), the
    head ellipsoid's semi-axes and the jaw drop (face units) that stretches the lower outline."""

    R: np.ndarray
    t: np.ndarray
    axes: np.ndarray
    jaw: float = 0.0

    @staticmethod
    def jaw_weight(along_down):
        """How much of the jaw drop a point moves with, given its distance below the head centre along the
        head's down axis (face units): none above 0.25, all of it at the chin."""
        return np.clip((np.asarray(along_down) - 0.25) / 0.65, 0.0, 1.0) ** 2


@dataclass
class FaceLayout:
    """Everything drawable at one instant: primitives in paint order (background first) and the pose."""

    primitives: list
    pose: HeadPose
    background_rgb: tuple
    head_outline: np.ndarray

    def bbox(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the head, hair and face primitives in face units (body excluded)."""
        pts = np.concatenate([self.head_outline] + [p.pts for p in self.primitives[3:]])
        return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_roll @ r_pitch @ r_yaw


_UNIT_STEPS: Dict[int, np.ndarray] = {}


def _steps(n: int) -> np.ndarray:
    """linspace(0, 1, n) as a column, cached."""
    if n not in _UNIT_STEPS:
        _UNIT_STEPS[n] = np.linspace(0.0, 1.0, n)[:, None]
    return _UNIT_STEPS[n]


_SYM_STEPS: Dict[int, np.ndarray] = {}


def _sym(n: int) -> np.ndarray:
    """linspace(-1, 1, n), cached (read-only)."""
    if n not in _SYM_STEPS:
        _SYM_STEPS[n] = np.linspace(-1.0, 1.0, n)
        _SYM_STEPS[n].flags.writeable = False
    return _SYM_STEPS[n]


def _xy(x, y) -> np.ndarray:
    out = np.empty((len(x), 2))
    out[:, 0] = x
    out[:, 1] = y
    return out


def _bezier(p0, p1, p2, n: int) -> np.ndarray:
    s = _steps(n)
    return (1 - s) ** 2 * np.asarray(p0) + 2 * s * (1 - s) * np.asarray(p1) + s**2 * np.asarray(p2)


def _through(p0, mid, p2, n: int) -> np.ndarray:
    """Quadratic curve from p0 through ``mid`` (at its middle) to p2."""
    ctrl = 2 * np.asarray(mid, float) - 0.5 * (np.asarray(p0, float) + np.asarray(p2, float))
    return _bezier(p0, ctrl, p2, n)


_CIRCLES: Dict[int, np.ndarray] = {}


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> np.ndarray:
    if n not in _CIRCLES:
        a = np.linspace(0, 2 * np.pi, n, endpoint=False)
        _CIRCLES[n] = np.stack([np.cos(a), np.sin(a)], axis=1)
    return _CIRCLES[n] * (rx, ry) + (cx, cy)


def _mix(rgb, target, k: float) -> tuple:
    return tuple(min(1.0, max(0.0, (1 - k) * float(a) + k * float(b))) for a, b in zip(rgb, target))


def _shade(rgb, k: float) -> tuple:
    return tuple(min(1.0, max(0.0, float(a) * k)) for a in rgb)


class _Head:
    """Places face-unit points on the head surface and projects them for one pose."""

    def __init__(self, s: Subject, p: FaceParams):
        self.a, self.b, self.c = s.face_width, 1.0, s.head_depth
        self.s = s
        self.R = _rotation(p.head_yaw, p.head_pitch, p.head_roll)
        self.t = _PIVOT - self.R @ _PIVOT + np.array([p.head_dx, p.head_dy, 0.0])

    def depth(self, uv: np.ndarray) -> np.ndarray:
        u, v = uv[:, 0], uv[:, 1]
        z = self.c * np.sqrt(np.maximum(0.03, 1.0 - (u / self.a) ** 2 - v**2))
        s = self.s
        rise = np.clip((v - s.eye_y) / (s.nose_tip_y - s.eye_y), 0.0, 1.0) ** 1.2
        below = np.exp(-(np.maximum(v - s.nose_tip_y, 0.0) ** 2) / 0.05**2)
        return z + 0.20 * rise * below * np.exp(-((u / 0.08) ** 2))

    def project(self, uv, z=None) -> np.ndarray:
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        zz = self.depth(uv) if z is None else np.broadcast_to(np.asarray(z, float), uv.shape[:1])
        R, t = self.R, self.t
        out = uv @ R[:2, :2].T
        out += zz[:, None] * R[:2, 2][None, :]
        out += t[:2]
        return out

    def silhouette(self, scale=(1.0, 1.0, 1.0), centre=(0.0, 0.0, 0.0), n: int = 72) -> np.ndarray:
        """Outline of the rotated ellipsoid (semi-axes scaled by ``scale``, centred at ``centre`` in face
        axes): the Schur complement of its quadric on the view direction gives the projected ellipse."""
        axes = np.array([self.a, self.b, self.c]) * np.asarray(scale)
        A = (self.R * (1.0 / axes**2)[None, :]) @ self.R.T
        m00 = A[0, 0] - A[0, 2] * A[2, 0] / A[2, 2]
        m01 = A[0, 1] - A[0, 2] * A[2, 1] / A[2, 2]
        m11 = A[1, 1] - A[1, 2] * A[2, 1] / A[2, 2]
        # Eigen-decomposition of the symmetric 2x2 [[m00, m01], [m01, m11]] in closed form; the angle is
        # continuous in the pose, so outline vertices do not jump between frames.
        theta = 0.5 * np.arctan2(2.0 * m01, m00 - m11)
        c, s = np.cos(theta), np.sin(theta)
        l0 = m00 * c * c + 2 * m01 * c * s + m11 * s * s
        l1 = m00 * s * s - 2 * m01 * c * s + m11 * c * c
        circle = _ellipse(0.0, 0.0, 1.0 / np.sqrt(l0), 1.0 / np.sqrt(l1), n)
        rot = np.array([[c, -s], [s, c]])
        centre_world = self.R @ np.asarray(centre, float) + self.t
        return circle @ rot.T + centre_world[:2]


class _FaceParts:
    """What :func:`face_layout` builds: primitives in paint order; the face-surface points of each are
    projected together at the end."""

    def __init__(self, subject: Subject, params: FaceParams):
        self.s, self.p = subject, params
        self.head = _Head(subject, params)
        self.prims: list[Primitive] = []
        self.skin = np.asarray(subject.skin_rgb)
        self.hair = np.asarray(subject.hair_rgb)
        self.pending: list[tuple[int, np.ndarray]] = []  # face-surface points, projected together at the end

    def add(self, pts, rgb, thickness=0.0, body=False):
        pts = np.asarray(pts, float)
        self.prims.append(Primitive(pts, tuple(rgb), thickness))
        if not body:
            self.pending.append((len(self.prims) - 1, pts))

    def wrinkle(self, k):
        return _shade(self.skin, 1.0 - 0.35 * min(1.0, k))

    def project_pending(self) -> None:
        """Project the face-surface points of every primitive through the rotated head."""
        projected = self.head.project(np.concatenate([pts for _, pts in self.pending]))
        start = 0
        for i, pts in self.pending:
            self.prims[i].pts = projected[start : start + len(pts)]
            start += len(pts)


def _body(f: _FaceParts):
    """The torso, shirt and neck."""
    s, skin = f.s, f.skin
    # Body: static (the sway is the head's), drawn without rotation.
    f.add([(-0.30, 0.5), (0.30, 0.5), (0.34, 1.5), (-0.34, 1.5)], _shade(skin, 0.78), body=True)
    f.add([(-0.36, 1.32), (0.36, 1.32), (1.6, 1.62), (2.6, 3.6), (-2.6, 3.6), (-1.6, 1.62)], s.shirt_rgb, body=True)
    f.add([(-0.26, 1.31), (0.26, 1.31), (0.0, 1.62)], _shade(skin, 0.74), body=True)


def _hair_and_skin(f: _FaceParts) -> tuple[float, np.ndarray]:
    """The hair volume and the face skin; returns (jaw drop, head outline)."""
    s, p, head, skin, hair = f.s, f.p, f.head, f.skin, f.hair
    # Hair volume behind the head, then the skin (hairline + lower silhouette arc, with the jaw).
    hair_back = head.silhouette((1.07, 0.93, 1.05), (0.0, -0.16, -0.06))
    f.prims.append(Primitive(hair_back, tuple(hair)))
    jaw = 0.14 * p.jaw_drop
    hu = 0.97 * s.face_width * _sym(17)
    hairline = head.project(_xy(hu, s.hair_y + 0.20 * (hu / s.face_width) ** 2))
    outline = head.silhouette()
    centre = head.t[:2] + head.R[:2, :] @ np.zeros(3)
    down = head.R[:2, 1] / np.linalg.norm(head.R[:2, 1])
    i_r = int(np.argmin(((outline - hairline[-1]) ** 2).sum(1)))
    i_l = int(np.argmin(((outline - hairline[0]) ** 2).sum(1)))
    i_b = int(np.argmax((outline - centre) @ down))
    n = len(outline)
    fwd = [(i_r + k) % n for k in range((i_l - i_r) % n + 1)]
    arc_idx = fwd if i_b in fwd else [(i_r - k) % n for k in range((i_r - i_l) % n + 1)]
    arc = outline[arc_idx].copy()
    arc += jaw * HeadPose.jaw_weight((arc - centre) @ down)[:, None] * down[None, :]
    face_poly = np.concatenate([hairline, arc])
    f.prims.append(Primitive(face_poly, tuple(skin)))
    head_outline = np.concatenate([hair_back, face_poly])
    return jaw, head_outline


def _wrinkles(f: _FaceParts):
    """Forehead wrinkles (AU2) and glabella lines (AU4)."""
    s, p = f.s, f.p
    # Forehead wrinkles (AU2) and glabella lines (AU4): drawn faintly as they deepen.
    brow_y = s.eye_y - s.brow_gap
    if p.brow_outer_raise > 0.02:
        for k in range(3):
            y0 = brow_y - 0.11 - 0.065 * k - 0.03 * p.brow_outer_raise
            xs = 0.36 * _sym(13)
            f.add(_xy(xs, y0 + 0.05 * (xs / 0.36) ** 2), f.wrinkle(p.brow_outer_raise), 0.008)
    if p.brow_lower > 0.02:
        for sx in (-1, 1):
            f.add(
                [(sx * 0.04, brow_y - 0.02), (sx * 0.03, brow_y + 0.03), (sx * 0.035, brow_y + 0.07)],
                f.wrinkle(p.brow_lower),
                0.008,
            )


def _cheeks(f: _FaceParts):
    """The cheeks (AU6, AU12)."""
    p, skin = f.p, f.skin
    # Cheeks (AU6 lifts them; AU12 a little).
    cheek_rgb = _mix(skin, (1.0, 0.66, 0.60), 0.16 + 0.14 * p.cheek_raise)
    for sx in (-1, 1):
        f.add(
            _ellipse(
                sx * 0.37, 0.17 - 0.07 * p.cheek_raise - 0.02 * p.lip_corner_pull, 0.12, 0.085 + 0.01 * p.cheek_raise
            ),
            cheek_rgb,
        )


def _eyes(f: _FaceParts):
    """Eyes, lids, lashes and crow's feet."""
    s, p, skin, hair = f.s, f.p, f.skin, f.hair
    closure = float(
        np.clip(p.eye_closure + 0.45 * p.lid_droop + 0.12 * p.cheek_raise + 0.25 * max(p.gaze_y, 0.0), 0.0, 1.0)
    )
    raise_ = p.upper_lid_raise + 0.25 * max(-p.gaze_y, 0.0)
    ew = 0.13 * s.eye_size
    h_up, h_lo = 0.045 * s.eye_size, 0.030 * s.eye_size
    iris_r = 0.046 * s.eye_size
    lid_skin = tuple(skin)  # same as the face: the lid regions must not show as patches
    lash = _shade(hair, 0.6)
    sclera = (0.88, 0.86, 0.82)
    for sx in (-1, 1):
        ex, ey = sx * s.eye_spacing, s.eye_y
        xs = ew * _sym(13)
        k = (1.0 - (xs / ew) ** 2) ** 0.8
        tilt = 0.012 * sx * xs / ew  # outer corner a little higher
        lower = ey + h_lo * k * (1.0 - 0.55 * p.cheek_raise) - tilt
        upper_open = ey - h_up * k * (1.0 + 0.9 * raise_) - tilt
        upper = (1.0 - closure) * upper_open + closure * lower
        xa = ex + xs
        f.add(np.concatenate([_xy(xa, upper), _xy(xa, lower)[::-1]]), sclera)
        ix = ex + 0.055 * s.eye_size * p.gaze_x
        iy = ey + 0.034 * s.eye_size * p.gaze_y
        f.add(_ellipse(ix, iy, iris_r, iris_r, 20), s.iris_rgb)
        f.add(_ellipse(ix, iy, 0.42 * iris_r, 0.42 * iris_r, 14), (0.03, 0.03, 0.03))
        f.add(_ellipse(ix - 0.35 * iris_r, iy - 0.35 * iris_r, 0.15 * iris_r, 0.15 * iris_r, 8), (0.95, 0.95, 0.95))
        m = 0.03
        top = ey - 2.6 * h_up
        xr = np.concatenate([[ex - ew - m], xa, [ex + ew + m]])
        up_r = np.concatenate([[upper[0]], upper, [upper[-1]]])
        lo_r = np.concatenate([[lower[0]], lower, [lower[-1]]])
        f.add(np.concatenate([_xy(xr, up_r), [(ex + ew + m, top), (ex - ew - m, top)]]), lid_skin)
        f.add(
            np.concatenate(
                [_xy(xr, lo_r), [(ex + ew + m, ey + 2.4 * h_lo + 0.02), (ex - ew - m, ey + 2.4 * h_lo + 0.02)]]
            ),
            skin,
        )
        f.add(_xy(xa, upper), lash, 0.012)
        f.add(_xy(xa, lower), _shade(skin, 0.75), 0.005)
        crease = upper_open - 0.03 - 0.01 * raise_
        f.add(_xy(xa[2:-2], crease[2:-2]), _shade(skin, 0.82), 0.006)
        if p.cheek_raise > 0.02:  # crow's feet
            cx = ex + sx * (ew + 0.025)
            for dy in (-0.025, 0.0, 0.025):
                f.add([(cx, ey + 0.4 * dy), (cx + sx * 0.05, ey + dy * 1.6)], f.wrinkle(p.cheek_raise), 0.006)


def _brows(f: _FaceParts):
    """The brows (AU2, AU4, AU9)."""
    s, p, hair = f.s, f.p, f.hair
    brow_y = s.eye_y - s.brow_gap
    # Brows (AU2 outer up; AU4 down and together; AU9 pulls the inner ends down a little).
    brow_rgb = _shade(hair, 0.9)
    for sx in (-1, 1):
        inner = (sx * (0.10 - 0.035 * p.brow_together), brow_y + 0.012 + 0.05 * p.brow_lower + 0.025 * p.nose_wrinkle)
        mid = (sx * 0.30, brow_y - 0.035 - 0.045 * p.brow_outer_raise + 0.035 * p.brow_lower)
        outer = (sx * 0.53 * s.face_width / 0.75, brow_y - 0.095 * p.brow_outer_raise + 0.01 * p.brow_lower)
        centre_line = _through(inner, mid, outer, 12)
        th = s.brow_thickness * (1.2 - 0.7 * _steps(12)[:, 0])
        top = _xy(centre_line[:, 0], centre_line[:, 1] - th / 2)
        bot = _xy(centre_line[:, 0], centre_line[:, 1] + th / 2)
        f.add(np.concatenate([top, bot[::-1]]), brow_rgb)


def _nose(f: _FaceParts) -> tuple[float, float, float]:
    """The nose; returns (tip y, width, AU9 lift) for the folds beside it."""
    s, p, skin = f.s, f.p, f.skin
    # Nose: shadow side, bridge wrinkles (AU9), nostrils and wings (lifted and flared by AU9).
    tip = s.nose_tip_y
    nw = s.nose_width * (1.0 + 0.2 * p.nose_wrinkle)
    lift = 0.03 * p.nose_wrinkle
    shadow_side = -1.0 if s.light_azimuth > 0 else 1.0
    dark = 0.80 + 0.12 * (1.0 - min(1.0, abs(np.sin(s.light_azimuth)) * 2))
    f.add(
        [
            (shadow_side * 0.025, s.eye_y + 0.03),
            (shadow_side * 0.06, tip - 0.04),
            (shadow_side * nw * 0.9, tip),
            (shadow_side * 0.04, tip + 0.02 - lift),
            (shadow_side * 0.02, tip - 0.02),
        ],
        _shade(skin, dark),
    )
    if p.nose_wrinkle > 0.02:
        for k in range(3):
            y0 = s.eye_y + 0.04 + 0.035 * k
            f.add([(-0.05, y0 + 0.01), (0.0, y0 - 0.01), (0.05, y0 + 0.01)], f.wrinkle(p.nose_wrinkle), 0.007)
    for sx in (-1, 1):
        f.add(
            _ellipse(sx * 0.45 * nw, tip + 0.025 - lift, 0.024 * (1 + 0.3 * p.nose_wrinkle), 0.011, 12),
            _shade(skin, 0.30),
        )
        f.add(
            _through(
                (sx * 0.35 * nw, tip - 0.04 - lift), (sx * nw, tip - lift), (sx * 0.55 * nw, tip + 0.035 - lift), 7
            ),
            _shade(skin, 0.72),
            0.007,
        )
    return tip, nw, lift


def _mouth(f: _FaceParts, jaw: float) -> tuple:
    """The lips (and mouth opening); returns (mouth y, half width, corner y, lip x, lower lip bottom)."""
    s, p = f.s, f.p
    my = s.mouth_y - 0.015 * p.nose_wrinkle - 0.012 * p.chin_raise
    mw = s.mouth_width * (1.0 - 0.10 * p.lip_tighten) + 0.04 * p.lip_corner_pull - 0.02 * p.jaw_drop
    corner_y = my - 0.06 * p.lip_corner_pull + 0.05 * p.lip_corner_depress + 0.35 * jaw + 0.02 * p.chin_raise
    opening = 0.85 * jaw
    thin = 1.0 - 0.55 * p.lip_tighten
    ul = 0.045 * s.lip_thickness * thin
    ll = (0.062 * s.lip_thickness + 0.02 * p.chin_raise) * thin
    xs = mw * _sym(17)
    q = (xs / mw) ** 2
    meet = my + (corner_y - my) * q
    bow = 1.0 - 0.18 * np.exp(-((xs / 0.03) ** 2))
    upper_top = meet - ul * (1.0 - q) ** 0.7 * bow - 0.004
    lower_top = meet + opening * (1.0 - q) ** 0.8 - 0.04 * p.chin_raise * (1.0 - q)
    lower_top = np.maximum(lower_top, meet)
    lower_bot = lower_top + ll * (1.0 - q) ** 0.6 + 0.004
    lip_rgb = np.asarray(s.lip_rgb)
    if opening > 0.003:
        f.add(np.concatenate([_xy(xs, meet), _xy(xs, lower_top)[::-1]]), (0.12, 0.04, 0.05))
        teeth = meet + np.minimum(opening, 0.028) * (1.0 - q) ** 0.8
        f.add(np.concatenate([_xy(xs[3:-3], meet[3:-3]), _xy(xs[3:-3], teeth[3:-3])[::-1]]), (0.86, 0.84, 0.78))
    f.add(np.concatenate([_xy(xs, upper_top), _xy(xs, meet)[::-1]]), _shade(lip_rgb, 0.92))
    f.add(np.concatenate([_xy(xs, lower_top), _xy(xs, lower_bot)[::-1]]), lip_rgb)
    f.add(_xy(xs, meet), _shade(lip_rgb, 0.45), 0.006)
    return my, mw, corner_y, xs, lower_bot


def _nasolabial(f: _FaceParts, tip: float, nw: float, lift: float, my: float, mw: float, corner_y: float):
    """Nasolabial folds."""
    p, skin = f.p, f.skin
    # Nasolabial folds follow the mouth corners; AU6/AU12/AU9 deepen them.
    fold = float(np.clip(0.12 + 0.35 * (p.cheek_raise + 0.8 * p.lip_corner_pull + 0.6 * p.nose_wrinkle), 0.0, 0.5))
    for sx in (-1, 1):
        f.add(
            _through(
                (sx * (nw + 0.01), tip - 0.01 - lift),
                (sx * (nw + 0.075), 0.5 * (tip + my)),
                (sx * (mw + 0.03), corner_y + 0.03),
                9,
            ),
            _shade(skin, 1.0 - fold),
            0.008,
        )


def _chin(f: _FaceParts, jaw: float, xs: np.ndarray, lower_bot: np.ndarray):
    """Chin crease and boss (AU17)."""
    p, skin = f.p, f.skin
    # Chin: crease below the lower lip, chin boss (AU17 pushes it up and dimples it); both ride the jaw.
    chin_y = 0.84 + jaw - 0.06 * p.chin_raise
    crease_y = lower_bot[len(xs) // 2] + 0.07 - 0.04 * p.chin_raise
    f.add(
        _through((-0.11, crease_y - 0.01), (0.0, crease_y + 0.012), (0.11, crease_y - 0.01), 9),
        _shade(skin, 0.86 - 0.26 * p.chin_raise),
        0.009 + 0.012 * p.chin_raise,
    )
    f.add(_ellipse(0.0, chin_y, 0.14, 0.065, 18), _shade(skin, 1.10))
    if p.chin_raise > 0.02:
        for dx, dy in ((-0.05, -0.01), (0.04, -0.015), (-0.015, 0.02), (0.055, 0.02), (-0.06, 0.03)):
            f.add(_ellipse(dx, chin_y + dy, 0.018, 0.013, 8), _shade(skin, 1.0 - 0.4 * min(1.0, p.chin_raise)))


def face_layout(subject: Subject, params: FaceParams) -> FaceLayout:
    """Build the drawable face of ``subject`` with ``params`` (see module docstring)."""
    f = _FaceParts(subject, params)
    _body(f)
    jaw, head_outline = _hair_and_skin(f)
    _wrinkles(f)
    _cheeks(f)
    _eyes(f)
    _brows(f)
    tip, nw, lift = _nose(f)
    my, mw, corner_y, xs, lower_bot = _mouth(f, jaw)
    _nasolabial(f, tip, nw, lift, my, mw, corner_y)
    _chin(f, jaw, xs, lower_bot)
    f.project_pending()
    head = f.head
    pose = HeadPose(R=head.R, t=head.t, axes=np.array([head.a, head.b, head.c]), jaw=jaw)
    return FaceLayout(f.prims, pose, subject.background_rgb, head_outline)
