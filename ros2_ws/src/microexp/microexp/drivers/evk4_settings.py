"""EVK4 settings without a device: Metavision bias files and the checked settings an ``evk4_node`` asks of its
camera (:class:`DeviceSettings`, built from the node's parameters by :func:`make_settings`).

Metavision bias files (``.bias``) are text: one bias per line as ``VALUE % NAME`` (VALUE an integer offset
from the factory default on IMX636), lines that start with ``%`` are headers. :func:`parse_bias_file` reads
them; :func:`check_biases` checks names and values against the device's bias table (or, where the device has
no bias facility, against the IMX636 table of OpenEB 5.1.1, :data:`IMX636_BIAS_RANGES`).

Nothing here imports OpenEB or rclpy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from microexp.errors import ParameterError

# Allowed bias offsets of the Sony IMX636 (EVK4) in OpenEB 5.1.1 (hal_psee_plugins, imx636 bias settings):
# name -> (min, max). Used to check a bias file where the device has no bias facility to ask.
IMX636_BIAS_RANGES: dict[str, tuple[int, int]] = {
    "bias_fo": (-150, 200),
    "bias_hpf": (0, 255),
    "bias_diff_on": (-150, 200),
    "bias_diff": (-150, 200),
    "bias_diff_off": (-150, 200),
    "bias_refr": (-50, 255),
}

SYNC_MODES = ("standalone", "master", "slave")


# ----------------------------------------------------------------------------------------------- bias files


def parse_bias_file(path) -> dict[str, int]:
    """Read a Metavision ``.bias`` file: {name: value}. Raises ParameterError naming the file and line."""
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise ParameterError(f"bias_file {p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"bias_file {p}: cannot be read ({exc})") from None
    biases: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("%"):
            continue
        value, sep, name = text.partition("%")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ParameterError(f"bias_file {p}: line {n}: {line!r} is not 'VALUE % NAME'")
        try:
            number = int(value, 10)
        except ValueError:
            raise ParameterError(f"bias_file {p}: line {n}: value {value!r} of {name} is not an integer") from None
        if name in biases:
            raise ParameterError(f"bias_file {p}: line {n}: {name} is set twice")
        biases[name] = number
    if not biases:
        raise ParameterError(f"bias_file {p}: holds no bias line ('VALUE % NAME')")
    return biases


def check_biases(biases: dict[str, int], ranges: dict[str, tuple[int, int]], where: str) -> None:
    """Raise ParameterError for the first bias name not in ``ranges`` or value outside its range."""
    for name, value in biases.items():
        if name not in ranges:
            raise ParameterError(f"{where}: unknown bias {name!r} (this sensor has: {', '.join(sorted(ranges))})")
        lo, hi = ranges[name]
        if not lo <= value <= hi:
            raise ParameterError(f"{where}: {name} = {value} is outside its allowed range {lo}..{hi}")


# ---------------------------------------------------------------------------------------------- settings


@dataclass
class DeviceSettings:
    """What the node asks of the camera (its parameters, checked)."""

    bias_file: str = ""
    biases: dict = field(default_factory=dict)  # parsed bias file
    roi: Optional[tuple[int, int, int, int]] = None  # x, y, width, height
    erc_rate_mev_s: float = 0.0
    trigger_in: bool = False
    trigger_out_period_us: int = 0
    sync_mode: str = "standalone"


def parse_sensor_roi(text: str) -> Optional[tuple[int, int, int, int]]:
    """'x,y,width,height' -> tuple, '' -> None; ParameterError naming the parameter otherwise."""
    if not text.strip():
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise ParameterError(f"parameter roi: {text!r} is not 'x,y,width,height' (four integers)") from None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise ParameterError(f"parameter roi: {text!r}: x, y must be >= 0 and width, height > 0")
    return x, y, w, h


def make_settings(p: dict) -> DeviceSettings:
    """DeviceSettings from the node's parameter values; the bias file is read and parsed here (at start)."""
    if p.get("sync_mode", "standalone") not in SYNC_MODES:
        raise ParameterError(f"parameter sync_mode: {p['sync_mode']!r} is not one of {', '.join(SYNC_MODES)}")
    return DeviceSettings(
        bias_file=p.get("bias_file", ""),
        biases=parse_bias_file(p["bias_file"]) if p.get("bias_file") else {},
        roi=parse_sensor_roi(p.get("roi", "")),
        erc_rate_mev_s=float(p.get("erc_rate_mev_s", 0.0)),
        trigger_in=bool(p.get("trigger_in", False)),
        trigger_out_period_us=int(p.get("trigger_out_period_us", 0)),
        sync_mode=p.get("sync_mode", "standalone"),
    )
