"""Results folders of training and reconstruction runs: ``metrics.json``, ``results.md`` and plots.

Plots use matplotlib's Agg backend (no display needed). Tables follow the paper's: Table 5 (model,
parameters, modality, accuracy, top-3 accuracy) and Table 6 (one column per sensor, the six metrics).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from microexp.aus import AU_LABELS
from microexp.learn.config import TrainConfig
from microexp.learn.metrics import mean_std
from microexp.models.registry import AU_MODELS


def parameters_of(cfg: TrainConfig) -> int:
    """Parameter count of the model ``cfg`` trains (built once on the CPU)."""
    from microexp.models import count_parameters  # torch

    return count_parameters(cfg.build_model())


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def pct(v: Optional[float], sd: Optional[float] = None) -> str:
    if v is None or v != v:
        return "–"
    return f"{100 * v:.2f}" + (f" ± {100 * sd:.2f}" if sd is not None and sd == sd else "")


def summarize_folds(fold_results: Sequence[dict]) -> dict:
    """Mean ± std over folds of accuracy, top-3 accuracy, macro F1 and each AU's F1; summed confusion."""
    out: dict = {"folds": len(fold_results)}
    for key in ("accuracy", "top3_accuracy", "macro_f1"):
        m, s = mean_std([f[key] for f in fold_results])
        out[key], out[f"{key}_std"] = m, s
    out["per_au_f1"] = {}
    for label in AU_LABELS:
        m, s = mean_std([f["per_class_f1"][label] for f in fold_results])
        out["per_au_f1"][label] = {"mean": m, "std": s}
    cm = np.zeros((len(AU_LABELS), len(AU_LABELS)), dtype=np.int64)
    for f in fold_results:
        cm += np.asarray(f["confusion"], dtype=np.int64)
    out["confusion"] = cm.tolist()
    out["pooled_accuracy"] = float(np.trace(cm) / cm.sum()) if cm.sum() else float("nan")
    out["per_fold"] = [
        {
            "subject": f["subject"],
            "accuracy": f["accuracy"],
            "top3_accuracy": f["top3_accuracy"],
            "macro_f1": f["macro_f1"],
            "test_clips": f["test_clips"],
            "seconds": f.get("seconds"),
        }
        for f in fold_results
    ]
    return out


def write_training_report(out, cfg, fold_results: Sequence[dict], seconds: float) -> dict:
    """Write RUN/metrics.json, RUN/results.md and the plots of a leave-one-subject-out run; return the summary."""
    out = Path(out)
    s = summarize_folds(fold_results)
    summary = {
        "model": cfg.model,
        "modality": cfg.modality,
        "sensor": cfg.sensor,
        "config": cfg.config,
        "parameters": parameters_of(cfg),
        "train": dataclasses.asdict(cfg),
        **s,
        "seconds": round(float(seconds), 1),
        "chance": 1.0 / len(AU_LABELS),
    }
    _write_json(out / "metrics.json", summary)
    plot_confusion(
        np.asarray(s["confusion"]),
        out / "confusion.png",
        f"{cfg.model} / {cfg.modality} ({cfg.sensor}), leave-one-subject-out, {s['folds']} folds",
    )
    plot_per_au_f1(
        s["per_au_f1"], out / "per_au_f1.png", f"{cfg.model} / {cfg.modality}: per-AU F1 (mean ± std over folds)"
    )
    plot_curves(fold_results, out / "curves.png")
    (out / "results.md").write_text(training_markdown(summary))
    return summary


