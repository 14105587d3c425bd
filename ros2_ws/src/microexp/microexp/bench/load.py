"""`microexp bench load`: does the recording graph lose anything when the machine's cores are busy?

The graph runs as separate processes, started as ``record.launch.py`` starts them: the node executables
(``recorder_node``, ``synthetic_node``, ``evk4_node``) with ``--ros-args``, the package's parameter files and
overrides; the segment is opened and closed through the recorder's services by a control node in this
process. Meanwhile ``N`` busy processes (``while True: pass``, normal priority) hold the cores, for each
``N`` of ``--busy`` (default 0, 2, 4). Scenarios (``--scenarios``, each a segment of its own session):

- ``rig``: the synthetic rig (``synthetic_node``, DAVIS346 + EVK4 + webcam, reliable), performing ``--aus``;
- ``evk4_file``: ``evk4_node`` playing the EVK4 RAW file (``--evk4-file``, default the shared EVK3/Gen4.1 HD
  sample) at real rate (rate 1), reliable;
- ``evk4_5mev``: the stress case, the 5 Mev/s EVK4 blob stream of `bench latency` (1 ms EVT3 packets) for
  ``--seconds``, from a publisher process.

Reported per scenario and N, per stream: ``published`` (the sensor process's own count, from its end line),
``received`` (taken by the recorder), ``recorded`` (written to the bag), ``lost = published - recorded``, and
where it was lost (``seq_missing``: never reached the recorder; ``queue_dropped``: the recorder's writer
queue); the recorder's MB/s over the bag's span; the 1-minute load average at the start and end of the
scenario (the machine may be shared: it says how loaded it was).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from microexp.errors import ParameterError

SCENARIOS = ("rig", "evk4_file", "evk4_5mev")


def add_arguments(parser) -> None:
    parser.add_argument("--busy", default="0,2,4", help="numbers of busy processes, comma-separated (default 0,2,4)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"of {', '.join(SCENARIOS)} (default all)")
    parser.add_argument("--aus", default="AU12,AU45", help="rig: the AUs performed (default AU12,AU45)")
    parser.add_argument("--rig-sensors", default="davis346,evk4,webcam", help="rig: simulated sensors")
    parser.add_argument("--evk4-file", default="", help="evk4_file: the RAW file (default: the shared EVK4 sample)")
    parser.add_argument("--seconds", type=float, default=5.0, help="evk4_5mev: seconds of stream (default 5)")
    parser.add_argument("--rate-mev", type=float, default=5.0, help="evk4_5mev: event rate (default 5 Mev/s)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per scenario")
    parser.add_argument("--repeat", type=int, default=1, help="accepted for `bench all`; one run each")


def _default_raw() -> Path:
    root = Path(os.environ.get("MICROEXP_TESTDATA", Path(__file__).resolve().parents[6] / "shared" / "data"))
    return root / "events" / "expelliarmus_evt3_sample.raw"


def _sensor_commands(name: str, args) -> list[tuple[str, list[str]]]:
    import sys

    from microexp.ros.load_bench import node_cmd

    if name == "rig":
        return [("synthetic", node_cmd("synthetic_node", "synthetic", {
            "plan": args.aus, "sensors": args.rig_sensors, "qos": "reliable", "rate": 1.0, "subject": "S01"}))]
    if name == "evk4_file":
        raw = Path(args.evk4_file) if args.evk4_file else _default_raw()
        if not raw.is_file():
            raise ParameterError(f"bench load: --evk4-file {raw}: no such file")
        return [("evk4", node_cmd("evk4_node", "evk4", {"mode": "file", "file": str(raw), "rate": 1.0,
                                                        "qos": "reliable", "wait_for_subscribers_s": 30.0}))]
    if name == "evk4_5mev":
        return [("evk4_blob", [sys.executable, "-m", "microexp.ros.load_bench", "publish", "--rate-mev",
                               str(args.rate_mev), "--seconds", str(args.seconds)])]
    raise ParameterError(f"bench load: unknown scenario {name!r} (one of {', '.join(SCENARIOS)})")


def run(args) -> dict:
    from microexp.ros.dds import configure
    from microexp.ros.load_bench import run_scenario

    try:
        busy = [int(b) for b in str(args.busy).split(",") if b.strip()]
    except ValueError:
        raise ParameterError(f"bench load: --busy {args.busy!r}: give numbers, e.g. 0,2,4") from None
    if any(b < 0 for b in busy):
        raise ParameterError("bench load: --busy: numbers of processes cannot be negative")
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    dds = configure(None)
    env = dict(os.environ)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="microexp_load_") as tmp:
        for n in busy:
            for name in scenarios:
                cmds = _sensor_commands(name, args)
                session = Path(tmp) / f"{name}_busy{n}"
                results.setdefault(name, {})[f"busy_{n}"] = run_scenario(session, cmds, env, n,
                                                                         timeout_s=args.timeout)

    def lost(name, keys):
        return sum((s["lost"] or 0) for k in keys for s in results.get(name, {}).get(k, {}).get("streams", {}).values())

    loaded = [f"busy_{n}" for n in busy if n >= 2]
    return {"bench": "load", "busy": busy, "scenarios": results,
            "lost_rig_and_file_under_load": lost("rig", loaded) + lost("evk4_file", loaded),
            "lost_5mev_under_load": lost("evk4_5mev", loaded), "goal": "0 lost at busy 2 and 4 for rig and evk4_file",
            "dds": dds, "loadavg_1min": round(os.getloadavg()[0], 2)}
