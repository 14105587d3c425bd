"""`microexp bench load`: does the recording graph lose anything when the machine's cores are busy?

The graph runs as separate processes, started as ``record.launch.py`` starts them: the node executables
(``recorder_node``, ``synthetic_node``, ``evk4_node``) with ``--ros-args``, the package's parameter files and
overrides; the segment is opened and closed through the recorder's services by a control node in this
process. Meanwhile ``N`` busy processes (``while True: pass``, normal priority) hold the cores, for each
``N`` of ``--busy`` (default 0, 2, 4). Scenarios (``--scenarios``, each a segment of its own session):

- ``rig``: the synthetic rig (``synthetic_node``, DAVIS346 + EVK4 + webcam, reliable), performing ``--aus``;
- ``evk4_file``: ``evk4_node`` playing the EVK4 RAW file (``--evk4-file``, default the shared Gen4.1 HD EVT3
  sample: 219,596 events in 9 ms, 10 packets) at real rate (rate 1), reliable. The sample is short, so it is
  played ``--file-repeat`` times back to back (default 200: its events decoded, shifted by the sample's span
  + 1 ms per copy, re-encoded as EVT3 into one RAW file: about 2.6 s at the sample's own rate, ~17 Mev/s);
  ``--file-repeat 1`` plays the file as it is;
- ``evk4_5mev``: the stress case, the 5 Mev/s EVK4 blob stream of `bench latency` (1 ms EVT3 packets) for
  ``--seconds``, from a publisher process.

Reported per scenario and N, per stream: ``published`` (the sensor process's own count, from its end line),
``received`` (taken by the recorder), ``recorded`` (written to the bag), ``lost = published - recorded``, and
where it was lost (``seq_missing``: never reached the recorder; ``queue_dropped``: the recorder's writer
queue), ``msgs_per_s`` (recorded messages over the span of the sensor streams' receive times in the bag:
the rate the publisher achieved; a publisher that falls behind real time on a busy machine shows here, not
as loss); the recorder's MB/s over the same span; ``play_wall_s`` (segment start to the last sensor's end,
process start-up included); the 1-minute load average at the start and end of the scenario (the machine may
be shared: it says how loaded it was).
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
    parser.add_argument("--file-repeat", type=int, default=200, help="evk4_file: copies of the file back to back")
    parser.add_argument("--seconds", type=float, default=5.0, help="evk4_5mev: seconds of stream (default 5)")
    parser.add_argument("--rate-mev", type=float, default=5.0, help="evk4_5mev: event rate (default 5 Mev/s)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per scenario")
    parser.add_argument("--repeat", type=int, default=1, help="accepted for `bench all`; one run each")


def _default_raw() -> Path:
    root = Path(os.environ.get("MICROEXP_TESTDATA", Path(__file__).resolve().parents[6] / "shared" / "data"))
    return root / "events" / "expelliarmus_evt3_sample.raw"


def tiled_raw(src: Path, copies: int, dest: Path) -> dict:
    """``copies`` of the RAW file's events back to back (shifted by its span + 1 ms) as one EVT3 RAW file."""
    import numpy as np

    from microexp.events.evt3 import Evt3Encoder
    from microexp.events.raw import read_raw

    rec = read_raw(src)
    ev = rec.events[np.argsort(rec.events["t"], kind="stable")]
    span = int(ev["t"][-1] - ev["t"][0]) + 1000
    tiled = np.concatenate([ev] * copies)
    tiled["t"] += np.repeat(np.arange(copies, dtype=np.int64) * span, len(ev))
    payload, _ = Evt3Encoder(rec.width, rec.height).encode(tiled)
    dest.write_bytes(f"% evt 3.0\n% geometry {rec.width}x{rec.height}\n% end\n".encode() + payload)
    return {
        "file": src.name,
        "copies": copies,
        "events": int(len(tiled)),
        "seconds": round(copies * span / 1e6, 3),
        "mev_s": round(len(tiled) / (copies * span), 2),
        "bytes": len(payload),
    }


def _sensor_commands(name: str, args, tmp: Path) -> list[tuple[str, list[str]]]:
    import sys

    from microexp.ros.bench.load import node_cmd

    if name == "rig":
        return [
            (
                "synthetic",
                node_cmd(
                    "synthetic_node",
                    "synthetic",
                    {"plan": args.aus, "sensors": args.rig_sensors, "qos": "reliable", "rate": 1.0, "subject": "S01"},
                ),
            )
        ]
    if name == "evk4_file":
        raw = Path(args.evk4_file) if args.evk4_file else _default_raw()
        if not raw.is_file():
            raise ParameterError(f"bench load: --evk4-file {raw}: no such file")
        if args.file_repeat > 1:
            tiled = tmp / f"tiled_{args.file_repeat}.raw"
            if not tiled.exists():
                args.file_info = tiled_raw(raw, args.file_repeat, tiled)
            raw = tiled
        return [
            (
                "evk4",
                node_cmd(
                    "evk4_node",
                    "evk4",
                    {"mode": "file", "file": str(raw), "rate": 1.0, "qos": "reliable", "wait_for_subscribers_s": 30.0},
                ),
            )
        ]
    if name == "evk4_5mev":
        return [
            (
                "evk4_blob",
                [
                    sys.executable,
                    "-m",
                    "microexp.ros.bench.load",
                    "publish",
                    "--rate-mev",
                    str(args.rate_mev),
                    "--seconds",
                    str(args.seconds),
                ],
            )
        ]
    raise ParameterError(f"bench load: unknown scenario {name!r} (one of {', '.join(SCENARIOS)})")


def run(args) -> dict:
    from microexp.ros.bench.load import run_scenario
    from microexp.ros.dds import configure

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
                cmds = _sensor_commands(name, args, Path(tmp))
                session = Path(tmp) / f"{name}_busy{n}"
                results.setdefault(name, {})[f"busy_{n}"] = run_scenario(session, cmds, env, n, timeout_s=args.timeout)

    def lost(name, keys):
        return sum((s["lost"] or 0) for k in keys for s in results.get(name, {}).get(k, {}).get("streams", {}).values())

    loaded = [f"busy_{n}" for n in busy if n >= 2]
    return {
        "bench": "load",
        "busy": busy,
        "scenarios": results,
        "lost_rig_and_file_under_load": lost("rig", loaded) + lost("evk4_file", loaded),
        "lost_5mev_under_load": lost("evk4_5mev", loaded),
        "goal": "0 lost at busy 2 and 4 for rig and evk4_file",
        "evk4_file": getattr(args, "file_info", {"file": str(args.evk4_file or _default_raw().name), "copies": 1}),
        "dds": dds,
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }
