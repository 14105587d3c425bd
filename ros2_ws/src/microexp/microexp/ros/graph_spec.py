"""The recording graph, described once: which nodes a recording session runs and with which parameters.

Both ``launch/record.launch.py`` (one process per node, ``launch_ros`` Nodes) and ``microexp record`` (the same
node classes in one process) build their nodes from :func:`record_graph`, with the options of
:data:`RECORD_OPTIONS` (launch arguments ``name:=value``; command-line options ``--name``). Imports no rclpy:
the launch process reads it too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from microexp.bags.manifest import SENSOR_TOPICS
from microexp.errors import ParameterError
from microexp.ros.nodes import BY_NAME

# A simulated AU clip, neutral margins included (the paper's clips average 2.5 s).
SYNTH_CLIP_S = 2.5
# The protocol's countdown (protocol_node countdown_s): the simulated subject performs after it.
COUNTDOWN_S = 3.0
SENSORS = ("davis346", "evk4", "webcam")


@dataclass(frozen=True)
class Option:
    name: str
    default: object  # its type is the option's type; None = a string that may stay empty
    description: str


RECORD_OPTIONS = (
    Option(
        "source",
        "synthetic",
        "what drives the sensors: synthetic (simulated rig), file (recordings) or device (cameras)",
    ),
    Option("sensors", "davis346,evk4,webcam", "comma-separated sensors to run"),
    Option(
        "out",
        os.path.join(os.environ.get("MICROEXP_RECORDINGS_DIR", "recordings"), "session"),
        "session folder to create (owner-only; one bag per segment inside; must not exist or be empty)",
    ),
    Option("subject", "S01", "subject pseudonym (never a name)"),
    Option("aus", "all", "Action Units in order, e.g. AU2,AU12,AU45 (all = the 21 of Table 1)"),
    Option("takes", 1, "kept takes of each AU, in a row"),
    Option("first_trial", 1, "trial number of each AU's first take (a later session of a subject continues)"),
    Option("lux", 0.0, "measured illuminance of the face (lx), written to each segment"),
    Option("storage", "mcap", "bag storage: mcap or sqlite3"),
    Option("headless", False, "run the protocol unattended; without a terminal it always is (and logs so)"),
    Option("time_scale", 1.0, "multiply every protocol phase duration"),
    Option("seed", 0, "seed of the synthetic rig"),
    Option("davis_file", "", "AEDAT4 file for source file"),
    Option("evk4_file", "", "RAW file for source file"),
    Option("webcam_file", "", "video file for source file"),
)
DEFAULTS = {o.name: o.default for o in RECORD_OPTIONS}


def node_spec(name: str, params: dict, defaults: dict | None = None) -> "NodeSpec":
    """The graph's node ``name`` of the node table (:data:`microexp.ros.nodes.NODES`) with these parameters."""
    entry = BY_NAME[name]
    return NodeSpec(entry.executable, entry.name, entry.module, entry.cls, params, dict(defaults or {}))


@dataclass
class NodeSpec:
    """One node of the graph: its executable (``ros2 run microexp EXECUTABLE``), node name, the class the
    executable runs, the parameters the graph sets on top of the node's parameter files (``params``), and those
    it sets unless a user's parameter file gives them (``defaults``)."""

    executable: str
    name: str
    module: str
    cls: str
    params: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)


def typed(options: dict) -> dict:
    """``options`` (strings from launch arguments, or typed values; None = the default) converted to the types
    of :data:`RECORD_OPTIONS`; an unknown name or a bad value raises ParameterError naming it."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ParameterError(f"unknown recording option(s): {', '.join(unknown)}")
    out = {}
    for o in RECORD_OPTIONS:
        v = options.get(o.name)
        if v is None:
            v = o.default
        kind = type(o.default)
        try:
            if kind is bool:
                if isinstance(v, str):
                    if v.lower() not in ("true", "false"):
                        raise ValueError
                    v = v.lower() == "true"
            elif kind is int:
                v = int(v)
            elif kind is float:
                v = float(v)
            else:
                v = str(v)
        except (TypeError, ValueError):
            raise ParameterError(f"recording option {o.name}: {v!r} is not a {kind.__name__}") from None
        out[o.name] = v
    if out["source"] not in ("synthetic", "file", "device"):
        raise ParameterError(f"recording option source: {out['source']!r} is not one of synthetic, file, device")
    bad = [s for s in sensor_list(out["sensors"]) if s not in SENSORS]
    if bad:
        raise ParameterError(
            f"recording option sensors: unknown sensor(s) {', '.join(bad)} (known: {', '.join(SENSORS)})"
        )
    if out["time_scale"] <= 0:
        raise ParameterError(f"recording option time_scale: {out['time_scale']} must be above 0")
    return out


def sensor_list(text: str) -> list[str]:
    return [s.strip() for s in str(text).split(",") if s.strip()]


def record_graph(options: dict) -> list[NodeSpec]:
    """The nodes of a recording session: the recorder, the sensor sources, the protocol (last)."""
    o = typed(options)
    sensors = sensor_list(o["sensors"])
    nodes = [node_spec("recorder", dict(out=o["out"], subject=o["subject"], storage=o["storage"], source=o["source"]))]
    protocol = dict(
        aus=o["aus"],
        subject=o["subject"],
        lux=o["lux"],
        headless=o["headless"],
        time_scale=o["time_scale"],
        takes=o["takes"],
        first_trial=o["first_trial"],
        recorder="/recorder",
    )
    if o["source"] == "synthetic":
        scale = o["time_scale"]
        # The simulated subject watches the protocol: it performs its clip once the countdown (scaled like
        # every phase) has passed, with every message reliable and the session's clips simulated ahead; the
        # protocol waits for it (subject_node) before each take and before closing it, so clips land inside
        # their segments; the performance window holds the whole clip.
        nodes.append(
            node_spec(
                "synthetic",
                dict(
                    sensors=",".join(sensors),
                    subject=o["subject"],
                    seed=o["seed"],
                    qos="reliable",
                    prefetch=o["aus"],
                    prefetch_takes=o["takes"],
                    prefetch_first_trial=o["first_trial"],
                    perform_delay_s=COUNTDOWN_S * scale,
                    duration_s=SYNTH_CLIP_S,
                ),
            )
        )
        protocol.update(
            subject_node="/synthetic", countdown_s=COUNTDOWN_S, perform_s=max(2.5, (SYNTH_CLIP_S + 0.3) / scale)
        )
    else:
        mode = o["source"]
        for sensor, file_opt in (("evk4", "evk4_file"), ("davis346", "davis_file"), ("webcam", "webcam_file")):
            if sensor in sensors and (mode == "device" or o[file_opt]):
                # recording keeps every packet: reliable, deep history (a parameter file may say otherwise)
                nodes.append(node_spec(sensor, dict(mode=mode, file=o[file_opt]), defaults=dict(qos="reliable")))
        if mode == "file" and len(nodes) == 1:
            raise ParameterError("source file: give at least one of davis_file, evk4_file, webcam_file")
    # every stream of a sensor the session runs must deliver during each segment (else the segment is `error`)
    running = sensors if o["source"] != "file" else [n.name for n in nodes[1:]]
    nodes[0].params["expect_topics"] = [SENSOR_TOPICS[s] for s in running if s in SENSOR_TOPICS] or [""]
    nodes.append(node_spec("protocol", protocol))
    return nodes
