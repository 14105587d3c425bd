"""Synthetic rig: a procedural face performing the paper's 21 AUs, rendered for a DAVIS346 (events +
APS), an EVK4 (events) and a webcam, with per-sensor clocks and transport delays. No rclpy, no assets.

Layers (each usable alone):

- :mod:`.aus` — AU deformations and trial timing (onset / apex / offset, 170-500 ms);
- :mod:`.face` — :class:`Subject`, :class:`FaceParams`, :class:`FaceAnimation`, :func:`face_layout`;
- :mod:`.render` — camera views, albedo/shading/irradiance, APS and webcam frames;
- :mod:`.dvs` — the ESIM/v2e-style event simulator;
- :mod:`.clock` — sensor clocks and transport;
- :mod:`.rig` — :class:`SyntheticRig`, :class:`Clip`, :func:`contact_sheet`, :func:`au_statistics`;
- :mod:`.streams` — synthetic event streams for benchmarks and tests (uniform, face-like, blob, the rig's packets).

Example
-------
>>> rig = SyntheticRig(subjects=1, sensors=("davis346",))      # doctest: +SKIP
>>> clip = rig.clip(0, "AU12", trial=0)                         # doctest: +SKIP
>>> ev = clip.events("davis346")        # EVENT_DTYPE, µs on the DAVIS clock   # doctest: +SKIP
"""

from microexp.synth.aus import AU_DEFORMATIONS, AU_REGIONS, AUTrial, make_trial
from microexp.synth.clock import Link, SensorClock, Transport
from microexp.synth.dvs import DAVIS346_DVS, EVK4_DVS, DvsClipSimulator, DvsConfig, DvsPixelArray, simulate
from microexp.synth.face import PARAM_NAMES, FaceAnimation, FaceParams, Subject, face_layout
from microexp.synth.render import DAVIS346_VIEW, EVK4_VIEW, CameraView, FrameRenderer, log_irradiance, webcam_view
from microexp.synth.rig import (
    Clip,
    Label,
    RigMessage,
    SensorSetup,
    SyntheticRig,
    au_statistics,
    contact_sheet,
    event_image,
    statistics_table,
)

__all__ = [
    "AU_DEFORMATIONS",
    "AU_REGIONS",
    "AUTrial",
    "make_trial",
    "Link",
    "SensorClock",
    "Transport",
    "DAVIS346_DVS",
    "EVK4_DVS",
    "DvsClipSimulator",
    "DvsConfig",
    "DvsPixelArray",
    "simulate",
    "PARAM_NAMES",
    "FaceAnimation",
    "FaceParams",
    "Subject",
    "face_layout",
    "DAVIS346_VIEW",
    "EVK4_VIEW",
    "CameraView",
    "FrameRenderer",
    "log_irradiance",
    "webcam_view",
    "Clip",
    "Label",
    "RigMessage",
    "SensorSetup",
    "SyntheticRig",
    "au_statistics",
    "contact_sheet",
    "event_image",
    "statistics_table",
]
