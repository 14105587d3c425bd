"""`microexp demo` (what `make demo` runs): the whole system on the synthetic rig, no hardware needed.

1. A simulated subject performs a few Action Units in front of the simulated DAVIS346, EVK4 and webcam;
   the recorder writes a labelled session (one bag per AU) through real DDS, driven by the headless protocol.
2. At the same time the inference node runs the default SNN (models/au_snn_default.pt) live on the DAVIS346
   events, with MTCNN face boxes from the APS frames: it spots each movement and publishes its verdict as an
   AU event (``/inference/au_events``), and a state for every 33 ms window (``/inference/au``).
3. The same checkpoint offline on the clips the dataset builder cuts from the session's bags, and the scores of
   ``microexp evaluate`` (:mod:`microexp.learn.evaluate`): per segment the live verdict beside the offline one,
   spotting against the rig's ground truth.
4. Outputs in --out: the session folder, ``predictions.jsonl`` (every AUPrediction), ``au_events.jsonl``,
   ``timeline.png`` (per segment: the ground-truth movement, the spotted interval, the window states, the true,
   live and offline labels), ``event_frames.png`` (Eq. (1) frames of each segment at its apex), ``demo.json``.

The model is trained on synthetic faces only: the demo shows the system working, not real-face accuracy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
from pathlib import Path

from microexp.errors import MicroexpError
from microexp.ros.commands import record


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="out/demo", help="output folder (replaced)")
    parser.add_argument("--aus", default="AU2,AU12,AU45,AU61", help="Action Units the simulated subject performs")
    parser.add_argument("--subject", default="S05", help="synthetic subject pseudonym")
    parser.add_argument("--sensors", default="davis346,evk4,webcam", help="simulated sensors")
    parser.add_argument("--model", default="", help="SNN checkpoint (default: models/au_snn_default.pt)")
    parser.add_argument("--time-scale", type=float, default=0.5, help="protocol phase durations scale")
    parser.add_argument(
        "--monitor-port",
        type=int,
        default=8765,
        help="port of the live monitor page on 127.0.0.1 (0 = any free port; -1 = no monitor)",
    )


def record_args(args, out) -> argparse.Namespace:
    """The `microexp record` options of the demo's session: the recorder's own defaults (so that options added
    there reach the demo too), a synthetic unattended session of the demo's subject, AUs and sensors."""
    parser = argparse.ArgumentParser(prog="microexp record")
    record.add_arguments(parser)
    ns = parser.parse_args(["--out", str(out)])
    ns.source, ns.subject, ns.aus, ns.sensors = "synthetic", args.subject, args.aus, args.sensors
    ns.time_scale, ns.headless = args.time_scale, True
    return ns


def add_monitor(graph, port: int):
    """The monitor node of the demo on 127.0.0.1:``port`` (a free port when that one is taken); its address is
    printed."""
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.monitor_node import MonitorNode

    try:
        node = graph.add(MonitorNode(parameter_overrides=overrides("monitor", None, port=port)))
    except MicroexpError as exc:
        if "is taken" not in str(exc) or port == 0:
            raise
        print(f"demo: {exc}; using a free port instead", flush=True)
        node = graph.add(MonitorNode(parameter_overrides=overrides("monitor", None, port=0)))
    print(f"demo: live monitor on {node.url} (open it in a browser while the demo runs)", flush=True)
    return node


