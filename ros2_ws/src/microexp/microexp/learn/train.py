"""`microexp train`: Action Unit recognition with leave-one-subject-out cross-validation (paper §5, Table 5).

One fold per subject: the model is trained on the clips of every other subject and tested on that subject's
clips; no subject is ever in both (``loso_folds``). The model of the last epoch is tested (no model selection
on the test subject). Per fold and as mean ± std over folds: accuracy, top-3 accuracy, per-AU F1, and the
confusion matrix summed over folds.

Configurations (``--config``)
-----------------------------
``paper`` — §5 as published: Adam, lr 1e-3 for the SNN and 1e-4 for the 3D-CNN, cosine annealing over 100
epochs, batch 8, dropout 0.2, MSE loss between the output and the one-hot label, whole clips (75 slices of
33 ms = the paper's 2.5 s average clip, centred on the movement), no augmentation.

``cpu`` — the same optimiser, loss, batch and dropout, reduced so that a 7-fold run of the SNN finishes in
tens of minutes on 2 CPU cores: 16 slices (528 ms) centred on the movement instead of 75, fewer epochs (SNN
24, 3D-CNN 10), and the window start jitters by up to ±2 slices. Two more augmentations are implemented
and off by default (``TrainConfig.shift_px``, ``TrainConfig.mirror``): frame shifts and a left-right mirror
with the lateral AUs swapped (AU51 <-> AU52, AU61 <-> AU62; the others are symmetric); on the synthetic
folds S01 and S02 neither helped.

The movement is found without ground truth: the slice where event activity inside the face box rises most
above its median (:func:`microexp.events.activity.movement_peak`, stored in the index as ``activity_peak``). RGB
clips use the same window as the events of the same clip.

Inputs are exactly what the live node feeds the model: Eq. (1) crops as stored (mean events per sensor pixel,
no further scaling) for ``events``; webcam RGB crops divided by 255 for ``rgb`` (3 input channels). Losses:
the SNN's time-averaged voting activations (in [0, 1]) against the one-hot label, as in the paper; the
3D-CNN's softmax probabilities against the one-hot label (its logits are unbounded).

Determinism: every random choice (initialisation, dropout, shuffling, augmentation) comes from generators
seeded by ``seed`` and the fold, so a run repeats exactly on the same machine and torch build.

Outputs (``--out RUN``)::

    RUN/config.json                     the training configuration
    RUN/fold_<subject>/checkpoint.pt    the fold's model (microexp checkpoint with config and metrics)
    RUN/fold_<subject>/last.pt          resume state (model, optimiser, scheduler, epoch, RNG), while training
    RUN/fold_<subject>/metrics.json     the fold's metrics, history and predictions
    RUN/final/checkpoint.pt             with --final: the model trained on every subject
    RUN/metrics.json, RUN/results.md, RUN/confusion.png, RUN/per_au_f1.png, RUN/curves.png

Multi-GPU: under ``torchrun --nproc_per_node N microexp train ...`` (``WORLD_SIZE`` > 1) each process takes
one GPU (NCCL; gloo on CPU), wraps the model in DistributedDataParallel and trains on its share of each
epoch's batches (every process sees ``batch_size`` clips per step, so the effective batch is N x 8); rank 0
evaluates and writes. Folds run one after another.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from microexp.aus import AU_LABELS, NUM_CLASSES
from microexp.errors import FormatError, MicroexpError, ParameterError
from microexp.learn.clips import MIRROR_PERMUTATION, ClipBank
from microexp.learn.config import MODALITIES, MODELS, TrainConfig, make_config
from microexp.learn.dataset import ClipDataset
from microexp.learn.folds import Sample, loso_folds, samples_for, take_split
from microexp.learn.metrics import LOSO_FIELDS, RUN_FIELDS, classification_metrics
from microexp.learn.report import write_training_report
from microexp.models.device import resolve_device
from microexp.models.registry import model_kind

# ---------------------------------------------------------------------------------------------- models


def predict(model, windows: np.ndarray, batch_size: int = 8, device: str = "cpu") -> np.ndarray:
    """Scores (N, 21) of windows (N, T, C, S, S) with a model in eval mode (either architecture)."""
    import torch

    kind = model_kind(model)
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(windows), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(windows[i : i + batch_size], dtype=np.float32)).to(device)
            out.append(kind.scores(model, x).float().cpu().numpy())
    kind.reset(model)
    return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES), np.float32)


# ---------------------------------------------------------------------------------------------- distributed


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (NCCL on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local)


def _barrier(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


# ---------------------------------------------------------------------------------------------- training


def _seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _load_resume_state(last: Path, model, opt, sched, device: str) -> tuple[list[dict], int]:
    """Load ``last.pt`` into the model, optimizer, scheduler and torch's RNG; returns (history, epochs done).
    A damaged or diverged state is a FormatError naming the file."""
    import torch

    try:
        from microexp.errors import input_file
        from microexp.models.checkpoint import nonfinite

        state = torch.load(input_file(last, "resume state"), map_location=device, weights_only=True)
        bad = nonfinite({"model": state["model"], "optimizer": state["optimizer"]})
        if bad:
            raise ValueError(f"{bad} (the training diverged)")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        return list(state["history"]), int(state["epoch"])
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - torch reports damaged files through many exception types
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise FormatError(
            last,
            f"damaged resume state ({type(exc).__name__}: {detail}); delete it to train this fold again from its start",
        ) from None


def _save_resume_state(last: Path, model, opt, sched, epochs: int, history: list[dict]) -> None:
    """``last.pt`` (written to a .tmp, then renamed): what :func:`_load_resume_state` reads back."""
    import torch

    tmp = last.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epochs,
            "rng": torch.get_rng_state(),
            "history": history,
        },
        tmp,
    )
    os.replace(tmp, last)


def train_fold(
    cfg: TrainConfig,
    bank: ClipBank,
    samples: Sequence[Sample],
    train_idx: Sequence[int],
    folder: Path,
    device: str = "cpu",
    dist_info: Dist | None = None,
    resume: bool = False,
    progress: bool = True,
    fold_key: int = 0,
    label: str = "",
):
    """Train one model on ``train_idx``; returns (model, history). Saves ``last.pt`` after every epoch."""
    dist_info = dist_info or Dist()
    import torch
    from tqdm import tqdm

    _seed_all(cfg.seed * 1000 + fold_key)
    kind = model_kind(cfg.model, "--model")
    model = cfg.build_model().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    history: list[dict] = []
    start_epoch = 0
    last = folder / "last.pt"
    if resume and last.exists():
        history, start_epoch = _load_resume_state(last, model, opt, sched, device)
    net = model
    if dist_info.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[dist_info.local_rank] if device.startswith("cuda") else None)
    labels = np.array([samples[i].label for i in train_idx])
    onehot_all = np.eye(NUM_CLASSES, dtype=np.float32)
    steps = math.ceil(len(train_idx) / (cfg.batch_size * dist_info.world))
    bar = tqdm(
        range(start_epoch, cfg.epochs),
        desc=f"{label} epochs",
        unit="ep",
        initial=start_epoch,
        total=cfg.epochs,
        disable=not (progress and dist_info.main),
        file=sys.stderr,
        dynamic_ncols=True,
    )
    for epoch in bar:
        t0 = time.monotonic()
        rng = np.random.default_rng([cfg.seed, fold_key, epoch])
        perm = rng.permutation(len(train_idx))
        need = steps * cfg.batch_size * dist_info.world
        perm = np.resize(perm, need)  # wrap around so every process runs the same number of steps
        mine = perm[dist_info.rank :: dist_info.world]
        model.train()
        losses, correct, seen = [], 0, 0
        for b in range(steps):
            pos = mine[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            idx = [train_idx[p] for p in pos]
            y = labels[pos]
            mirror = rng.random(len(idx)) < 0.5 if cfg.mirror else np.zeros(len(idx), bool)
            y = np.where(mirror, MIRROR_PERMUTATION[y], y)
            x = bank.batch(idx, rng, cfg.shift_px, mirror)
            xt = torch.from_numpy(x).to(device, non_blocking=True)
            yt = torch.from_numpy(onehot_all[y]).to(device)
            scores = kind.scores(net, xt)
            loss = torch.nn.functional.mse_loss(scores, yt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            correct += int((scores.detach().argmax(1).cpu().numpy() == y).sum())
            seen += len(y)
        sched.step()
        rec = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)),
            "train_accuracy": correct / max(seen, 1),
            "lr": float(opt.param_groups[0]["lr"]),
            "seconds": round(time.monotonic() - t0, 2),
        }
        history.append(rec)
        if dist_info.main:
            bar.set_postfix(loss=f"{rec['loss']:.4f}", acc=f"{rec['train_accuracy']:.2f}", s=f"{rec['seconds']:.0f}")
            _save_resume_state(last, model, opt, sched, epoch + 1, history)
    bar.close()
    return model, history


def _input_description(cfg: TrainConfig, ds) -> dict:
    return {
        "modality": cfg.modality,
        "sensor": cfg.sensor,
        "slices": cfg.slices,
        "slice_us": ds.slice_us,
        "size": ds.size,
        "crop": "microexp.vision.crop.crop_resize of the MTCNN face box (square, margin 1.2)",
        "scale": "Eq. (1) mean counts per sensor pixel, unscaled" if cfg.modality == "events" else "RGB / 255",
        "window": "slices centred on the activity peak",
        "noise_filter_us": int(ds.index.get("noise_filter_us", 0) or 0) if cfg.modality == "events" else 0,
        "face_box": str(ds.index.get("face_box", "mtcnn") or "mtcnn"),
    }


def _fold_metrics(scores: np.ndarray, y: np.ndarray) -> dict:
    return classification_metrics(scores, y, AU_LABELS, k=3)


def _check_protocol(protocol: str, folds) -> None:
    if protocol not in ("loso", "takes"):
        raise ParameterError(f"--protocol must be 'loso' or 'takes', got {protocol!r}")
    if protocol == "takes" and folds:
        raise ParameterError("--folds selects leave-one-subject-out folds; --protocol takes has a single split")


def _write_run_config(out: Path, cfg_doc: dict, resume: bool) -> None:
    """``out/config.json``; MicroexpError when ``out`` holds a run of another configuration, or results
    without ``resume``."""
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old.get("train") != cfg_doc["train"]:
            raise MicroexpError(f"{out} holds a run with another configuration; choose a new --out")
        if not resume and any(out.glob("fold_*/metrics.json")):
            raise MicroexpError(f"{out} already holds results; pass --resume to continue it or choose a new --out")
    cfg_path.write_text(json.dumps(cfg_doc, indent=1) + "\n")


def _assert_split(protocol: str, samples, train_idx, test_idx) -> None:
    if protocol == "loso":
        assert not ({samples[i].subject for i in train_idx} & {samples[i].subject for i in test_idx})
    else:  # the same people, never the same performance
        assert not ({samples[i].clip_id for i in train_idx} & {samples[i].clip_id for i in test_idx})


def _test_fold(model, history, bank, samples, subject, train_idx, test_idx, cfg: TrainConfig, device, t0) -> dict:
    """The fold's metrics.json: scores on its test clips, what it trained on, its history and predictions."""
    scores = predict(model, bank.batch(test_idx), cfg.batch_size, device)
    y = np.array([samples[i].label for i in test_idx])
    m = _fold_metrics(scores, y)
    m.update(
        {
            "subject": subject,
            "train_clips": len(train_idx),
            "test_clips": len(test_idx),
            "train_subjects": sorted({samples[i].subject for i in train_idx}),
            "seconds": round(time.monotonic() - t0, 1),
            "history": history,
            "predictions": [
                {
                    "clip": samples[i].clip_id,
                    "array": samples[i].array,
                    "true": AU_LABELS[samples[i].label],
                    "top3": [AU_LABELS[j] for j in np.argsort(-scores[k])[:3]],
                    "scores": [round(float(v), 4) for v in scores[k]],
                }
                for k, i in enumerate(test_idx)
            ],
        }
    )
    return m


