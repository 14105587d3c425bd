"""`microexp evaluate SESSION ...`: score the live AU output on recorded sessions against their truth.

For each session folder:

1. **Live**: by default the session is replayed over DDS at its recorded rate (the replay node) into the
   inference node (the code of ``microexp infer``: its spotting, face detection and verdicts), and the
   ``~/au_events`` and ``~/au`` it publishes are collected; ``--in-process`` runs the same pipeline on the bags
   in this process without ROS (:func:`microexp.infer.bag_live.run_bags`), as fast as it goes; ``--events FILE``
   scores AU events saved before (``au_events.jsonl`` of an earlier run, or of ``microexp demo``).
2. **Offline**: the dataset builder cuts the session's clips (``microexp dataset``) and the same checkpoint
   judges each clip's training window around its activity peak (:mod:`microexp.learn.evaluate`);
   ``--no-offline`` skips it.
3. **Scores** (:mod:`microexp.scoring`): per-segment accuracy of the live verdicts (the most confident AU event
   whose apex lies in the segment) and of the offline ones; spotting as in MEGC's long-video protocol (an AU
   event's interval is a true positive when its IoU with the movement of the synthetic ground truth is at least
   ``--iou``; precision, recall, F1 pooled over sessions); recognition of the true positives
   (spot-then-recognise); AU events outside any ground-truth movement (during rest); latency from the true
   apex to the AU event.

Writes into ``--out``: ``evaluate.json`` (everything), per session ``<name>/au_events.jsonl``,
``<name>/windows.jsonl`` (the state of every ``~/au`` window) and ``<name>/timeline.png``; prints one JSON line
(the pooled summary).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from microexp.errors import MicroexpError, ParameterError


def add_arguments(parser) -> None:
    parser.add_argument("sessions", nargs="+", metavar="SESSION", help="recording session folders")
    parser.add_argument("--model", default="", help="SNN checkpoint (default: models/au_snn_default.pt)")
    parser.add_argument("--out", default="out/evaluate", help="output folder (default out/evaluate)")
    parser.add_argument("--sensor", default="davis346", choices=("davis346", "evk4"), help="event stream to run on")
    parser.add_argument("--rate", type=float, default=1.0, help="replay speed over DDS (1 = as recorded)")
    parser.add_argument("--in-process", action="store_true", help="run the live pipeline on the bags without ROS")
    parser.add_argument("--events", default="", help="score these saved AU events (JSONL) instead of a live run")
    parser.add_argument("--no-offline", action="store_true", help="skip the offline verdicts on the dataset clips")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU that makes a spotted interval a true positive")
    parser.add_argument(
        "--params", action="append", default=[], help="ROS 2 parameter file for the inference node (repeatable)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


TOPICS = {"davis346": ("/davis346/events", "/davis346/image_raw"), "evk4": ("/evk4/events", "")}


def run(args) -> int:
    from microexp.infer import default_model_path
    from microexp.learn.evaluate import (
        plot_session,
        pool_reports,
        score_session,
        session_offline_verdicts,
        session_truth,
    )

    if not 0 < args.iou <= 1:
        raise ParameterError(f"--iou must be in (0, 1], got {args.iou}")
    if not 0 < args.rate <= 100:
        raise ParameterError(f"--rate must be in (0, 100], got {args.rate}")
    if args.events and len(args.sessions) != 1:
        raise ParameterError("--events scores one session: give exactly one SESSION")
    model = Path(args.model) if args.model else Path(default_model_path())
    if not model.is_file():
        raise MicroexpError(f"{model}: no such model file")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda m: None) if args.quiet else (lambda m: print(f"evaluate: {m}", flush=True, file=_stderr()))
    truths = []
    for folder in args.sessions:
        truth = session_truth(folder)
        if args.sensor not in truth.offsets:
            raise MicroexpError(f"{folder}: no {args.sensor} events in its bags")
        truths.append(truth)
    reports, counts = [], []
    for truth in truths:
        name = Path(truth.folder).resolve().name
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        windows: list = []
        if args.events:
            events = [json.loads(line) for line in Path(args.events).read_text().splitlines() if line.strip()]
        elif args.in_process:
            say(f"{name}: live pipeline in this process ...")
            events, windows = _in_process(truth, model, args)
        else:
            say(f"{name}: replaying over DDS at rate {args.rate:g} into the inference node ...")
            events, windows = _over_dds(truth, model, args)
        _write_jsonl(folder / "au_events.jsonl", events)
        _write_jsonl(folder / "windows.jsonl", windows)
        offline = None
        if not args.no_offline:
            say(f"{name}: offline verdicts on the dataset clips ...")
            offline = session_offline_verdicts(truth.folder, model, folder / "dataset", args.sensor)
        report, c = score_session(truth, events, offline, args.sensor, args.iou)
        plot_session(truth, events, report, args.sensor, folder / "timeline.png", windows)
        report["outputs"] = [str(folder / f) for f in ("au_events.jsonl", "windows.jsonl", "timeline.png")]
        reports.append(report)
        counts.append(c)
        say(
            f"{name}: live {report['live_accuracy']} offline {report['offline_accuracy']} "
            f"spotting F1 {report['spotting']['f1']}, {report['au_events_in_rest']} AU events in rest"
        )
    summary = {
        "model": str(model),
        "mode": "events" if args.events else ("in-process" if args.in_process else f"dds@{args.rate:g}"),
        "iou": args.iou,
        **pool_reports(reports, counts),
    }
    (out / "evaluate.json").write_text(json.dumps({"summary": summary, "sessions": reports}, indent=2))
    print(json.dumps({**summary, "out": str(out / "evaluate.json")}), flush=True)
    return 0


def _stderr():
    import sys

    return sys.stderr


def _write_jsonl(path: Path, rows: list) -> None:
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def _in_process(truth, model_path: Path, args) -> tuple[list, list]:
    from microexp.infer import load_au_model
    from microexp.infer.bag_live import run_bags
    from microexp.infer.spotting import SpotterConfig
    from microexp.learn.evaluate import event_row
    from microexp.vision.face import MtcnnDetector

    model, meta, _ = load_au_model(str(model_path), "cpu")
    events_topic, frames_topic = TOPICS[args.sensor]

    slices = int(meta.get("extra", {}).get("input", {}).get("slices", 0) or 16)
    run = run_bags(
        [Path(truth.folder) / s.name for s in truth.segments],
        model,
        events_topic=events_topic,
        frames_topic=frames_topic,
        detector=MtcnnDetector("cpu", 0.9) if frames_topic else None,
        spotting=SpotterConfig(window=slices),
        temperature=float(meta.get("extra", {}).get("temperature") or 1.0),
    )
    events = [event_row(v) for v, _ in run.verdicts]
    windows = [{"t0_us": int(r.t0), "t1_us": int(r.t1), "state": r.state} for r, _ in run.windows]
    return events, windows


def _over_dds(truth, model_path: Path, args) -> tuple[list, list]:
    """Replay node -> inference node -> a listener, in this process, on the DDS domain of the environment."""
    from rclpy.node import Node

    from microexp.learn.evaluate import event_row
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.inference_node import InferenceNode
    from microexp.ros.nodes.replay_node import ReplayNode
    from microexp.ros.qos import RELIABLE_QOS
    from microexp.ros.runner import Runner
    from microexp_msgs.msg import AUEvent, AUPrediction

    events_topic, frames_topic = TOPICS[args.sensor]
    lock = threading.Lock()
    events, windows = [], []
    graph = Runner(threads=3)
    try:
        node = graph.add(
            InferenceNode(
                parameter_overrides=overrides(
                    "inference",
                    args.params,
                    model=str(model_path),
                    events_topic=events_topic,
                    frames_topic=frames_topic,
                    sensor=args.sensor,
                    qos="reliable",
                    face_rate_hz=5.0 if frames_topic else 0.0,
                )
            )
        )
        listener = graph.add(Node("evaluate_listener"))

        def on_event(m: AUEvent):
            with lock:
                events.append(event_row(m))

        def on_window(m: AUPrediction):
            with lock:
                windows.append({"t0_us": int(m.window_start_us), "t1_us": int(m.window_end_us), "state": m.state})

        listener.create_subscription(AUEvent, "/inference/au_events", on_event, RELIABLE_QOS)
        listener.create_subscription(AUPrediction, "/inference/au", on_window, RELIABLE_QOS)
        topics = [t for t in (events_topic, frames_topic, "/recorder/segments") if t]
        replay = graph.add(
            ReplayNode(
                parameter_overrides=overrides(
                    "replay",
                    None,
                    bag=str(truth.folder),
                    rate=float(args.rate),
                    topics=topics,
                    qos="reliable",
                    wait_for_subscribers_s=10.0,
                )
            )
        )
        graph.start()
        while not replay.finished.wait(0.2):
            pass
        if replay.error:
            raise MicroexpError(f"{truth.folder}: replay stopped: {replay.error}")
        # the stream ended: the node's idle flush closes the last clip and judges what is open
        deadline = time.monotonic() + 5.0 + node.p["gap_ms"] / 1000.0
        settled, last = 0, -1
        while time.monotonic() < deadline and settled < 10:
            time.sleep(0.1)
            c = node.counters()
            n = c["windows"] + c["au_events"]
            settled = settled + 1 if n == last and c["queued"] == 0 and c["verdicts_queued"] == 0 else 0
            last = n
    finally:
        graph.close()
    with lock:
        return list(events), list(windows)
