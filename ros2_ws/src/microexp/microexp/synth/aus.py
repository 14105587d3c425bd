"""Action-Unit kinematics of the synthetic face: which face parameters each AU moves, and when.

Each of the paper's 21 AUs (Table 1, :mod:`microexp.aus`) is a fixed *deformation*: a set of named face
parameters (:data:`microexp.synth.face.PARAM_NAMES`) and the value each reaches at full intensity. A trial
scales the deformation by an intensity in [0.6, 1] and plays it with a smooth temporal profile:

    neutral margin | onset (0 -> 1) | apex (held at 1) | offset (1 -> 0) | neutral margin

The movement (onset + apex + offset) lasts 170-500 ms, drawn per trial; onset and offset follow a raised
cosine, whose velocity is zero at both ends. Everything is drawn from ``numpy.random.default_rng`` seeded
with ``(seed, subject_id, au, trial)``, so a trial is reproducible on its own.

Image-direction conventions (the camera faces the subject; images are not mirrored): "left" in AU51 and
AU61 is the *subject's* left, which is the image's right (+x). "Up" is -y in the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping

import numpy as np

from microexp.aus import AU_CODES, AU_NAMES, au_index
from microexp.errors import ParameterError

#: Face parameters moved by each AU at intensity 1 (units: face units for positions, radians for the
#: head, -1..1 for gaze, 0..1 for closures and wrinkle strengths; see microexp.synth.face).
AU_DEFORMATIONS: Dict[int, Mapping[str, float]] = {
    2: {"brow_outer_raise": 1.0},
    4: {"brow_lower": 1.0, "brow_together": 1.0},
    5: {"upper_lid_raise": 1.0},
    6: {"cheek_raise": 1.0},
    9: {"nose_wrinkle": 1.0},
    12: {"lip_corner_pull": 1.0},
    15: {"lip_corner_depress": 1.0},
    17: {"chin_raise": 1.0},
    23: {"lip_tighten": 1.0},
    26: {"jaw_drop": 1.0},
    41: {"lid_droop": 1.0},
    43: {"eye_closure": 1.0},
    45: {"eye_closure": 1.0},
    51: {"head_yaw": 0.40},
    52: {"head_yaw": -0.40},
    53: {"head_pitch": 0.28},
    54: {"head_pitch": -0.28},
    61: {"gaze_x": 1.0},
    62: {"gaze_x": -1.0},
    63: {"gaze_y": -1.0},
    64: {"gaze_y": 1.0},
}

#: Face region where an AU's motion is, for tests and statistics: a box in face units
#: (u right, v down, head half-height 1; u0, v0, u1, v1).
AU_REGIONS: Dict[int, tuple[float, float, float, float]] = {}
_BROWS = (-0.75, -0.55, 0.75, -0.12)
_EYES = (-0.55, -0.28, 0.55, 0.02)
_NOSE = (-0.35, -0.40, 0.35, 0.50)  # AU9 also lowers the inner brows and lifts the upper lip
_CHEEKS = (-0.70, -0.25, 0.70, 0.45)
_MOUTH = (-0.45, 0.25, 0.45, 0.72)
_CHIN = (-0.45, 0.35, 0.45, 1.10)
for _au, _box in (
    (2, _BROWS),
    (4, _BROWS),
    (5, _EYES),
    (6, _CHEEKS),
    (9, _NOSE),
    (12, _MOUTH),
    (15, _MOUTH),
    (17, _CHIN),
    (23, _MOUTH),
    (26, _CHIN),
    (41, _EYES),
    (43, _EYES),
    (45, _EYES),
    (61, _EYES),
    (62, _EYES),
    (63, _EYES),
    (64, _EYES),
):
    AU_REGIONS[_au] = _box
for _au in (51, 52, 53, 54):
    AU_REGIONS[_au] = (-1.2, -1.2, 1.2, 1.2)

# (min, max) fraction of the movement spent in onset and in apex; offset takes the rest.
_PHASE_FRACTIONS: Dict[int, tuple[tuple[float, float], tuple[float, float]]] = {
    45: ((0.30, 0.40), (0.02, 0.08)),  # blink: fast close, hardly any hold, slower reopening
    43: ((0.25, 0.35), (0.30, 0.45)),  # eyes closed: held shut
}
_DEFAULT_FRACTIONS = ((0.30, 0.45), (0.10, 0.30))

PHASES = ("neutral", "onset", "apex", "offset")
MOVEMENT_MIN_S = 0.170
MOVEMENT_MAX_S = 0.500


def au_code(au) -> int:
    """FACS number of ``au`` given as anything :func:`microexp.aus.au_index` accepts ("AU12", 12, "12")."""
    return AU_CODES[au_index(au)]


def au_description(au) -> str:
    """ "AU12 Lip Corner Puller"."""
    i = au_index(au)
    return f"AU{AU_CODES[i]} {AU_NAMES[i]}"


def raised_cosine(x):
    """0 -> 1 as x goes 0 -> 1 (clipped outside), with zero slope at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * x)


