"""`microexp reconstruct train|eval`: grayscale face frames from event frames with the cVAE of §4.4 (Table 6, Fig. 5).

Pairs: for every 33 ms slice of a clip, the condition is the slice's Eq. (1) face crop of one event sensor
(DAVIS346 or EVK4, 2 x 64 x 64, divided by ``cond_scale``, the 99.5th percentile of the training clips'
positive values, stored in the checkpoint) and the target the webcam's grayscale face crop of the same slice
(1 x 64 x 64, / 255). Training minimises the negative ELBO of :func:`microexp.models.cvae_loss` (summed
squared error + KL). Evaluation reconstructs from the events alone: ``model.sample(c)``, i.e. z at the
prior mean, so the target never reaches the model at test time.

Split: the paper does not say how its frames were split. Here whole clips are held out: the clips of AUs
whose class index is 2 mod 5 (AU5, AU17, AU45, AU61 — upper lid, chin, blink, gaze) of every subject form
the test set, the rest train. Subjects are seen in training (identity cannot be recovered from events), AU
performances of the test clips are not. ``--split subject`` holds out the last subject instead.

Configurations: ``paper`` (Adam 1e-3, batch 16, 100 epochs, every slice of every training clip per epoch);
``cpu`` (the same, but 20 epochs of 8 random slices per clip, because an Adam step of the 136M-parameter
decoder is slow on a CPU). The test set always uses every slice of the test clips.

Outputs (``--out RUN``): ``checkpoint.pt`` (cVAE + cond_scale + split), ``metrics.json`` (MSE, RMSE, MAE,
PSNR, SSIM, NCC: means over test frames, see :mod:`microexp.learn.metrics`), ``results.md`` (Table 6),
``fig5.png`` (event frame | reconstruction | ground truth) and ``curves.png``. ``eval`` with several
checkpoints writes one Table 6 with a column per sensor.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from microexp.errors import MicroexpError, ParameterError

TEST_MOD, TEST_REM = 5, 2


@dataclass
class ReconConfig:
    sensor: str = "davis346"
    config: str = "cpu"
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    slices_per_clip: int = 8  # 0 = every slice
    split: str = "clip"
    seed: int = 0
    beta: float = 1.0


def make_recon_config(sensor: str, config: str = "cpu", **overrides) -> ReconConfig:
    if config == "paper":
        base = dict(epochs=100, batch_size=16, lr=1e-3, slices_per_clip=0)
    elif config == "cpu":
        base = dict(epochs=20, batch_size=16, lr=1e-3, slices_per_clip=8)
    else:
        raise ParameterError(f"--config must be 'paper' or 'cpu', got {config!r}")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return ReconConfig(sensor=sensor, config=config, **base)


def split_clips(clips: Sequence[dict], split: str = "clip") -> tuple[list[dict], list[dict]]:
    """(train, test) clips; see the module docstring."""
    if split == "clip":
        test = [c for c in clips if c["label"] % TEST_MOD == TEST_REM]
    elif split == "subject":
        last = sorted({c["subject"] for c in clips})[-1]
        test = [c for c in clips if c["subject"] == last]
    else:
        raise ParameterError(f"--split must be 'clip' or 'subject', got {split!r}")
    ids = {c["id"] for c in test}
    return [c for c in clips if c["id"] not in ids], test


class PairBank:
    """Event crops and gray targets of a set of clips, in memory (float32 / uint8)."""

    def __init__(self, ds, clips: Sequence[dict], sensor: str):
        self.clips = list(clips)
        self.cond, self.target = [], []
        for c in self.clips:
            ev = np.asarray(ds.array(c, sensor), dtype=np.float32)
            gt = np.asarray(ds.array(c, "webcam_gray"))
            n = min(len(ev), len(gt))
            self.cond.append(ev[:n])
            self.target.append(gt[:n])

    def cond_scale(self) -> float:
        vals = np.concatenate([c[c > 0].ravel() for c in self.cond]) if self.cond else np.zeros(0)
        return float(np.percentile(vals, 99.5)) if len(vals) else 1.0

    def all_pairs(self) -> list[tuple[int, int]]:
        return [(i, k) for i, c in enumerate(self.cond) for k in range(len(c))]

    def random_pairs(self, rng: np.random.Generator, per_clip: int) -> list[tuple[int, int]]:
        out = []
        for i, c in enumerate(self.cond):
            ks = rng.choice(len(c), size=min(per_clip, len(c)), replace=False)
            out.extend((i, int(k)) for k in ks)
        return out

    def batch(self, pairs: Sequence[tuple[int, int]], scale: float) -> tuple[np.ndarray, np.ndarray]:
        c = np.stack([self.cond[i][k] for i, k in pairs]) / np.float32(scale)
        x = np.stack([self.target[i][k] for i, k in pairs]).astype(np.float32)[:, None] / np.float32(255.0)
        return c.astype(np.float32), x


def _dataset_clips(ds, sensor: str) -> list[dict]:
    clips = ds.select(sensor=sensor, arrays=("webcam_gray",))
    if not clips:
        raise MicroexpError(f"the dataset has no clips with {sensor} events and webcam targets")
    return clips


def reconstruct_all(model, bank: PairBank, scale: float, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(reconstructions, targets) float (N, S, S) of every pair of ``bank``, from the events alone."""
    import torch

    pairs = bank.all_pairs()
    recs, gts = [], []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(pairs), batch_size):
            c, x = bank.batch(pairs[i : i + batch_size], scale)
            recs.append(model.sample(torch.from_numpy(c))[:, 0].numpy())
            gts.append(x[:, 0])
    return np.concatenate(recs), np.concatenate(gts)