def table5(rows: Sequence[dict]) -> str:
    """Markdown table in the layout of the paper's Table 5 from run summaries."""
    lines = [
        "| Model | #Par. | Modal. | Acc. (%) | Top-3 Acc. (%) | Macro F1 (%) | folds |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        par = r.get("parameters")
        name = r.get("label") or (AU_MODELS[r["model"]].label if r["model"] in AU_MODELS else r["model"])
        lines.append(
            f"| {name} | {par / 1e6:.2f}M | {r['modality']} | "
            f"{pct(r['accuracy'], r.get('accuracy_std'))} | {pct(r['top3_accuracy'], r.get('top3_accuracy_std'))} | "
            f"{pct(r['macro_f1'], r.get('macro_f1_std'))} | {r['folds']} |"
            if par
            else f"| {r['model']} | – | {r['modality']} | {pct(r['accuracy'])} | {pct(r['top3_accuracy'])} | "
            f"{pct(r.get('macro_f1'))} | {r['folds']} |"
        )
    return "\n".join(lines) + "\n"


def training_markdown(summary: dict) -> str:
    t = summary["train"]
    lines = [
        f"# AU recognition: {summary['model']} on {summary['modality']} ({summary['sensor']})",
        "",
        f"Leave-one-subject-out, {summary['folds']} folds; config `{summary['config']}`: {t['epochs']} epochs, "
        f"batch {t['batch_size']}, Adam lr {t['lr']:g}, cosine annealing, dropout {t['dropout']}, MSE on one-hot, "
        f"{t['slices']} slices of 33 ms; seed {t['seed']}. Wall time {summary['seconds']:.0f} s. "
        f"Chance: {100 * summary['chance']:.1f} %.",
        "",
        table5([summary]),
        "",
        "| fold (test subject) | accuracy (%) | top-3 (%) | macro F1 (%) | test clips | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for f in summary["per_fold"]:
        lines.append(
            f"| {f['subject']} | {pct(f['accuracy'])} | {pct(f['top3_accuracy'])} | {pct(f['macro_f1'])} | "
            f"{f['test_clips']} | {f['seconds'] if f['seconds'] is not None else '–'} |"
        )
    lines += ["", "Per-AU F1 (mean ± std over folds):", "", "| AU | F1 (%) |", "|---|---:|"]
    for label, v in summary["per_au_f1"].items():
        lines.append(f"| {label} | {pct(v['mean'], v['std'])} |")
    lines += ["", "![confusion](confusion.png)", "", "![per-AU F1](per_au_f1.png)", "", "![curves](curves.png)", ""]
    return "\n".join(lines)


def plot_confusion(cm: np.ndarray, path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(cm, cmap="Blues")
    n = cm.shape[0]
    ax.set_xticks(range(n), AU_LABELS, rotation=90, fontsize=7)
    ax.set_yticks(range(n), AU_LABELS, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    int(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if cm[i, j] > cm.max() / 2 else "black",
                )
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_per_au_f1(per_au: dict, path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.2))
    labels = list(per_au)
    ax.bar(
        range(len(labels)),
        [per_au[k]["mean"] for k in labels],
        yerr=[per_au[k]["std"] for k in labels],
        color="#4c72b0",
        capsize=2,
    )
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(fold_results: Sequence[dict], path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for f in fold_results:
        h = f.get("history") or []
        if not h:
            continue
        ep = [r["epoch"] for r in h]
        axes[0].plot(ep, [r["loss"] for r in h], label=f["subject"], lw=1)
        axes[1].plot(ep, [r["train_accuracy"] for r in h], lw=1)
    axes[0].set_title("training loss (MSE)", fontsize=9)
    axes[1].set_title("training accuracy", fontsize=9)
    for ax in axes:
        ax.set_xlabel("epoch")
    if fold_results:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- reconstruction

TABLE6_ROWS = (
    ("mse", "Mean MSE", "{:.4f}"),
    ("rmse", "Mean RMSE", "{:.4f}"),
    ("mae", "Mean MAE", "{:.4f}"),
    ("psnr", "Mean PSNR", "{:.2f} dB"),
    ("ssim", "Mean SSIM", "{:.4f}"),
    ("ncc", "Mean NCC", "{:.4f}"),
)


def table6(results: dict) -> str:
    """Markdown table like the paper's Table 6; ``results`` maps a sensor name to its metrics dict."""
    sensors = list(results)
    lines = ["| Metric | " + " | ".join(sensors) + " |", "|---|" + "---:|" * len(sensors)]
    params = [results[s].get("parameters") for s in sensors]
    lines.append("| Model Params. | " + " | ".join(f"{p / 1e6:.1f}M" if p else "–" for p in params) + " |")
    for key, name, fmt in TABLE6_ROWS:
        cells = [fmt.format(results[s][key]) if results[s].get(key) is not None else "–" for s in sensors]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| test frames | " + " | ".join(str(results[s].get("frames", "–")) for s in sensors) + " |")
    return "\n".join(lines) + "\n"


def plot_reconstructions(rows: Sequence[tuple], path, title: str = "") -> None:
    """Fig. 5-style grid: each row is (event frame (2, S, S), reconstruction (S, S), ground truth (S, S), caption)."""
    plt = _plt()
    n = len(rows)
    fig, axes = plt.subplots(n, 3, figsize=(6, 2.0 * n + 0.4), squeeze=False)
    for i, (ev, rec, gt, caption) in enumerate(rows):
        ev = np.asarray(ev, dtype=np.float32)
        scale = max(float(np.percentile(ev, 99.5)), 1e-6)
        img = np.ones(ev.shape[1:] + (3,), dtype=np.float32)
        on, off = np.clip(ev[1] / scale, 0, 1), np.clip(ev[0] / scale, 0, 1)
        img[..., 0] -= on  # ON blue, OFF red (as the synthetic rig's pictures)
        img[..., 1] -= np.maximum(on, off)
        img[..., 2] -= off
        for j, (im, name) in enumerate(
            ((np.clip(img, 0, 1), "event frame"), (rec, "reconstruction"), (gt, "ground truth"))
        ):
            ax = axes[i, j]
            ax.imshow(im, cmap=None if im.ndim == 3 else "gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
        axes[i, 0].set_ylabel(caption, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