@dataclass(frozen=True)
class AUTrial:
    """One elicited AU performance: when it moves, how far, inside a clip of ``duration_s`` seconds.

    Times are seconds from the clip start (scene time, before any sensor clock).
    """

    au: int
    trial: int
    intensity: float
    onset_s: float
    apex_s: float
    offset_s: float
    end_s: float
    duration_s: float

    @property
    def movement_s(self) -> float:
        """Length of the movement, onset start to offset end."""
        return self.end_s - self.onset_s

    def activation(self, t):
        """Intensity profile a(t) in [0, intensity] at scene time(s) ``t`` (s)."""
        t = np.asarray(t, dtype=np.float64)
        rise = raised_cosine((t - self.onset_s) / max(self.apex_s - self.onset_s, 1e-9))
        fall = 1.0 - raised_cosine((t - self.offset_s) / max(self.end_s - self.offset_s, 1e-9))
        a = np.where(t < self.apex_s, rise, np.where(t < self.offset_s, 1.0, fall))
        return self.intensity * a

    def moving(self, t):
        """True where the AU is in onset or offset (its parameters change)."""
        t = np.asarray(t, dtype=np.float64)
        return ((t >= self.onset_s) & (t < self.apex_s)) | ((t >= self.offset_s) & (t < self.end_s))

    def phase(self, t: float) -> str:
        """ "neutral", "onset", "apex" or "offset" at scene time ``t``."""
        if t < self.onset_s or t >= self.end_s:
            return "neutral"
        if t < self.apex_s:
            return "onset"
        if t < self.offset_s:
            return "apex"
        return "offset"

    def phase_boundaries(self) -> list[tuple[float, str]]:
        """[(time_s, phase starting then), ...] from the clip start."""
        return [
            (0.0, "neutral"),
            (self.onset_s, "onset"),
            (self.apex_s, "apex"),
            (self.offset_s, "offset"),
            (self.end_s, "neutral"),
        ]

    def deformation(self) -> Mapping[str, float]:
        """The AU's face-parameter deltas at intensity 1."""
        return AU_DEFORMATIONS[self.au]


def make_trial(
    au,
    trial: int = 0,
    *,
    subject_id: int = 0,
    seed: int = 0,
    duration_s: float = 2.5,
    intensity: float | None = None,
    movement_s: float | None = None,
) -> AUTrial:
    """Draw the timing and intensity of one trial of ``au`` (deterministic in its arguments).

    Parameters
    ----------
    au: the AU ("AU12" or 12).
    trial: trial number; different trials of the same AU differ in timing and intensity.
    subject_id, seed: further seed material.
    duration_s: clip length (s); the paper's clips average 2.5 s.
    intensity: fixed intensity in (0, 1]; drawn uniformly from [0.6, 1] when None.
    movement_s: fixed movement length (s); drawn uniformly from [0.17, 0.5] when None.

    Example
    -------
    >>> tr = make_trial("AU12", 3, seed=1)
    >>> 0.17 <= tr.movement_s <= 0.5 and tr.phase(tr.apex_s) == "apex"
    True
    """
    code = au_code(au)
    if duration_s < 1.0:
        raise ParameterError(f"duration_s must be at least 1.0 s, got {duration_s}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(subject_id), code, int(trial), 0xA0])
    move = float(rng.uniform(MOVEMENT_MIN_S, MOVEMENT_MAX_S)) if movement_s is None else float(movement_s)
    if not 0.05 <= move <= duration_s - 0.6:
        raise ParameterError(f"movement_s must be in [0.05, duration_s - 0.6], got {move}")
    (on_lo, on_hi), (ap_lo, ap_hi) = _PHASE_FRACTIONS.get(code, _DEFAULT_FRACTIONS)
    f_on = rng.uniform(on_lo, on_hi)
    f_ap = rng.uniform(ap_lo, ap_hi)
    amp = float(rng.uniform(0.6, 1.0)) if intensity is None else float(intensity)
    if not 0.0 < amp <= 1.0:
        raise ParameterError(f"intensity must be in (0, 1], got {amp}")
    # Centre the movement with some jitter, keeping at least 0.3 s of neutral margin on each side.
    slack = duration_s - move
    start = float(np.clip(slack / 2 + rng.uniform(-0.15, 0.15) * slack, 0.3, slack - 0.3))
    onset_end = start + f_on * move
    apex_end = onset_end + f_ap * move
    return AUTrial(
        au=code,
        trial=int(trial),
        intensity=amp,
        onset_s=start,
        apex_s=onset_end,
        offset_s=apex_end,
        end_s=start + move,
        duration_s=float(duration_s),
    )