def train_reconstruction(
    data, out, cfg: ReconConfig, progress: bool = True, threads: Optional[int] = None, resume: bool = False
) -> dict:
    """Train the cVAE on ``cfg.sensor``'s clips, evaluate it and write the run folder."""
    import torch
    from tqdm import tqdm

    from microexp.learn.dataset import ClipDataset
    from microexp.models import ConditionalVAE, CVAEConfig, cvae_loss, save_checkpoint

    if threads:
        torch.set_num_threads(int(threads))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = ClipDataset(data)
    train_clips, test_clips = split_clips(_dataset_clips(ds, cfg.sensor), cfg.split)
    train_bank = PairBank(ds, train_clips, cfg.sensor)
    scale = train_bank.cond_scale()
    torch.manual_seed(cfg.seed)
    model = ConditionalVAE(CVAEConfig())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history, start = [], 0
    last = out / "last.pt"
    if resume and last.exists():
        st = torch.load(last, weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        torch.set_rng_state(st["rng"])
        history, start = list(st["history"]), int(st["epoch"])
    if progress:
        print(
            f"reconstruct: cVAE on {cfg.sensor} ({len(train_clips)} train / {len(test_clips)} test clips, split "
            f"{cfg.split}), config {cfg.config}: {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr:g}, "
            f"cond_scale {scale:.3f}",
            file=sys.stderr,
            flush=True,
        )
    t_run = time.monotonic()
    bar = tqdm(
        range(start, cfg.epochs),
        desc=f"cvae {cfg.sensor}",
        unit="ep",
        initial=start,
        total=cfg.epochs,
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    for epoch in bar:
        t0 = time.monotonic()
        rng = np.random.default_rng([cfg.seed, epoch])
        pairs = (
            train_bank.all_pairs() if cfg.slices_per_clip <= 0 else train_bank.random_pairs(rng, cfg.slices_per_clip)
        )
        order = rng.permutation(len(pairs))
        model.train()
        tot, rec_tot, kl_tot, nb = 0.0, 0.0, 0.0, 0
        for b in range(math.ceil(len(order) / cfg.batch_size)):
            sel = [pairs[j] for j in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            c, x = train_bank.batch(sel, scale)
            ct, xt = torch.from_numpy(c), torch.from_numpy(x)
            x_hat, mu, logvar = model(xt, ct)
            loss, rec, kl = cvae_loss(x_hat, xt, mu, logvar, beta=cfg.beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot, rec_tot, kl_tot, nb = tot + float(loss), rec_tot + float(rec), kl_tot + float(kl), nb + 1
        history.append(
            {
                "epoch": epoch + 1,
                "loss": tot / nb,
                "recon": rec_tot / nb,
                "kl": kl_tot / nb,
                "pixel_mse": rec_tot / nb / (64 * 64),
                "seconds": round(time.monotonic() - t0, 1),
            }
        )
        bar.set_postfix(loss=f"{tot / nb:.1f}", mse=f"{history[-1]['pixel_mse']:.4f}")
        tmp = last.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "rng": torch.get_rng_state(),
                "epoch": epoch + 1,
                "history": history,
            },
            tmp,
        )
        os.replace(tmp, last)
    bar.close()
    ckpt = save_checkpoint(
        out / "checkpoint.pt",
        model,
        extra={
            "task": "reconstruction",
            "train": asdict(cfg),
            "cond_scale": scale,
            "sensor": cfg.sensor,
            "split": cfg.split,
            "test_clips": [c["id"] for c in test_clips],
            "history": history,
            "dataset": str(Path(data).resolve()),
            "input": "Eq. (1) face crop / cond_scale; target webcam gray / 255",
        },
    )
    last.unlink(missing_ok=True)
    train_seconds = time.monotonic() - t_run
    result = evaluate_reconstruction(data, [ckpt], out, progress=progress)
    result[cfg.sensor]["train_seconds"] = round(train_seconds, 1)
    _plot_history(history, out / "curves.png")
    (out / "metrics.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def evaluate_reconstruction(data, checkpoints: Sequence, out, progress: bool = True, grid_rows: int = 6) -> dict:
    """Evaluate cVAE checkpoints on their test clips; write metrics.json, results.md (Table 6) and a Fig. 5
    grid per checkpoint (``fig5_<sensor>.png``). Returns ``{sensor: metrics}``."""
    from microexp.learn.dataset import ClipDataset
    from microexp.learn.metrics import image_metrics
    from microexp.learn.report import plot_reconstructions, table6
    from microexp.models import count_parameters, load_checkpoint

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = ClipDataset(data)
    results: dict = {}
    for path in checkpoints:
        model, meta = load_checkpoint(path, expected="cvae")
        extra = meta["extra"]
        sensor, scale = extra["sensor"], float(extra["cond_scale"])
        by_id = {c["id"]: c for c in ds.clips}
        test = [by_id[i] for i in extra.get("test_clips", []) if i in by_id]
        if not test:
            _, test = split_clips(_dataset_clips(ds, sensor), extra.get("split", "clip"))
        t0 = time.monotonic()
        bank = PairBank(ds, test, sensor)
        rec, gt = reconstruct_all(model, bank, scale)
        m = image_metrics(rec, gt)
        m.update(
            {
                "parameters": count_parameters(model),
                "sensor": sensor,
                "test_clips": len(test),
                "checkpoint": str(path),
                "eval_seconds": round(time.monotonic() - t0, 1),
                "cond_scale": scale,
                "split": extra.get("split", "clip"),
            }
        )
        results[sensor] = m
        rows, starts = [], np.cumsum([0] + [len(c) for c in bank.cond])
        for j in np.linspace(0, len(test) - 1, min(grid_rows, len(test))).astype(int):
            clip = bank.clips[j]
            k = min(int(clip["sensors"][sensor]["activity_peak"]), len(bank.cond[j]) - 1)
            rows.append(
                (bank.cond[j][k] / scale, rec[starts[j] + k], gt[starts[j] + k], f"{clip['subject']} {clip['au']} #{k}")
            )
        name = "fig5.png" if len(checkpoints) == 1 else f"fig5_{sensor}.png"
        plot_reconstructions(rows, out / name, f"cVAE, {sensor} events -> webcam gray (test clips)")
        if progress:
            print(
                f"reconstruct: {sensor}: "
                + ", ".join(f"{k} {m[k]:.4f}" for k in ("mse", "rmse", "mae", "psnr", "ssim", "ncc")),
                file=sys.stderr,
                flush=True,
            )
    (out / "metrics.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "results.md").write_text(
        "# Event-conditioned frame reconstruction (cVAE)\n\n"
        "Means over the test frames (held-out clips; reconstruction from the events "
        "alone, z = 0).\n\n"
        + table6(results)
        + "\n"
        + "".join(f"![{s}]({'fig5.png' if len(results) == 1 else f'fig5_{s}.png'})\n\n" for s in results)
    )
    return results


def _plot_history(history: list, path) -> None:
    from microexp.learn.report import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([h["epoch"] for h in history], [h["pixel_mse"] for h in history])
    ax.set_xlabel("epoch")
    ax.set_ylabel("training pixel MSE (z from the encoder)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(parser) -> None:
    parser.add_argument(
        "action", choices=("train", "eval"), help="train a cVAE (and evaluate it), or evaluate checkpoints"
    )
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument(
        "--sensor", choices=("davis346", "evk4"), default="davis346", help="event sensor of the condition"
    )
    parser.add_argument(
        "--config", choices=("paper", "cpu"), default="cpu", help="paper's settings or the reduced CPU ones"
    )
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument(
        "--checkpoint", action="append", default=[], help="eval: cVAE checkpoint(s); one Table 6 column each"
    )
    parser.add_argument(
        "--split", choices=("clip", "subject"), default="clip", help="held-out clips or held-out subject"
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the configuration's epochs")
    parser.add_argument("--seed", type=int, default=0, help="seed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted training run")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args) -> int:
    if args.action == "train":
        cfg = make_recon_config(args.sensor, args.config, epochs=args.epochs, split=args.split, seed=args.seed)
        result = train_reconstruction(
            args.data, args.out, cfg, progress=not args.quiet, threads=args.threads, resume=args.resume
        )
    else:
        if not args.checkpoint:
            raise ParameterError("reconstruct eval needs --checkpoint (one per sensor)")
        result = evaluate_reconstruction(args.data, args.checkpoint, args.out, progress=not args.quiet)
    print(json.dumps({s: {k: v for k, v in m.items() if k != "per_frame"} for s, m in result.items()}), flush=True)
    return 0
