"""Benchmark: live inference latency, from the arrival of a window's closing event to the AUPrediction publish.

Set-up, for each stream (default: the synthetic rig's DAVIS346 and EVK4 streams, then the blob stress streams
DAVIS346 346x260 at 1 Mev/s and EVK4 1280x720 at 5 Mev/s, all EVT3; ``sensor:rig`` instead of a rate replays
the synthetic rig's own face events, :func:`microexp.synth.streams.rig_packets`, at the rig's own rate: about
0.03 Mev/s for the DAVIS346 and 0.25 Mev/s for the EVK4):

- a publisher **process** (:mod:`microexp.ros.bench.latency`) sends EventPackets of 1 ms of sensor time each,
  paced in real time, encoded before the run with :class:`microexp.events.evt3.Evt3Encoder`. Events
  (:func:`microexp.synth.streams.blob_packets`): a face-sized blob (Gaussian, sigma = 1/12 of the sensor
  height) moving on a Lissajous path, plus 20 % uniform background activity, random polarities. It first sends ``--warmup``
  seconds (numba's kernels and torch's first-call paths load), pauses 1 s (a stream gap: the node resets;
  the statistics are cleared), then the measured ``--seconds``;
- this process runs the inference node (:class:`microexp.ros.nodes.inference_node.InferenceNode`, the code of
  ``microexp infer``, with its defaults: packet intake by a reader thread, a single-threaded executor for
  the rest, queue 4, max lag 100 ms) on CPU with ``torch_threads`` = 1 (the node's default; ``--threads``) and
  ``OMP_WAIT_POLICY=PASSIVE``, a fixed square ROI of 60 % of the sensor height (face detection off: it runs on
  its own thread, never on the per-window path), and the model of ``--model``, by default the default model
  (``models/au_snn_default.pt``; with ``--model random`` or without a default model: a **randomly
  initialised** SNN of the paper's architecture, which is a little faster: its fc1 sees almost no spikes and
  the live step computes fc1 from the active spikes only). When the machine has at least 4 CPUs the node process is pinned
  to 2 of them and the publisher to the others; otherwise all share the machine.

Reported per stream (``streams``) and at the top level (the larger of the streams' values; ``windows`` and
``skipped`` summed):

- ``p50_ms``, ``p99_ms``: arrival of the closing packet (its DDS reception time in the node's process) ->
  return of ``publish()`` of its AUPrediction (the node's ``total`` stage), over the measured windows;
- ``windows``: predictions published in the measured part; ``skipped``: windows skipped (queue overflow or
  older than max lag);
- per stream also ``e2e_p50_ms``/``e2e_p99_ms`` (the closing packet's ``publish()`` in the publisher process ->
  reception of the prediction by a subscriber in this process, both on CLOCK_MONOTONIC: adds DDS transport
  both ways), the per-stage p50/p99 (intake, decode, bin, queue, crop, snn, post, publish), the achieved event
  rate, seq gaps (packets lost by best-effort transport), resets (1 = the reset that starts the measured part)
  and the node process's CPU use.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import yaml

from microexp.errors import ParameterError
from microexp.infer import default_model_path

STREAMS = {"davis346": (346, 260), "evk4": (1280, 720)}


def add_arguments(parser) -> None:
    parser.add_argument(
        "--streams",
        default="davis346:rig,evk4:rig,davis346:1,evk4:5",
        help="comma-separated sensor:Mev/s or sensor:rig (sensors: davis346, evk4); default "
        "davis346:rig,evk4:rig,davis346:1,evk4:5 (e.g. evk4:20 shows load shedding)",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per stream (default 3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before (default 1)")
    parser.add_argument(
        "--model",
        default="",
        help="SNN checkpoint (default: the default model, else a randomly initialised SNN; 'random' forces the latter)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the node (default 1, the node's)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="node device (default cpu)")
    parser.add_argument(
        "--qos",
        default="sensor",
        choices=("sensor", "reliable"),
        help="QoS of the event topic (default sensor: best effort, as drivers publish)",
    )
    parser.add_argument(
        "--executor",
        default="single",
        choices=("single", "multi"),
        help="rclpy executor of the node (default single, as `microexp infer`)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a parameter of the inference node (repeatable), e.g. --param poll_ms=0.5",
    )
    parser.add_argument("--repeat", type=int, default=1, help="accepted for `bench all`; one run per stream")


# -------------------------------------------------------------------------------------------- the run
def _choose_model(requested: str, folder: str) -> tuple[str, str]:
    """(checkpoint path, description): ``--model``, else the default model, else a random-init SNN. The
    weights matter a little: the live step's fc1 work grows with the trained model's spike density."""
    if requested and requested != "random":
        return requested, requested
    default = default_model_path()
    if not requested and default.exists():
        return str(default), f"default model {default.name}"
    return _random_checkpoint(folder), "random-init SNN" + ("" if requested else " (no default model)")


def _random_checkpoint(folder: str) -> str:
    import torch

    from microexp.models import AUSpikingNet, SNNConfig, save_checkpoint

    torch.manual_seed(0)
    model = AUSpikingNet(SNNConfig()).eval()
    return str(
        save_checkpoint(
            Path(folder) / "random_snn.pt", model, extra={"note": "randomly initialised: latency benchmark only"}
        )
    )


def _cpu_split():
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= 4:
        return cpus[:2], cpus[2:]
    return None, None


def _node_params(items) -> dict:
    """``NAME=VALUE`` strings -> node parameter values (YAML scalars: 1, 0.5, true, text)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ParameterError(f"bench latency: --param wants NAME=VALUE, got {item!r}")
        out[name.strip()] = yaml.safe_load(value)
    return out