def _save_fold(folder: Path, model, m: dict, cfg: TrainConfig, ds, data) -> None:
    """The fold's checkpoint and metrics.json; its resume state goes."""
    from microexp.models import save_checkpoint  # torch

    save_checkpoint(
        folder / "checkpoint.pt",
        model,
        extra={
            "train": dataclasses.asdict(cfg),
            "fold": m["subject"],
            "input": _input_description(cfg, ds),
            "test_accuracy": m["accuracy"],
            "test_top3_accuracy": m["top3_accuracy"],
            "train_subjects": m["train_subjects"],
            "dataset": str(Path(data).resolve()),
        },
    )
    metrics_path = folder / "metrics.json"
    tmp = metrics_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(m) + "\n")
    os.replace(tmp, metrics_path)
    (folder / "last.pt").unlink(missing_ok=True)


def _train_final(cfg: TrainConfig, bank, samples, ds, data, out: Path, device, d, resume, progress, summary) -> None:
    """``--final``: one model on every clip (``out/final/checkpoint.pt``), its path in the run's metrics.json."""
    from microexp.models import save_checkpoint  # torch

    folder = out / "final"
    folder.mkdir(parents=True, exist_ok=True)
    if not (resume and (folder / "checkpoint.pt").exists()):
        every = list(range(len(samples)))
        model, history = train_fold(
            cfg, bank, samples, every, folder, device, d, resume, progress, fold_key=0, label="final (all subjects)"
        )
        if d.main:
            loso = {k: summary[k] for k in ("accuracy", "top3_accuracy", "macro_f1")} if summary else {}
            save_checkpoint(
                folder / "checkpoint.pt",
                model,
                extra={
                    "train": dataclasses.asdict(cfg),
                    "fold": "all",
                    "input": _input_description(cfg, ds),
                    "train_subjects": sorted({s.subject for s in samples}),
                    "loso": loso,
                    "history": history,
                    "dataset": str(Path(data).resolve()),
                },
            )
            (folder / "last.pt").unlink(missing_ok=True)
    if d.main and summary is not None:
        summary["final_checkpoint"] = str(folder / "checkpoint.pt")
        (out / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")


def run_training(
    data,
    out,
    cfg: TrainConfig,
    folds: Optional[Sequence[str]] = None,
    device: str = "auto",
    resume: bool = False,
    final: bool = False,
    progress: bool = True,
    threads: Optional[int] = None,
    protocol: str = "loso",
) -> dict:
    """Leave-one-subject-out training of ``cfg`` on the dataset ``data`` (``protocol="takes"``: the one split of
    :func:`take_split` instead); writes ``out`` and returns the summary."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    device = resolve_device(device)
    d = init_distributed(device)
    if d.world > 1 and device.startswith("cuda"):
        device = f"cuda:{d.local_rank}"
    torch.use_deterministic_algorithms(True, warn_only=True)
    out = Path(out)
    ds = ClipDataset(data)
    samples = samples_for(ds, cfg)
    _check_protocol(protocol, folds)
    fold_list = take_split(samples) if protocol == "takes" else loso_folds(samples, folds)
    cfg_doc = {
        "train": dataclasses.asdict(cfg),
        "data": str(Path(data).resolve()),
        "device": device,
        "protocol": protocol,
        "world_size": d.world,
        "folds": [f[0] for f in fold_list],
        "final": final,
    }
    if d.main:
        _write_run_config(out, cfg_doc, resume)
    _barrier(d)
    t_run = time.monotonic()
    if d.main and progress:
        print(
            f"train: {cfg.model} on {cfg.modality} ({cfg.sensor}), config {cfg.config}: {cfg.epochs} epochs, "
            f"batch {cfg.batch_size}, lr {cfg.lr:g}, {cfg.slices} slices; {len(samples)} clips of "
            f"{len({s.subject for s in samples})} subjects; {len(fold_list)} folds; device {device}"
            + (f" x {d.world}" if d.world > 1 else ""),
            file=sys.stderr,
            flush=True,
        )
    bank = ClipBank(ds, samples, cfg.slices, cfg.jitter)
    fold_results = []
    all_subjects = sorted({s.subject for s in samples})
    for subject, train_idx, test_idx in fold_list:
        folder = out / f"fold_{subject}"
        folder.mkdir(parents=True, exist_ok=True)
        metrics_path = folder / "metrics.json"
        if resume and metrics_path.exists():
            fold_results.append(json.loads(metrics_path.read_text()))
            if d.main and progress:
                print(f"fold {subject}: done earlier (accuracy {fold_results[-1]['accuracy']:.3f})", file=sys.stderr)
            continue
        _assert_split(protocol, samples, train_idx, test_idx)
        t0 = time.monotonic()
        model, history = train_fold(
            cfg,
            bank,
            samples,
            train_idx,
            folder,
            device,
            d,
            resume,
            progress,
            fold_key=all_subjects.index(subject) + 1 if subject in all_subjects else 1000,
            label=f"fold {subject}",
        )
        if d.main:
            m = _test_fold(model, history, bank, samples, subject, train_idx, test_idx, cfg, device, t0)
            _save_fold(folder, model, m, cfg, ds, data)
            fold_results.append(m)
            if progress:
                print(
                    f"fold {subject}: accuracy {m['accuracy']:.3f}, top-3 {m['top3_accuracy']:.3f} "
                    f"({len(test_idx)} test clips, {m['seconds']:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
        _barrier(d)
    summary = None
    if d.main:
        # wall time of the whole run: folds finished by an earlier (resumed) process count with their own time
        summary = write_training_report(
            out,
            cfg,
            fold_results,
            seconds=max(time.monotonic() - t_run, sum(float(f.get("seconds") or 0.0) for f in fold_results)),
        )
    if final:
        _train_final(cfg, bank, samples, ds, data, out, device, d, resume, progress, summary)
    _barrier(d)
    if d.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return summary or {}


# ---------------------------------------------------------------------------------------------- CLI


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder (microexp dataset / synth-dataset)")
    parser.add_argument("--model", choices=MODELS, default="snn", help="the SNN of §4.3 or the 3D-CNN baseline")
    parser.add_argument("--modality", choices=MODALITIES, default="events", help="event frames or webcam RGB")
    parser.add_argument("--sensor", default="davis346", help="event sensor(s) (comma-separated: davis346,evk4)")
    parser.add_argument(
        "--config", choices=("paper", "cpu"), default="cpu", help="paper's settings or the reduced CPU ones"
    )
    parser.add_argument("--folds", default="all", help="'all', or test subjects / fold numbers, e.g. S03 or 0,1")
    parser.add_argument(
        "--protocol",
        choices=("loso", "takes"),
        default="loso",
        help="loso: leave-one-subject-out folds (the paper's); takes: one split that trains on each "
        "subject's first performance of every AU and tests on the later takes (same people, "
        "new performances: the ceiling of leave-one-subject-out)",
    )
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--epochs", type=int, default=None, help="override the configuration's epochs")
    parser.add_argument("--slices", type=int, default=None, help="override the window length (33 ms slices)")
    parser.add_argument("--lr", type=float, default=None, help="override the learning rate")
    parser.add_argument("--batch-size", type=int, default=None, help="override the batch size")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--resume", action="store_true", help="continue a run: finished folds are kept")
    parser.add_argument("--final", action="store_true", help="also train on every subject (the model to deploy)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args) -> int:
    cfg = make_config(
        args.model,
        args.modality,
        args.config,
        args.sensor,
        epochs=args.epochs,
        slices=args.slices,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    folds = None if args.folds.strip().lower() == "all" else [f.strip() for f in args.folds.split(",") if f.strip()]
    summary = run_training(
        args.data,
        args.out,
        cfg,
        folds=folds,
        device=args.device,
        resume=args.resume,
        final=args.final,
        progress=not args.quiet,
        threads=args.threads,
        protocol=args.protocol,
    )
    if summary:
        brief = {k: summary[k] for k in (*RUN_FIELDS, "folds", *LOSO_FIELDS[:5], "seconds") if k in summary}
        brief["out"] = str(args.out)
        print(json.dumps(brief), flush=True)
    return 0
