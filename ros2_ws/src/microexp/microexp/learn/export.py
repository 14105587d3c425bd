"""`microexp export RUN --out models/au_snn_default.pt`: ship a trained model with its model card.

Takes a ``microexp train ... --final`` run folder, copies ``RUN/final/checkpoint.pt`` (the model trained on
every subject) with float16 weights (half the size; :func:`microexp.models.load_checkpoint` rebuilds the
float32 model), and writes ``MODEL_CARD.md`` beside it. The card quotes what the run measured: the
leave-one-subject-out accuracy (mean ± std over folds, per fold, per AU), the training configuration, the
data it saw, and what those numbers do and do not mean. Nothing in the card is typed by hand.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import numpy as np

from microexp.aus import au_index
from microexp.errors import FormatError, MicroexpError
from microexp.learn.metrics import LOSO_FIELDS


def add_arguments(parser) -> None:
    parser.add_argument("run", help="a `microexp train --final` run folder (metrics.json, final/checkpoint.pt)")
    parser.add_argument("--out", required=True, help="checkpoint to write, e.g. models/au_snn_default.pt")
    parser.add_argument("--card", default=None, help="model card path (default: MODEL_CARD.md beside --out)")
    parser.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16)")
    parser.add_argument("--note", default="", help="a paragraph added to the card (e.g. where the data came from)")
    parser.add_argument(
        "--evaluation",
        default="",
        help="an evaluate.json of `microexp evaluate` with this model: its live and offline figures go into the card",
    )


def _read_json(path: Path) -> dict:
    """A metrics.json as a dict (FormatError naming the file otherwise)."""
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise FormatError(path, f"not valid JSON: {exc.msg}", exc.pos) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(doc, dict):
        raise FormatError(path, "not a JSON object (a metrics.json of microexp train)")
    return doc


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_run(
    run, out, card: Optional[str] = None, half: bool = True, note: str = "", evaluation: Optional[dict] = None
) -> dict:
    """Export ``run``'s final model to ``out`` and write its card; returns a summary dict."""
    from microexp.models import count_parameters, load_checkpoint  # torch

    run, out = Path(run), Path(out)
    metrics_path, src = run / "metrics.json", run / "final" / "checkpoint.pt"
    for p, what in ((metrics_path, "leave-one-subject-out metrics"), (src, "final model (train with --final)")):
        if not p.exists():
            raise MicroexpError(f"{p}: missing ({what}); {run} is not a finished `microexp train --final` run")
    summary = _read_json(metrics_path)
    missing = [
        k
        for k in ("model", "modality", "sensor", "folds", "accuracy", "top3_accuracy", "macro_f1", "train")
        if k not in summary
    ]
    train = summary.get("train")
    if not missing:
        missing = [
            f"train.{k}"
            for k in (
                "config",
                "epochs",
                "batch_size",
                "lr",
                "dropout",
                "slices",
                "jitter",
                "shift_px",
                "mirror",
                "seed",
            )
            if not isinstance(train, dict) or k not in train
        ]
    if missing:
        raise FormatError(
            metrics_path, f"field {missing[0]} missing: not the metrics.json of a finished `microexp train` run"
        )
    loso = {k: summary.get(k) for k in LOSO_FIELDS}
    calibration = calibrate_temperature(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    export_checkpoint(
        src,
        out,
        half=half,
        extra={
            "loso": loso,
            "exported_from": str(run),
            "temperature": calibration["temperature"],
            "calibration": calibration,
        },
    )
    model, meta = load_checkpoint(out)
    info = {
        "checkpoint": str(out),
        "bytes": out.stat().st_size,
        "sha256": _sha256(out),
        "architecture": meta.get("architecture"),
        "parameters": count_parameters(model),
        "dtype": "float16" if half else "float32",
        "loso": loso,
        "temperature": calibration["temperature"],
    }
    card_path = Path(card) if card else out.parent / "MODEL_CARD.md"
    card_path.write_text(model_card(summary, info, meta, note, evaluation))
    info["card"] = str(card_path)
    return info


def export_checkpoint(src, dst, half: bool = True, extra: Optional[dict] = None):
    """Copy a checkpoint, optionally with float16 weights (half the size; ``load_checkpoint`` builds the
    float32 model and ``load_state_dict`` converts the values back). ``extra`` entries are added."""
    from microexp.models import load_checkpoint, save_checkpoint  # torch

    model, meta = load_checkpoint(src)
    merged = dict(meta.get("extra", {}))
    merged.update(extra or {})
    if half:
        model = model.half()
        merged["stored_dtype"] = "float16"
    return save_checkpoint(dst, model, meta["config"], extra=merged, classes=meta.get("classes"))


def calibrate_temperature(run) -> dict:
    """Temperature scaling (Guo et al. 2017) of the SNN's time-averaged vote activations: the T that
    minimises the negative log-likelihood of softmax(scores / T) over the held-out predictions of every
    leave-one-subject-out fold of ``run`` (each clip scored by a model that never saw its subject).
    Returns {"temperature", "nll", "nll_at_1", "predictions"}."""
    scores, labels = [], []
    for fold in sorted(Path(run).glob("fold_*/metrics.json")):
        try:
            for p in _read_json(fold).get("predictions", []):
                scores.append([float(v) for v in p["scores"]])
                labels.append(au_index(p["true"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise FormatError(fold, "predictions are not a list of {scores, true} entries") from None
    if not scores:
        raise MicroexpError(f"{run}: no fold predictions to calibrate the temperature on")
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels)

    def nll(t: float) -> float:
        z = s / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean())

    grid = np.exp(np.linspace(np.log(0.005), np.log(10.0), 400))
    values = [nll(t) for t in grid]
    best = int(np.argmin(values))
    return {"temperature": float(grid[best]), "nll": values[best], "nll_at_1": nll(1.0), "predictions": len(y)}


def _pct(v, sd=None) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.1f} %" + (f" ± {100 * sd:.1f}" if sd is not None else "")


def _portable(path: str) -> str:
    """A dataset path as the card shows it: relative to the working folder when inside it, else its last two
    parts (no machine's folders in a shipped card)."""
    p = Path(str(path))
    if not p.is_absolute():
        return str(p)
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(Path(*p.parts[-2:])) if len(p.parts) > 2 else p.name


def live_section(evaluation: dict) -> list[str]:
    """Card lines quoting a ``microexp evaluate`` summary of this model: live beside offline."""
    s = evaluation["summary"]
    sessions = evaluation.get("sessions", [])
    names = ", ".join(Path(r["session"]).name for r in sessions)
    sp, rec, lat = s.get("spotting") or {}, s.get("recognition") or {}, s.get("latency_apex_to_event_ms") or {}
    return [
        "",
        "## Live (the inference node) beside offline",
        "",
        f"Measured by `microexp evaluate` ({s.get('mode')}) on {s['sessions']} recorded sessions ({names}; "
        f"{s['segments']} segments): the node spots each movement and judges the training window around its "
        "peak; offline, the same checkpoint judges the clips `microexp dataset` cuts from the same bags.",
        "",
        "| | per-segment accuracy |",
        "|---|---:|",
        f"| live (AU events) | {_pct(s.get('live_accuracy'))} |",
        f"| offline (dataset clips) | {_pct(s.get('offline_accuracy'))} |",
        "",
        f"- Spotting (MEGC, IoU ≥ {s.get('iou', 0.5)}, pooled): precision {_pct(sp.get('precision'))}, recall "
        f"{_pct(sp.get('recall'))}, F1 {_pct(sp.get('f1'))} ({int(sp.get('tp') or 0)} of "
        f"{int((sp.get('tp') or 0) + (sp.get('fn') or 0))} movements); recognition of the spotted ones "
        f"{_pct(rec.get('accuracy'))}; AU events while the face was at rest: {s.get('au_events_in_rest')}.",
        f"- Latency from the true apex to the AU event: p50 up to {lat.get('p50_max', '?')} ms, p99 up to "
        f"{lat.get('p99_max', '?')} ms per session (the verdict waits for the 16 windows around the peak).",
        "- Synthetic sessions: these figures say how much of the model's skill the live path keeps, not how it "
        "does on people.",
    ]


def model_card(summary: dict, info: dict, meta: dict, note: str = "", evaluation: Optional[dict] = None) -> str:
    """The markdown model card of an exported model."""
    t = summary["train"]
    extra = meta.get("extra", {})
    inp = extra.get("input", {})
    lines = [
        f"# {Path(info['checkpoint']).name}: {summary['model'].upper()} Action Unit classifier ({summary['modality']}, "
        f"{summary['sensor']})",
        "",
        "Generated by `microexp export` from the training run; every number below was measured by that run.",
        "",
        "## What it is",
        "",
        f"- Architecture: `{info['architecture']}`, {info['parameters']:,} parameters (the paper's SNN, §4.3: "
        "2 x [conv 3x3, batch norm, PLIF, max-pool 2], 2 x [dropout, FC, PLIF], a vote over 10 output neurons per class).",
        f"- Weights stored as {info['dtype']} ({info['bytes'] / 1e6:.1f} MB, sha256 `{info['sha256'][:16]}…`); "
        "`load_checkpoint` rebuilds the float32 model.",
        f"- Input: {inp.get('slice_us', 33000) / 1000:g} ms two-polarity event frames ({inp.get('sensor', '?')}), {inp.get('size', 64)} x {inp.get('size', 64)} face crops, "
        f"{inp.get('scale', 'Eq. (1) mean counts per sensor pixel')}"
        + (
            f", binned after the background-activity filter (neighbour support within {inp['noise_filter_us']} µs)"
            if inp.get("noise_filter_us")
            else ""
        )
        + (", face box placed by MTCNN's five landmarks (`landmark_box`)" if inp.get("face_box") == "landmarks" else "")
        + ". The live node (`microexp infer`, `inference_node`) feeds it exactly this, one 33 ms slice per step"
        + (" (its `noise_filter_us` and `face_box` default to the model's)")
        + ".",
        f"- Output: one score per AU ({', '.join(meta.get('classes') or [])}): the time-averaged vote activation "
        "in [0, 1]. The live node publishes probabilities softmax(scores / T) with T = "
        f"{extra.get('temperature', 1.0):.4g}, fitted by temperature scaling on the held-out fold predictions "
        f"(negative log-likelihood {extra.get('calibration', {}).get('nll', float('nan')):.3f}, against "
        f"{extra.get('calibration', {}).get('nll_at_1', float('nan')):.3f} at T = 1); the node's `temperature` "
        "parameter overrides it.",
        "",
        "## How it was trained",
        "",
        f"- Data: `{_portable(extra.get('dataset', summary.get('data', '?')))}` — subjects {', '.join(extra.get('train_subjects', []))} "
        "(all of them: this is the `--final` model; the accuracy below comes from the leave-one-subject-out folds "
        "of the same run, each trained without its test subject).",
        f"- Configuration `{t['config']}`: {t['epochs']} epochs, batch {t['batch_size']}, Adam lr {t['lr']:g}, cosine "
        f"annealing, dropout {t['dropout']}, MSE loss on one-hot targets, windows of {t['slices']} slices (33 ms) around "
        f"the movement, jitter ±{t['jitter']} slices, shifts ±{t['shift_px']} px, mirror {'on' if t['mirror'] else 'off'}, "
        f"seed {t['seed']}.",
        "",
        "## Leave-one-subject-out results",
        "",
        f"- Accuracy **{_pct(summary['accuracy'], summary.get('accuracy_std'))}** (mean ± std over "
        f"{summary['folds']} folds; chance {100 * summary.get('chance', 1 / 21):.1f} %), top-3 "
        f"{_pct(summary['top3_accuracy'], summary.get('top3_accuracy_std'))}, macro F1 "
        f"{_pct(summary['macro_f1'], summary.get('macro_f1_std'))}, pooled accuracy {_pct(summary.get('pooled_accuracy'))}.",
        "",
        "| test subject | accuracy | top-3 | test clips |",
        "|---|---:|---:|---:|",
    ]
    for f in summary.get("per_fold", []):
        lines.append(f"| {f['subject']} | {_pct(f['accuracy'])} | {_pct(f['top3_accuracy'])} | {f['test_clips']} |")
    lines += ["", "Per-AU F1 (mean over folds):", "", "| AU | F1 |", "|---|---:|"]
    for label, v in summary.get("per_au_f1", {}).items():
        lines.append(f"| {label} | {_pct(v['mean'])} |")
    lines += [
        "",
        "## What the numbers mean",
        "",
        "- The training data is **synthetic** when the dataset was made by `microexp synth-dataset`: rendered "
        "faces, simulated DVS events, one take per AU per subject. Accuracy on it says the whole chain "
        "(recording, sync, cropping, binning, training) works and how separable the rig's AUs are; it is "
        "**not** an estimate of accuracy on real people. The paper reports 51.2 % for this architecture "
        "on its real recordings.",
        "- Retrain on your own recordings (`microexp dataset` → `microexp train --final` → `microexp export`) "
        "before using the predictions for anything.",
        "- Faces are biometric data: the model was trained on pseudonymised subjects only.",
    ]
    if evaluation:
        lines += live_section(evaluation)
    if note:
        lines += ["", "## Note", "", note]
    return "\n".join(lines) + "\n"


def run(args) -> int:
    evaluation = _read_json(Path(args.evaluation)) if args.evaluation else None
    info = export_run(args.run, args.out, card=args.card, half=not args.float32, note=args.note, evaluation=evaluation)
    print(json.dumps(info), flush=True)
    return 0
