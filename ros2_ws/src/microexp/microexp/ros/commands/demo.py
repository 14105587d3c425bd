"""`microexp demo` (what `make demo` runs): the whole system on the synthetic rig, no hardware needed.

1. A simulated subject performs a few Action Units in front of the simulated DAVIS346, EVK4 and webcam;
   the recorder writes a labelled session (one bag per AU) through real DDS, driven by the headless protocol.
2. At the same time the inference node runs the default SNN (models/au_snn_default.pt) live on the DAVIS346
   events, with MTCNN face boxes from the APS frames, publishing AU predictions every 33 ms.
3. Outputs in --out: the session folder, ``predictions.jsonl`` (every AUPrediction), ``timeline.png``
   (probability of the true AU and the top-1 class over time, segments shaded), ``event_frames.png``
   (Eq. (1) frames of each segment at its apex), ``demo.json`` (per segment: true AU, predicted AU).

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


def record_args(args, out) -> argparse.Namespace:
    """The `microexp record` options of the demo's session: the recorder's own defaults (so that options added
    there reach the demo too), a synthetic unattended session of the demo's subject, AUs and sensors."""
    parser = argparse.ArgumentParser(prog="microexp record")
    record.add_arguments(parser)
    ns = parser.parse_args(["--out", str(out)])
    ns.source, ns.subject, ns.aus, ns.sensors = "synthetic", args.subject, args.aus, args.sensors
    ns.time_scale, ns.headless = args.time_scale, True
    return ns


def run(args) -> int:
    from microexp.infer import default_model_path

    model = Path(args.model) if args.model else Path(default_model_path())
    if not model.exists():
        if args.model:
            raise MicroexpError(f"{model}: no such model file")
        print(
            f"demo: {model} is missing (train one with `microexp train`, see README): recording without live inference",
            flush=True,
        )
        model = None
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    predictions: list[dict] = []
    lock = threading.Lock()

    def add_nodes(graph):
        if model is None:
            return []
        from rclpy.node import Node

        from microexp.ros.base import RELIABLE_QOS
        from microexp.ros.compose import overrides
        from microexp.ros.nodes.inference_node import InferenceNode
        from microexp_msgs.msg import AUPrediction

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
                        "latency_ms": round(float(m.latency_ms), 3),
                    }
                )

        listener.create_subscription(AUPrediction, "/inference/au", on_au, RELIABLE_QOS)
        return ["/inference"]  # the protocol starts recording once the inference node reports ready

    rec_args = record_args(args, out / "session")
    print(
        f"demo: recording {args.aus} of synthetic subject {args.subject}"
        f"{' with live inference' if model is not None else ''} ...",
        flush=True,
    )
    summary = record.session(rec_args, add_nodes=add_nodes)
    with open(out / "predictions.jsonl", "w") as fh:
        for p in predictions:
            fh.write(json.dumps(p) + "\n")
    report = _report(out, predictions, summary)
    (out / "demo.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report), flush=True)
    return 0


def _report(out: Path, predictions: list[dict], summary: dict) -> dict:
    import numpy as np

    from microexp.aus import AU_LABELS, au_index
    from microexp.bags.manifest import load

    manifest = load(out / "session")
    segs = []
    for seg in manifest["segments"]:
        inside = [p for p in predictions if seg["start_ns"] <= p["stamp_ns"] <= (seg["stop_ns"] or 2**63)]
        # windows where the SNN's output was silent give uniform probabilities: no evidence, not "AU2"
        busy = [p for p in inside if p["events"] > 0 and np.ptp(p["probabilities"]) > 1e-6]
        mean = np.mean([p["probabilities"] for p in busy], axis=0) if busy else None
        segs.append(
            {
                "segment": seg["name"],
                "true_au": seg["au"],
                "windows": len(inside),
                "windows_with_output": len(busy),
                "predicted_au": AU_LABELS[int(np.argmax(mean))] if mean is not None else None,
                "p_true": round(float(mean[au_index(seg["au"])]), 4) if mean is not None else None,
            }
        )
    _plots(out, predictions, manifest)
    return {
        "session": str(out / "session"),
        "segments": segs,
        "predictions": len(predictions),
        "correct": sum(s["predicted_au"] == s["true_au"] for s in segs),
        "latency_ms_p50": float(np.median([p["latency_ms"] for p in predictions])) if predictions else None,
        "recorded_bytes": summary["bytes"],
        "dropped": summary["dropped"],
        "outputs": ["predictions.jsonl", "timeline.png", "event_frames.png", "demo.json"],
    }


def _plots(out: Path, predictions: list[dict], manifest: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from microexp.aus import au_index
    from microexp.bags.events import iter_event_packets
    from microexp.bags.reader import Bag
    from microexp.events.frames import event_frames

    fig, ax = plt.subplots(figsize=(11, 3.6))
    if predictions:
        t0 = predictions[0]["stamp_ns"]
        ts = np.array([(p["stamp_ns"] - t0) / 1e9 for p in predictions])
        probs = np.array([p["probabilities"] for p in predictions])
        top = probs.max(axis=1)
        ax.plot(ts, top, color="0.6", lw=0.8, label="top-1 probability")
        for seg in manifest["segments"]:
            a, b = (seg["start_ns"] - t0) / 1e9, ((seg["stop_ns"] or seg["start_ns"]) - t0) / 1e9
            ax.axvspan(a, b, color="tab:blue", alpha=0.08)
            ax.text(a, 1.02, seg["au"], fontsize=8, transform=ax.get_xaxis_transform())
            sel = (ts >= a) & (ts <= b)
            ax.plot(ts[sel], probs[sel, au_index(seg["au"])], color="tab:red", lw=1.2)
        ax.plot([], [], color="tab:red", label="probability of the true AU")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1.1)
    if predictions:
        ax.legend(loc="upper right", fontsize=8)
    ax.set_title("live AU predictions of the SNN on the DAVIS346 stream (synthetic subject)")
    fig.tight_layout()
    fig.savefig(out / "timeline.png", dpi=110)
    plt.close(fig)

    segs = manifest["segments"]
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