def _run_stream(sensor: str, rate: float, args, model: str, folder: str) -> dict:
    from microexp.ros.bench.latency import measure_stream

    width, height = STREAMS[sensor]
    node_cpus, pub_cpus = _cpu_split()
    side = min(width, height) * 0.6
    roi = f"{(width - side) / 2:.0f},{(height - side) / 2:.0f},{side:.0f},{side:.0f}"
    m = measure_stream(
        sensor,
        width,
        height,
        rate,
        seconds=args.seconds,
        warmup=args.warmup,
        model=model,
        params=_node_params(getattr(args, "param", [])),
        device=args.device,
        threads=args.threads,
        qos=args.qos,
        executor=args.executor,
        roi=roi,
        out_file=str(Path(folder) / f"{sensor}_sent.npy"),
        publisher_cpus=pub_cpus,
    )
    total, sent, got = m["total_ms"], m["sent"], m["received"]
    e2e = np.array([])
    if got.size:
        closing = np.searchsorted(sent[:, 1], got[:, 1], side="left")  # first packet with an event >= t1
        ok = closing < len(sent)
        e2e = (got[ok, 2] - sent[closing[ok], 2]) / 1e6
    before, after = m["counters_before"], m["counters_after"]
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("published", "skipped", "seq_gaps", "resets", "events")}

    def pct(a, q):
        return round(float(np.percentile(a, q)), 3) if a.size else None

    return {
        "sensor": sensor,
        "width": width,
        "height": height,
        "rate_mev_s": rate,
        "achieved_mev_s": round(delta["events"] / args.seconds / 1e6, 2),
        "p50_ms": pct(total, 50),
        "p99_ms": pct(total, 99),
        "max_ms": pct(total, 100),
        "windows": int(delta["published"]),
        "skipped": int(delta["skipped"]),
        "seq_gaps": int(delta["seq_gaps"]),
        "resets": int(delta["resets"]),
        "e2e_p50_ms": pct(e2e, 50),
        "e2e_p99_ms": pct(e2e, 99),
        "stages": {k: v for k, v in m["stages"].items() if k not in ("total", "ready")},
        "node_cpu_percent": m["cpu_percent"],
        "roi": roi,
        "node_cpus": node_cpus,
        "publisher_cpus": pub_cpus,
    }


def run(args) -> dict:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see InferenceNode.__init__
    import torch

    streams = []
    for item in args.streams.split(","):
        sensor, _, rate = item.partition(":")
        try:
            value = rate if rate == "rig" else float(rate)
        except ValueError:
            value = None
        if sensor not in STREAMS or value is None:
            raise ParameterError(
                f"bench latency: bad stream {item!r} (sensor:Mev/s or sensor:rig, sensors {', '.join(STREAMS)})"
            )
        streams.append((sensor, value))
    node_cpus, _ = _cpu_split()
    before = os.sched_getaffinity(0) if node_cpus else None
    if node_cpus:
        os.sched_setaffinity(0, set(node_cpus))
    try:
        with tempfile.TemporaryDirectory(prefix="microexp_latency_") as folder:
            model, model_note = _choose_model(args.model, folder)
            results = {
                (f"{s}_rig" if r == "rig" else f"{s}_{r:g}mev"): _run_stream(s, r, args, model, folder)
                for s, r in streams
            }
    finally:
        if before:
            os.sched_setaffinity(0, before)

    def worst(key):
        vals = [r[key] for r in results.values() if r[key] is not None]
        return max(vals) if vals else None

    return {
        "bench": "latency",
        "p50_ms": worst("p50_ms"),
        "p99_ms": worst("p99_ms"),
        "windows": sum(r["windows"] for r in results.values()),
        "skipped": sum(r["skipped"] for r in results.values()),
        "goal_p99_ms": 10.0,
        "device": args.device,
        "torch_threads": args.threads,
        "executor": args.executor,
        "model": model_note,
        "node_params": _node_params(args.param),
        "torch": torch.__version__,
        "streams": results,
    }
