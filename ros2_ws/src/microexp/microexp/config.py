"""Parameter specifications shared by the nodes, their YAML files and the tables of docs/parameters.md (no rclpy).

Every node declares its parameters from a tuple of :class:`Param`; ``config/<node>.yaml`` mirrors the
defaults under ``<node>: ros__parameters:`` and a test keeps the two equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from microexp.errors import ParameterError

_TOKEN = r"(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})"
_TOPIC = re.compile(rf"^(?:~|~/{_TOKEN}(?:/{_TOKEN})*|/?{_TOKEN}(?:/{_TOKEN})*)$")


def check_topic_name(name: str, what: str = "topic") -> str:
    """A valid ROS 2 topic name (tokens of letters, digits and _ that do not start with a digit, separated by
    single /; an optional leading / or ~/), else ParameterError naming ``what``."""
    if not isinstance(name, str) or not _TOPIC.match(name):
        raise ParameterError(
            f"{what} {name!r}: not a valid ROS 2 topic name (letters, digits and _ separated by "
            "single '/', no token starting with a digit, no trailing '/'), e.g. /evk4/events"
        )
    return name


@dataclass(frozen=True)
class Param:
    """One node parameter: name, default (its type is the parameter's type), description, optional range."""

    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    unit: str = ""

    def check(self, value: Any, where: str = "") -> Any:
        """``value`` converted to the default's type, or ParameterError naming the parameter."""
        label = f"{where}{self.name}"
        kind = type(self.default)
        try:
            if kind is bool:
                if not isinstance(value, bool):
                    raise TypeError
                v = value
            elif kind is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise TypeError
                v = int(value)
            elif kind is float:
                if isinstance(value, bool):
                    raise TypeError
                v = float(value)
            elif kind is str:
                v = str(value)
            elif kind in (list, tuple):
                v = list(value)
            else:
                v = value
        except (TypeError, ValueError):
            raise ParameterError(f"parameter {label}: expected {kind.__name__}, got {value!r}") from None
        if self.min is not None and v < self.min:
            raise ParameterError(f"parameter {label}: {v} is below its minimum {self.min}")
        if self.max is not None and v > self.max:
            raise ParameterError(f"parameter {label}: {v} is above its maximum {self.max}")
        if self.choices is not None and v not in self.choices:
            raise ParameterError(f"parameter {label}: {v!r} is not one of {', '.join(map(repr, self.choices))}")
        return v


def resolve(specs: Iterable[Param], values: dict | None = None, where: str = "") -> dict:
    """Defaults of ``specs`` overridden by ``values``; unknown names are an error naming them."""
    specs = list(specs)
    known = {p.name: p for p in specs}
    values = dict(values or {})
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ParameterError(f"{where}unknown parameter(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return {p.name: p.check(values.get(p.name, p.default), where) for p in specs}


def load_params_file(path: str | Path, node_name: str) -> dict:
    """The ``ros__parameters`` of ``node_name`` in a ROS 2 parameter file (``/**`` wildcard entries merged)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ParameterError(f"parameter file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ParameterError(f"parameter file {path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    out: dict = {}
    for key in ("/**", node_name, "/" + node_name):
        entry = doc.get(key)
        if isinstance(entry, dict):
            out.update(entry.get("ros__parameters") or {})
    return out


def yaml_text(node_name: str, specs: Iterable[Param]) -> str:
    """The parameter file that mirrors ``specs``' defaults."""
    params = {p.name: (list(p.default) if isinstance(p.default, tuple) else p.default) for p in specs}
    return yaml.safe_dump({node_name: {"ros__parameters": params}}, sort_keys=False)


def markdown_table(specs: Iterable[Param]) -> str:
    """A markdown table (docs/parameters.md): parameter, default, unit/range, description."""
    rows = ["| parameter | default | range | description |", "|---|---|---|---|"]
    for p in specs:
        rng = ""
        if p.choices:
            rng = " / ".join(map(str, p.choices))
        elif p.min is not None or p.max is not None:
            rng = f"{'' if p.min is None else p.min} … {'' if p.max is None else p.max}"
        unit = f" {p.unit}" if p.unit else ""
        rows.append(f"| `{p.name}` | `{p.default!r}`{unit} | {rng} | {p.description} |")
    return "\n".join(rows)