def run(args) -> int:
    from microexp.infer import default_model_path

    model = Path(args.model) if args.model else Path(default_model_path())
    if not model.exists():
        if args.model:
            raise MicroexpError(f"{model}: no such model file")
        print(
            f"demo: {model} is missing (train one with `microexp train`, see docs/offline.md): recording without live inference",
            flush=True,
        )
        model = None
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    predictions: list[dict] = []
    events: list[dict] = []
    lock = threading.Lock()

    def add_nodes(graph):
        if args.monitor_port >= 0:
            add_monitor(graph, args.monitor_port)
        if model is None:
            return []
        from rclpy.node import Node

        from microexp.learn.evaluate import event_row
        from microexp.ros.compose import overrides
        from microexp.ros.nodes.inference_node import InferenceNode
        from microexp.ros.qos import RELIABLE_QOS
        from microexp_msgs.msg import AUEvent, AUPrediction

        graph.add(
            InferenceNode(
                parameter_overrides=overrides(
                    "inference",
                    None,
                    model=str(model),
                    events_topic="/davis346/events",
                    frames_topic="/davis346/image_raw",
                    sensor="davis346",
                    qos="reliable",
                    face_rate_hz=5.0,
                )
            )
        )
        listener = graph.add(Node("demo_listener"))

        def on_au(m: AUPrediction):
            with lock:
                predictions.append(
                    {
                        "t0_us": m.window_start_us,
                        "t1_us": m.window_end_us,
                        "stamp_ns": m.header.stamp.sec * 10**9 + m.header.stamp.nanosec,
                        "probabilities": [round(float(p), 5) for p in m.probabilities],
                        "top3": [int(v) for v in m.top3],
                        "smoothed_top1": int(m.smoothed_top1),
                        "events": int(m.events),
                        "face": bool(m.face_found),
                        "state": str(m.state),
                        "latency_ms": round(float(m.latency_ms), 3),
                    }
                )

        def on_event(m: AUEvent):
            with lock:
                events.append(event_row(m))

        listener.create_subscription(AUPrediction, "/inference/au", on_au, RELIABLE_QOS)
        listener.create_subscription(AUEvent, "/inference/au_events", on_event, RELIABLE_QOS)
        return ["/inference"]  # the protocol starts recording once the inference node reports ready

    rec_args = record_args(args, out / "session")
    print(
        f"demo: recording {args.aus} of synthetic subject {args.subject}"
        f"{' with live inference' if model is not None else ''} ...",
        flush=True,
    )
    summary = record.session(rec_args, add_nodes=add_nodes)
    for name, rows in (("predictions.jsonl", predictions), ("au_events.jsonl", events)):
        with open(out / name, "w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
    report = _report(out, predictions, events, summary, model)
    (out / "demo.json").write_text(json.dumps(report, indent=2))
    for seg in report["segments"]:
        print(
            f"demo: {seg['segment']}: true {seg['true_au']}, live {seg['live_au'] or '(no AU event)'}, "
            f"offline {seg['offline_au'] or '-'}",
            flush=True,
        )
    print(json.dumps(report), flush=True)
    return 0


def _report(out: Path, predictions: list[dict], events: list[dict], summary: dict, model) -> dict:
    import numpy as np

    from microexp.learn.evaluate import plot_session, score_session, session_offline_verdicts, session_truth

    truth = session_truth(out / "session")
    offline = None
    if model is not None and truth.segments:
        offline = session_offline_verdicts(out / "session", model, out / "dataset")
    scores, _ = score_session(truth, events, offline, "davis346") if "davis346" in truth.offsets else ({}, None)
    by_name = {s["segment"]: s for s in scores.get("per_segment", [])}
    segs = []
    for seg in truth.segments:
        inside = [p for p in predictions if seg.start_ns <= p["stamp_ns"] <= (seg.stop_ns or 2**63)]
        s = by_name.get(seg.name, {})
        segs.append(
            {
                "segment": seg.name,
                "true_au": seg.au,
                "windows": len(inside),
                "movement_windows": sum(1 for p in inside if p["state"] == "movement"),
                "no_face_windows": sum(1 for p in inside if p["state"] == "no_face"),
                "live_au": s.get("live"),
                "live_confidence": s.get("live_confidence"),
                "offline_au": s.get("offline"),
                "offline_confidence": s.get("offline_confidence"),
            }
        )
    if scores:
        windows = [{"t0_us": p["t0_us"], "t1_us": p["t1_us"], "state": p["state"]} for p in predictions]
        plot_session(truth, events, scores, "davis346", out / "timeline.png", windows)
    _event_frames(out, truth)
    return {
        "session": str(out / "session"),
        "segments": segs,
        "live_correct": sum(s["live_au"] == s["true_au"] for s in segs),
        "offline_correct": sum(s["offline_au"] == s["true_au"] for s in segs) if offline is not None else None,
        "spotting": scores.get("spotting"),
        "au_events": len(events),
        "au_events_in_rest": scores.get("au_events_in_rest"),
        "predictions": len(predictions),
        "latency_ms_p50": float(np.median([p["latency_ms"] for p in predictions])) if predictions else None,
        "recorded_bytes": summary["bytes"],
        "dropped": summary["dropped"],
        "outputs": ["predictions.jsonl", "au_events.jsonl", "timeline.png", "event_frames.png", "demo.json"],
        "note": "synthetic faces: the scores say the live path keeps the model's skill, not how it does on people",
    }


def _event_frames(out: Path, truth) -> None:
    """Eq. (1) frames of each segment at its busiest slice (about the apex)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from microexp.bags.events import iter_event_packets
    from microexp.bags.reader import Bag
    from microexp.events.frames import event_frames

    segs = [{"name": s.name, "au": s.au} for s in truth.segments]
    fig, axes = plt.subplots(1, max(1, len(segs)), figsize=(3.2 * max(1, len(segs)), 3.0))
    for ax, seg in zip(np.atleast_1d(axes), segs):
        with Bag(out / "session" / seg["name"]) as bag:
            ev = [e for _, e, _ in iter_event_packets(bag, "/davis346/events")]
        ev = np.concatenate(ev) if ev else None
        if ev is not None and len(ev):
            frames = event_frames(ev, 346, 260, slice_us=33_000)
            k = int(np.argmax(frames.reshape(len(frames), -1).sum(axis=1)))  # busiest slice ~ apex
            on = np.clip(frames[k, 1] / 2.0, 0, 1)
            off = np.clip(frames[k, 0] / 2.0, 0, 1)
            img = np.ones((260, 346, 3))
            img[..., 0] -= 0.8 * on  # ON events: blue
            img[..., 1] -= 0.8 * np.clip(on + off, 0, 1)
            img[..., 2] -= 0.8 * off  # OFF events: red
            ax.imshow(img, interpolation="nearest")
        ax.set_title(f"{seg['au']} (Eq. 1, 33 ms)", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "event_frames.png", dpi=110)
    plt.close(fig)
