"""A DAVIS346 through dv-processing 2's ``dv.io.camera.DAVIS``, without ROS: the methods the device path
calls, configuration from the node's parameters, a DAVIS bias file, and the read loop.

Every call goes through a method name listed in :data:`CONFIG_METHODS` or :data:`READ_METHODS`;
:func:`missing_methods` names those the installed class lacks, and the node refuses to start on any (no
silent fallback). The read loop takes any object with the read methods, so a recording replayed through the
same names exercises it without a camera.

DAVIS bias files (``bias_preset``) are text, one bias per line: ``NAME COARSE FINE`` with NAME a member of
``dv.io.camera.DAVIS.Davis346BiasCF`` (e.g. ``On``, ``Off``, ``Diff``, ``Photoreceptor``), COARSE 0..7 and
FINE 0..255; ``#`` and ``%`` start comments.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Callable

from microexp.errors import MicroexpError, ParameterError
from microexp.events.aedat4 import _events_to_numpy, _frame, _imu_to_numpy, _triggers_to_numpy

# DAVIS methods the device path calls to configure the camera, and to read it.
CONFIG_METHODS = (
    "setFrameInterval",
    "setExposureDuration",
    "setAutoExposure",
    "setBackgroundActivityFilter",
    "setDavis346BiasCoarseFine",
    "setDetectorRunning",
    "setDetectorRisingEdges",
    "setDetectorFallingEdges",
    "getSerialNumber",
    "getEventResolution",
)
READ_METHODS = ("getNextEventBatch", "getNextFrame", "getNextImuBatch", "getNextTriggerBatch", "isRunning")
BA_FILTER_UNITS = 8  # background-activity filter time when noise_filter is on: 8 x 250 µs = 2 ms


def missing_methods(cls) -> list[str]:
    """The methods of :data:`CONFIG_METHODS` and :data:`READ_METHODS` that ``cls`` does not have."""
    return [m for m in CONFIG_METHODS + READ_METHODS if not callable(getattr(cls, m, None))]


def davis_class():
    """``dv.io.camera.DAVIS``, checked: MicroexpError naming what is missing."""
    try:
        import dv_processing as dv
    except ImportError as exc:
        raise MicroexpError(f"mode=device needs dv-processing (import dv_processing failed: {exc})") from None
    cls = getattr(getattr(getattr(dv, "io", None), "camera", None), "DAVIS", None)
    if cls is None:
        raise MicroexpError(f"dv-processing {getattr(dv, '__version__', '?')} has no dv.io.camera.DAVIS")
    missing = missing_methods(cls)
    if missing:
        raise MicroexpError(
            f"dv-processing {getattr(dv, '__version__', '?')}: dv.io.camera.DAVIS lacks "
            f"{', '.join(missing)}, which the DAVIS346 device path calls"
        )
    return cls


def open_failure(exc: BaseException) -> str:
    """Why opening a DAVIS failed, in words: dv-processing 2.0 reports that no camera (or none with the serial
    asked for) is on USB as an IndexError out of its empty device list."""
    if isinstance(exc, IndexError) and "_M_range_check" in str(exc):
        return "no DAVIS camera found on USB"
    return str(exc) or type(exc).__name__


def bias_names(cls) -> list[str]:
    return [n for n in cls.Davis346BiasCF.__members__]


def parse_davis_bias_file(path, names: list[str]) -> list[tuple[str, int, int]]:
    """[(name, coarse, fine)] of a DAVIS bias file; ParameterError naming the file and line."""
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ParameterError(f"bias_preset {p}: cannot be read ({exc.strerror or exc})") from None
    out = []
    for n, line in enumerate(lines, 1):
        text = line.split("#")[0].split("%")[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) != 3:
            raise ParameterError(f"bias_preset {p}: line {n}: {line!r} is not 'NAME COARSE FINE'")
        name, coarse, fine = parts
        if name not in names:
            raise ParameterError(
                f"bias_preset {p}: line {n}: unknown bias {name!r} (DAVIS346 biases: {', '.join(names)})"
            )
        try:
            c, f_ = int(coarse), int(fine)
        except ValueError:
            raise ParameterError(f"bias_preset {p}: line {n}: coarse and fine must be integers") from None
        if not (0 <= c <= 7 and 0 <= f_ <= 255):
            raise ParameterError(
                f"bias_preset {p}: line {n}: {name} coarse {c} fine {f_} is outside coarse 0..7, fine 0..255"
            )
        out.append((name, c, f_))
    return out


def configure(cam, cls, p: dict, biases: list[tuple[str, int, int]]) -> list[str]:
    """Apply the node's parameters to ``cam`` through the DAVIS API; return what was set (for the log)."""
    done = []
    cam.setFrameInterval(timedelta(milliseconds=float(p["frame_interval_ms"])))
    done.append(f"frame interval {p['frame_interval_ms']:g} ms")
    if p["exposure_us"]:
        cam.setAutoExposure(False)
        cam.setExposureDuration(timedelta(microseconds=int(p["exposure_us"])))
        done.append(f"exposure {p['exposure_us']} µs")
    else:
        cam.setAutoExposure(True)
        done.append("auto exposure")
    cam.setBackgroundActivityFilter(BA_FILTER_UNITS if p["noise_filter"] else 0)
    done.append(f"noise filter {'2 ms' if p['noise_filter'] else 'off'}")
    for name, coarse, fine in biases:
        cam.setDavis346BiasCoarseFine(getattr(cls.Davis346BiasCF, name), coarse, fine)
    if biases:
        done.append(f"{len(biases)} biases from {p['bias_preset']}")
    trig = bool(p.get("trigger_in", True))
    cam.setDetectorRisingEdges(trig)
    cam.setDetectorFallingEdges(trig)
    cam.setDetectorRunning(trig)
    done.append("trigger detector on (rising + falling)" if trig else "trigger detector off")
    return done


def read_loop(cam, emit: Callable[[str, object], None], stop, idle_s: float = 0.0005) -> str:
    """Pull events, frames, IMU and triggers from ``cam`` until it stops running or ``stop`` is set; each item
    goes to ``emit(kind, data)`` (kinds and data as :func:`microexp.events.aedat4.iter_aedat4` yields them).
    Returns 'stopped' or 'ended'."""
    while not stop.is_set():
        if not cam.isRunning():
            return "ended"
        got = False
        store = cam.getNextEventBatch()
        if store is not None and len(store):
            emit("events", _events_to_numpy(store))
            got = True
        frame = cam.getNextFrame()
        if frame is not None:
            emit("frame", _frame(frame))
            got = True
        imu = cam.getNextImuBatch()
        if imu is not None and len(imu):
            emit("imu", _imu_to_numpy(imu))
            got = True
        trig = cam.getNextTriggerBatch()
        if trig is not None and len(trig):
            emit("triggers", _triggers_to_numpy(trig))
            got = True
        if not got:
            stop.wait(idle_s)
    return "stopped"
