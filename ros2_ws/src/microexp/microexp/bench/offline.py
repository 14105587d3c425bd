"""`microexp bench offline`: the paper's two offline baselines on the synthetic dataset, reduced CPU config.

- AU recognition (Table 5): SNN and 3D-CNN x events (DAVIS346) and webcam RGB, leave-one-subject-out;
- reconstruction (Table 6): the cVAE on DAVIS346 and on EVK4 events.

Runs live in ``--runs`` (default ``out/bench_offline``) and are resumable: a finished run is read back, an
interrupted one continues, so the first call trains everything (hours on 2 CPU cores: see docs/offline.md)
and later calls only collect. Without a dataset (``--data``, default ``out/synth/dataset``, made by
``microexp synth-dataset --out out/synth``) the result says so and nothing runs. Writes
``RUNS/results.md`` (both tables) and returns one dict: per model x modality the mean ± std accuracy and
top-3 accuracy over folds, macro F1, wall time; per sensor the six reconstruction metrics.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from microexp.learn.config import make_config
from microexp.learn.metrics import LOSO_FIELDS, RUN_FIELDS
from microexp.learn.reconstruct import make_recon_config, train_reconstruction
from microexp.learn.report import table5, table6
from microexp.learn.train import run_training

REPO = Path(__file__).resolve().parents[5]


def add_arguments(parser) -> None:
    base = Path(os.environ.get("MICROEXP_OFFLINE_DIR", REPO / "out"))
    parser.add_argument("--data", default=str(base / "synth" / "dataset"), help="dataset folder")
    parser.add_argument("--runs", default=str(base / "bench_offline"), help="where the runs are kept")
    parser.add_argument("--config", choices=("cpu", "paper"), default="cpu", help="training configuration")
    parser.add_argument("--models", default="snn,cnn3d", help="models to train")
    parser.add_argument("--modalities", default="events,rgb", help="modalities to train on")
    parser.add_argument("--recon-sensors", default="davis346,evk4", help="cVAE conditions ('' = no reconstruction)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run(args) -> dict:
    data, runs = Path(args.data), Path(args.runs)
    if not (data / "index.json").exists():
        return {
            "status": f"no dataset at {data}: make it with `microexp synth-dataset --out {data.parent}` "
            "(about 40 min on 2 cores), then run this again"
        }
    t0 = time.monotonic()
    recognition = []
    for model in [m for m in args.models.split(",") if m]:
        for modality in [m for m in args.modalities.split(",") if m]:
            cfg = make_config(model, modality, args.config, "davis346")
            out = runs / f"{model}_{modality}_{args.config}"
            summary = run_training(
                data, out, cfg, device="cpu", resume=True, final=False, progress=True, threads=args.threads
            )
            recognition.append(
                {k: summary.get(k) for k in (*RUN_FIELDS, "parameters", *LOSO_FIELDS, "seconds")}
                | {"epochs": cfg.epochs, "slices": cfg.slices, "run": str(out)}
            )
    reconstruction = {}
    for sensor in [s for s in args.recon_sensors.split(",") if s]:
        reconstruction[sensor] = _reconstruction(data, runs / f"cvae_{sensor}_{args.config}", sensor, args)
    _write_tables(runs, recognition, reconstruction)
    return {
        "data": str(data),
        "config": args.config,
        "chance": round(1 / 21, 4),
        "recognition": recognition,
        "reconstruction": reconstruction,
        "wall_s": round(time.monotonic() - t0, 1),
        "results": str(runs / "results.md"),
    }


def _reconstruction(data: Path, out: Path, sensor: str, args) -> dict:
    metrics = out / "metrics.json"
    if metrics.exists() and (out / "checkpoint.pt").exists():
        result = json.loads(metrics.read_text())
    else:
        result = train_reconstruction(
            data, out, make_recon_config(sensor, args.config), threads=args.threads, resume=True
        )
    m = result[sensor]
    return {
        k: m.get(k)
        for k in ("mse", "rmse", "mae", "psnr", "ssim", "ncc", "frames", "test_clips", "parameters", "train_seconds")
    } | {"run": str(out)}


def _write_tables(runs: Path, recognition: list, reconstruction: dict) -> None:
    runs.mkdir(parents=True, exist_ok=True)
    text = [
        "# Offline baselines on the synthetic dataset (`microexp bench offline`)",
        "",
        "AU recognition, leave-one-subject-out (mean ± std over folds; chance 4.76 %):",
        "",
        table5([r for r in recognition if r.get("accuracy") is not None]),
    ]
    if reconstruction:
        text += ["", "Reconstruction (cVAE, held-out clips):", "", table6(reconstruction)]
    (runs / "results.md").write_text("\n".join(text) + "\n")
