"""Offline learning: dataset format, leave-one-subject-out folds, metrics against torchmetrics / scikit-image,
and a tiny train -> checkpoint -> load -> predict run on a dataset written here (no bags, no DDS)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers.datasets import write_tiny_dataset

from microexp.aus import AU_LABELS, NUM_CLASSES, au_index
from microexp.errors import MicroexpError, ParameterError
from microexp.events.activity import movement_peak
from microexp.learn import metrics as M
from microexp.learn.build import activity_box, synthetic_evk4_map
from microexp.learn.clips import MIRROR_PERMUTATION, _shift, _window
from microexp.learn.config import make_config
from microexp.learn.dataset import ClipDataset, save_index
from microexp.learn.folds import Sample, loso_folds, samples_for
from microexp.learn.train import predict, run_training

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------- folds


@pytest.mark.parametrize("seed", range(5))
def test_no_subject_in_train_and_test_of_any_fold(seed):
    rng = np.random.default_rng(seed)
    subjects = [f"S{i:02d}" for i in range(1, rng.integers(2, 9))]
    samples = [
        Sample(f"c{i}", str(rng.choice(subjects)), int(rng.integers(0, 21)), "davis346", 0, 10) for i in range(60)
    ]
    present = sorted({s.subject for s in samples})
    folds = loso_folds(samples)
    assert [f[0] for f in folds] == present
    for subject, train, test in folds:
        assert {samples[i].subject for i in test} == {subject}
        assert subject not in {samples[i].subject for i in train}
        assert sorted(train + test) == list(range(len(samples)))


def test_fold_selection_by_name_or_number():
    samples = [
        Sample("a", "S01", 0, "davis346", 0, 5),
        Sample("b", "S02", 1, "davis346", 0, 5),
        Sample("c", "S03", 2, "davis346", 0, 5),
    ]
    assert [f[0] for f in loso_folds(samples, ["S03", "0"])] == ["S03", "S01"]
    with pytest.raises(Exception, match="neither a subject"):
        loso_folds(samples, ["S09"])
    with pytest.raises(Exception, match="at least 2 subjects"):
        loso_folds(samples[:1])


# ---------------------------------------------------------------------------------------------- metrics


def test_classification_metrics_equal_torchmetrics():
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_confusion_matrix,
        multiclass_f1_score,
    )

    g = torch.Generator().manual_seed(0)
    scores = torch.rand(300, NUM_CLASSES, generator=g)
    target = torch.randint(0, NUM_CLASSES, (300,), generator=g)
    target[:40] = scores[:40].argmax(1)  # some hits
    s, t = scores.numpy(), target.numpy()
    assert M.accuracy(s, t) == pytest.approx(float(multiclass_accuracy(scores, target, NUM_CLASSES, average="micro")))
    for k in (1, 3, 5):
        ref = float(multiclass_accuracy(scores, target, NUM_CLASSES, average="micro", top_k=k))
        assert M.top_k_accuracy(s, t, k) == pytest.approx(ref)
    f1 = multiclass_f1_score(scores, target, NUM_CLASSES, average=None).numpy()
    np.testing.assert_allclose(M.per_class_f1(s, t, NUM_CLASSES), f1, rtol=1e-6, atol=1e-7)
    cm = multiclass_confusion_matrix(scores, target, NUM_CLASSES).numpy()
    np.testing.assert_array_equal(M.confusion_matrix(s, t, NUM_CLASSES), cm)


def test_f1_of_absent_class_is_zero_like_torchmetrics():
    from torchmetrics.functional.classification import multiclass_f1_score

    pred, target = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    ref = multiclass_f1_score(torch.tensor(pred), torch.tensor(target), 3, average=None).numpy()
    np.testing.assert_allclose(M.per_class_f1(pred, target, 3), ref, rtol=1e-6)
    assert M.per_class_f1(pred, target, 3)[2] == 0.0


def test_top_k_accuracy_hand_made():
    scores = np.array(
        [
            [0.9, 0.05, 0.03, 0.02],  # target 0: top-1 hit
            [0.1, 0.2, 0.3, 0.4],  # target 1: rank 3 -> top-3 hit, top-2 miss
            [0.4, 0.3, 0.2, 0.1],  # target 3: last -> miss for k < 4
            [0.25, 0.35, 0.3, 0.1],
        ]
    )  # target 2: rank 2
    target = np.array([0, 1, 3, 2])
    assert M.top_k_accuracy(scores, target, 1) == 0.25
    assert M.top_k_accuracy(scores, target, 2) == 0.5
    assert M.top_k_accuracy(scores, target, 3) == 0.75
    assert M.top_k_accuracy(scores, target, 4) == 1.0
    assert M.top_k_accuracy(scores, target, 10) == 1.0  # k beyond the classes: everything is in
    assert M.accuracy(scores, target) == 0.25
    assert M.accuracy(np.array([1, 1, 3, 0]), target) == 0.5


def test_image_metrics_equal_torchmetrics_and_skimage():
    from skimage.metrics import structural_similarity
    from torchmetrics.functional import mean_absolute_error, mean_squared_error
    from torchmetrics.functional.image import peak_signal_noise_ratio

    rng = np.random.default_rng(1)
    gt = rng.random((6, 64, 64))
    rec = np.clip(gt + 0.15 * rng.standard_normal(gt.shape), 0, 1)
    rec[5] = rng.random((64, 64))  # one unrelated frame
    per = [(torch.tensor(rec[i]), torch.tensor(gt[i])) for i in range(len(gt))]
    np.testing.assert_allclose(M.mse(rec, gt), [float(mean_squared_error(a, b)) for a, b in per], rtol=1e-12)
    np.testing.assert_allclose(
        M.rmse(rec, gt), [float(mean_squared_error(a, b, squared=False)) for a, b in per], rtol=1e-12
    )
    np.testing.assert_allclose(M.mae(rec, gt), [float(mean_absolute_error(a, b)) for a, b in per], rtol=1e-12)
    ref_psnr = peak_signal_noise_ratio(
        torch.tensor(rec)[:, None], torch.tensor(gt)[:, None], data_range=1.0, dim=(1, 2, 3), reduction="none"
    )
    np.testing.assert_allclose(M.psnr(rec, gt), ref_psnr.numpy(), rtol=1e-6)  # torchmetrics: float32 data_range
    ref_ssim = [structural_similarity(gt[i], rec[i], data_range=1.0) for i in range(len(gt))]
    np.testing.assert_allclose(M.ssim(rec, gt), ref_ssim, rtol=1e-9, atol=1e-12)
    ref_ncc = [np.corrcoef(rec[i].ravel(), gt[i].ravel())[0, 1] for i in range(len(gt))]
    np.testing.assert_allclose(M.ncc(rec, gt), ref_ncc, rtol=1e-9)
    out = M.image_metrics(rec[:, None], gt[:, None])
    assert out["frames"] == 6 and out["ssim"] == pytest.approx(np.mean(ref_ssim))
    assert M.ncc(np.ones((1, 8, 8)), gt[:1, :8, :8])[0] == 0.0  # constant frame
    assert M.psnr(gt[:1], gt[:1])[0] == np.inf


# ---------------------------------------------------------------------------------------------- data helpers


def test_movement_peak_and_activity_box():
    a = np.full(40, 100.0)
    a[25:30] += [50, 200, 400, 200, 50]
    a[3] += 150  # a single noisy slice loses against the smoothed movement
    assert movement_peak(a) == 27
    assert movement_peak([]) == 0
    from microexp.events.dtype import make_events

    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.integers(0, 200, 300), rng.integers(50, 90, 4000)])
    ys = np.concatenate([rng.integers(0, 100, 300), rng.integers(20, 40, 4000)])
    ev = make_events(xs, ys, np.arange(len(xs)), np.ones(len(xs), int))
    box = activity_box(ev, 200, 100)
    assert 48 <= box[0] <= 52 and 18 <= box[1] <= 22 and 88 <= box[2] <= 91 and 38 <= box[3] <= 41


def test_builder_event_crops_are_the_cropped_eq1_frames_and_box_activity():
    """The builder crops each slice from its events (the live node's crop_events); that must equal cropping the
    slice's Eq. (1) frame, and the per-slice activity must be the frame's count inside the clipped box."""
    from microexp.events.dtype import make_events
    from microexp.events.frames import event_frames
    from microexp.learn.build import _event_crops
    from microexp.vision.crop import crop_resize

    rng = np.random.default_rng(5)
    n = 40_000
    ev = make_events(
        rng.integers(0, 350, n), rng.integers(0, 262, n), np.sort(rng.integers(900, 400_000, n)), rng.integers(0, 3, n)
    )
    box = (250.4, -20.2, 420.0, 150.0)  # partly outside the 346 x 260 sensor
    crops, activity = _event_crops(ev, 346, 260, 1_000, 12, 33_000, box, 64)
    frames = event_frames(ev, 346, 260, 33_000, t_start=1_000, n_slices=12)
    for k in range(12):
        np.testing.assert_allclose(crops[k], crop_resize(frames[k], box, 64), rtol=1e-5, atol=1e-6)
        assert activity[k] == int(frames[k][:, 0:150, 250:346].sum()) > 0


@pytest.mark.parametrize("seed", range(8))
def test_builder_slices_are_the_events_of_each_window(seed):
    """The builder cuts a clip's slices with the live node's EventSlicer: slice k holds exactly the events with
    t0 + k*slice <= t < t0 + (k+1)*slice, in order (events before t0 or after the last slice left out, empty
    slices empty), whatever the gaps, ties on the edges and the number of slices asked for."""
    from microexp.events.dtype import make_events
    from microexp.learn.build import slice_windows

    rng = np.random.default_rng(seed)
    m = int(rng.choice([0, 1, 7, 5000]))
    slice_us = int(rng.choice([1, 10, 33_000]))
    span = int(rng.integers(2, 40)) * slice_us
    t = np.sort(np.concatenate([rng.integers(-span // 3, span, m), np.arange(0, span, slice_us)[: m // 2]]))
    t = np.where(t > span // 2, t + 4 * slice_us, t)  # a gap of empty slices
    ev = make_events(rng.integers(0, 50, len(t)), rng.integers(0, 40, len(t)), t, rng.integers(0, 2, len(t)))
    t0 = int(rng.integers(-span // 4, span // 2))
    n = int(rng.integers(1, 2 * span // slice_us + 8))
    windows = slice_windows(ev, t0, n, slice_us)
    assert len(windows) == n
    for k, part in enumerate(windows):
        inside = (ev["t"] >= t0 + k * slice_us) & (ev["t"] < t0 + (k + 1) * slice_us)
        assert part.tobytes() == ev[inside].tobytes(), k


def _mount_tmpfs(folder, size: str) -> bool:
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return res.returncode == 0


_FULL_DISK_RUN = """
import sys
from microexp.learn import build, dataset
build._labels = lambda src, data: {"subject": "S01", "au": "AU1", "label": 0, "trial": 1, "lux": None}
if sys.argv[1] == "simulate":  # numpy's short write on a full disk: part of the file, an OSError without errno
    def short_write(fh, array):
        fh.write(b"\\0" * 4064)
        fh.flush()
        raise OSError(f"{array.nbytes} requested and 4064 written")
    dataset._write_npy = short_write
    dataset._free_bytes = lambda folder: 4064
from microexp.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("how", ["tmpfs", "simulate"])
def test_dataset_on_a_full_disk_is_one_line_naming_the_file_and_leaves_no_tmp(how, tmp_path, testdata):
    """`microexp dataset` whose clip does not fit on the disk (a real 1 MB tmpfs where one can be mounted, and
    numpy's short write simulated): exit 2, one line naming the array's file and 'disk full', no .npy.tmp."""
    from helpers.cli import one_line_error

    bag = testdata("bags", "event_camera_py_test_events_1")
    out = tmp_path / "disk"
    out.mkdir()
    if how == "tmpfs" and not _mount_tmpfs(out, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        args = [bag, "--topic", "davis346=/event_camera/events", "--sensors", "davis346", "--no-webcam", "--quiet"]
        res = subprocess.run(
            [sys.executable, "-c", _FULL_DISK_RUN, how, "dataset", *map(str, args), "--out", str(out / "ds")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        target = out / "ds" / "clips" / "bags__event_camera_py_test_events_1" / "davis346.npy"
        line = one_line_error(res, f"microexp dataset: error: {target}: disk full (", " requested and ")
        leftovers = sorted(p.name for p in (out / "ds").rglob("*") if p.is_file())
    finally:
        if how == "tmpfs":
            subprocess.run(["umount", str(out)], check=True)
    assert line.endswith(" written)") and leftovers == []  # no .npy.tmp (and no index: no clip was built)


def test_synthetic_evk4_map_matches_the_rig_geometry():
    from microexp.synth.face import Subject
    from microexp.synth.render import DAVIS346_VIEW, EVK4_VIEW

    sx, sy, ox, oy = synthetic_evk4_map()
    subject = Subject.generate(0, 0)
    subject = type(subject)(**{**subject.__dict__, "offset_x": 0.0, "offset_y": 0.0})
    for u, v in ((-0.5, -0.3), (0.4, 0.8)):
        sd, cxd, cyd = DAVIS346_VIEW.transform(subject)
        se, cxe, cye = EVK4_VIEW.transform(subject)
        assert sx * (cxd + sd * u) + ox == pytest.approx(cxe + se * u)
        assert sy * (cyd + sd * v) + oy == pytest.approx(cye + se * v)


def test_slice_constant_is_the_event_core_one():
    from microexp.events.frames import DEFAULT_SLICE_US
    from microexp.learn.build import DEFAULT_SLICE_US as LEARN_SLICE

    assert LEARN_SLICE == DEFAULT_SLICE_US


def test_window_shift_and_mirror_permutation():
    a = np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((10, 2, 4, 4), np.float32)
    assert _window(a, 8, 4, pad_last=False)[:, 0, 0, 0].tolist() == [6, 7, 8, 9]  # clamped into the clip
    assert _window(a, -3, 4, pad_last=False)[:, 0, 0, 0].tolist() == [0, 1, 2, 3]
    short = _window(a[:2], 0, 4, pad_last=False)
    assert short.shape[0] == 4 and short[2:].sum() == 0
    assert _window(a[:2], 0, 4, pad_last=True)[3, 0, 0, 0] == 1
    img = np.zeros((1, 1, 4, 4), np.float32)
    img[..., 1, 1] = 1
    assert _shift(img, 1, 2)[0, 0, 2, 3] == 1 and _shift(img, 1, 2).sum() == 1
    perm = MIRROR_PERMUTATION
    assert AU_LABELS[perm[au_index("AU51")]] == "AU52" and AU_LABELS[perm[au_index("AU62")]] == "AU61"
    assert AU_LABELS[perm[au_index("AU12")]] == "AU12"
    assert sorted(perm.tolist()) == list(range(NUM_CLASSES))


# ---------------------------------------------------------------------------------------------- end to end


def test_dataset_format_is_memory_mapped(tmp_path):
    write_tiny_dataset(tmp_path)
    ds = ClipDataset(tmp_path)
    assert len(ds) == 6 and ds.subjects() == ["S01", "S02"]
    a = ds.array(ds.clips[0], "davis346")
    assert isinstance(a, np.memmap) and a.shape == (8, 2, 64, 64) and a.dtype == np.float32
    assert (tmp_path / "index.csv").read_text().count("\n") == 1 + 6 * 3
    assert len(ds.select(sensor="evk4")) == 0 and len(ds.select(subjects=["S02"])) == 3


def test_tiny_train_checkpoint_load_predict(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    cfg = make_config("snn", "events", "cpu", epochs=2, slices=4, seed=3)
    cfg.jitter = 1
    summary = run_training(data, tmp_path / "run", cfg, device="cpu", final=True, progress=False)
    assert summary["folds"] == 2 and 0.0 <= summary["accuracy"] <= 1.0
    assert summary["parameters"] == 4_312_470
    for name in ("metrics.json", "results.md", "confusion.png", "per_au_f1.png", "curves.png", "config.json"):
        assert (tmp_path / "run" / name).exists(), name
    fold = json.loads((tmp_path / "run" / "fold_S01" / "metrics.json").read_text())
    assert fold["train_subjects"] == ["S02"] and {p["clip"][:3] for p in fold["predictions"]} == {"S01"}

    from microexp.models import AUSpikingNet, load_checkpoint

    ckpt = tmp_path / "run" / "final" / "checkpoint.pt"
    model, meta = load_checkpoint(ckpt, expected="snn")
    assert isinstance(model, AUSpikingNet) and meta["extra"]["train"]["slices"] == 4
    ds = ClipDataset(data)
    windows = np.stack([np.asarray(ds.array(c, "davis346"))[2:6] for c in ds.clips])
    scores = predict(model, windows)
    assert scores.shape == (6, NUM_CLASSES) and np.all((scores >= 0) & (scores <= 1))
    again = predict(load_checkpoint(ckpt)[0], windows)
    np.testing.assert_array_equal(scores, again)  # deterministic in eval mode

    from microexp.learn.export import export_checkpoint

    half = export_checkpoint(ckpt, tmp_path / "half.pt", extra={"note": "test"})
    assert half.stat().st_size < 0.6 * ckpt.stat().st_size
    model16, meta16 = load_checkpoint(half, expected="snn")
    assert next(model16.parameters()).dtype == torch.float32 and meta16["extra"]["stored_dtype"] == "float16"
    np.testing.assert_allclose(predict(model16, windows), scores, atol=0.1)

    info = subprocess.run(
        [sys.executable, "-m", "microexp.cli", "info", str(half)], capture_output=True, text=True, timeout=120
    )
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    assert doc["architecture"] == "snn" and doc["parameters"] == 4_312_470

    # `microexp export`: the shipped model and its generated card quote this run's numbers
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "microexp.cli",
            "export",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "models" / "au_snn_default.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    exported = json.loads(res.stdout.strip().splitlines()[-1])
    assert exported["parameters"] == 4_312_470 and exported["dtype"] == "float16"
    card = (tmp_path / "models" / "MODEL_CARD.md").read_text()
    assert f"{100 * summary['accuracy']:.1f} %" in card and "4,312,470" in card and "synthetic" in card
    for f in summary["per_fold"]:
        assert f"| {f['subject']} | {100 * f['accuracy']:.1f} %" in card
    assert str(tmp_path) not in card  # no machine's folders in a shipped card
    # with an evaluation of `microexp evaluate`, the card quotes its live and offline figures
    evaluation = {
        "summary": {
            "mode": "dds@1",
            "sessions": 1,
            "segments": 21,
            "live_accuracy": 0.619,
            "offline_accuracy": 0.6667,
            "iou": 0.5,
            "au_events_in_rest": 0,
            "spotting": {"tp": 18, "fp": 0, "fn": 3, "precision": 1.0, "recall": 0.8571, "f1": 0.9231},
            "recognition": {"accuracy": 0.7222},
            "latency_apex_to_event_ms": {"p50_max": 503.3, "p99_max": 662.4},
        },
        "sessions": [{"session": str(tmp_path / "S09-seed1")}],
    }
    (tmp_path / "evaluate.json").write_text(json.dumps(evaluation))
    res = subprocess.run(
        [sys.executable, "-m", "microexp.cli", "export", str(tmp_path / "run"), "--out", str(tmp_path / "m2.pt")]
        + ["--card", str(tmp_path / "CARD2.md"), "--evaluation", str(tmp_path / "evaluate.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    card2 = (tmp_path / "CARD2.md").read_text()
    assert "| live (AU events) | 61.9 % |" in card2 and "| offline (dataset clips) | 66.7 % |" in card2
    assert "F1 92.3 % (18 of 21 movements)" in card2 and "S09-seed1" in card2 and str(tmp_path) not in card2
    bad = subprocess.run(
        [sys.executable, "-m", "microexp.cli", "export", str(tmp_path / "data"), "--out", str(tmp_path / "x.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "metrics.json" in bad.stderr and not (tmp_path / "x.pt").exists()


def test_takes_protocol_trains_on_first_performances_and_tests_on_later_ones(tmp_path):
    from microexp.learn.folds import samples_for, take_split

    data = write_tiny_dataset(tmp_path / "data")
    cfg = make_config("snn", "events", "cpu", epochs=1, slices=4)
    with pytest.raises(MicroexpError, match="two or more takes"):
        take_split(samples_for(ClipDataset(data), cfg))
    ds = ClipDataset(data)
    doc = ds.index
    for c in list(doc["clips"]):  # a second take of every AU (same arrays, trial 2), and a third of one
        for trial in (2, 3) if c["au"] == "AU26" else (2,):
            doc["clips"].append(dict(c, id=c["id"].replace("_t1", f"_t{trial}"), trial=trial))
    save_index(data, doc)
    samples = samples_for(ClipDataset(data), cfg)
    [(name, train, test)] = take_split(samples)
    assert name == "takes" and len(train) == 6 and len(test) == 8
    assert {samples[i].trial for i in train} == {1} and {samples[i].trial for i in test} == {2, 3}
    assert {samples[i].subject for i in train} == {samples[i].subject for i in test} == {"S01", "S02"}
    summary = run_training(data, tmp_path / "run", cfg, device="cpu", progress=False, protocol="takes")
    fold = json.loads((tmp_path / "run" / "fold_takes" / "metrics.json").read_text())
    assert summary["folds"] == 1 and fold["test_clips"] == 8 and fold["train_clips"] == 6
    assert {p["clip"][-2:] for p in fold["predictions"]} == {"t2", "t3"}
    with pytest.raises(ParameterError, match="single split"):
        run_training(data, tmp_path / "run2", cfg, folds=["S01"], device="cpu", progress=False, protocol="takes")


def test_training_resume_keeps_finished_folds(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    cfg = make_config("snn", "events", "cpu", epochs=1, slices=4)
    run_training(data, tmp_path / "run", cfg, folds=["S01"], device="cpu", progress=False)
    with pytest.raises(Exception, match="--resume"):
        run_training(data, tmp_path / "run", cfg, folds=["S01"], device="cpu", progress=False)
    first = json.loads((tmp_path / "run" / "fold_S01" / "metrics.json").read_text())
    summary = run_training(data, tmp_path / "run", cfg, device="cpu", resume=True, progress=False)
    assert summary["folds"] == 2
    assert json.loads((tmp_path / "run" / "fold_S01" / "metrics.json").read_text()) == first


def test_rgb_and_cnn3d_samples(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    ds = ClipDataset(data)
    cfg = make_config("cnn3d", "rgb", "cpu", epochs=1, slices=4)
    assert cfg.lr == 1e-4 and cfg.in_channels == 3
    samples = samples_for(ds, cfg)
    assert len(samples) == 6 and {s.array for s in samples} == {"webcam_rgb"}
    paper = make_config("snn", "events", "paper")
    assert (paper.epochs, paper.batch_size, paper.lr, paper.dropout, paper.slices) == (100, 8, 1e-3, 0.2, 75)


def test_unknown_model_name_is_an_error_naming_the_parameter_and_the_choices():
    from microexp.learn.config import TrainConfig

    for make in (lambda: make_config("resnet", "events"), lambda: TrainConfig(model="resnet")):
        with pytest.raises(ParameterError, match=r"--model must be one of snn, cnn3d, got 'resnet'"):
            make()
    res = subprocess.run(
        [sys.executable, "-m", "microexp.cli", "train", "--data", "x", "--out", "y", "--model", "resnet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "--model" in res.stderr and "snn" in res.stderr and "cnn3d" in res.stderr


@pytest.mark.slow
def test_synth_dataset_records_takes_through_the_real_path(tmp_path):
    """`microexp synth-dataset --takes 2`: two recording sessions of one subject (rig -> DDS -> recorder ->
    bags), trials 1 and 2 of the AU, built into clips labelled with the same subject; a second call records
    nothing again."""
    from microexp.learn.synth_dataset import make_synth_dataset

    out = tmp_path / "synth"
    summary = make_synth_dataset(out, subjects=1, evk4_subjects=0, aus="AU12", takes=2, progress=False)
    assert sorted(summary["sessions"]) == ["S01", "S01-take2"]
    assert summary["dataset"]["failed"] == [] and summary["incomplete_clips"] == []
    data = ClipDataset(out / "dataset")
    clips = sorted(data.clips, key=lambda c: c["trial"])
    assert [(c["subject"], c["au"], c["trial"]) for c in clips] == [("S01", "AU12", 1), ("S01", "AU12", 2)]
    a, b = (np.asarray(data.array(c, "davis346")) for c in clips)
    assert a.shape[1:] == (2, 64, 64) and a.sum() > 0 and b.sum() > 0
    n = min(len(a), len(b))
    assert not np.array_equal(a[:n], b[:n])  # another performance, not a copy
    again = make_synth_dataset(out, subjects=1, evk4_subjects=0, aus="AU12", takes=2, progress=False)
    assert all(s["status"].startswith("kept") for s in again["sessions"].values())
    assert again["dataset"]["built"] == 0 and again["dataset"]["clips"] == 2
    # the same sessions with the background-activity filter: recorded in the index, fewer events binned
    from microexp.learn.build import BuildOptions, build_dataset

    sessions = [out / "sessions" / "S01", out / "sessions" / "S01-take2"]
    build_dataset(sessions, tmp_path / "filtered", BuildOptions(noise_filter_us=5000), progress=False)
    filtered = ClipDataset(tmp_path / "filtered")
    assert filtered.index["noise_filter_us"] == 5000
    for c, raw in zip(sorted(filtered.clips, key=lambda c: c["trial"]), clips):
        info = c["sensors"]["davis346"]
        assert (
            0 < info["events_binned"] < 0.5 * info["events"] and info["events"] == raw["sensors"]["davis346"]["events"]
        )
        assert np.asarray(filtered.array(c, "davis346")).sum() < np.asarray(data.array(raw, "davis346")).sum()
    with pytest.raises(ParameterError, match="noise_filter_us"):
        build_dataset(sessions, tmp_path / "filtered", BuildOptions(noise_filter_us=1000), progress=False)
    # ... and with landmark-placed face boxes: recorded in the index, other boxes of about the same size
    build_dataset(sessions[:1], tmp_path / "aligned", BuildOptions(face_box="landmarks", webcam=False), progress=False)
    aligned = ClipDataset(tmp_path / "aligned")
    assert aligned.index["face_box"] == "landmarks" and data.index["face_box"] == "mtcnn"
    box_l, box_m = aligned.clips[0]["sensors"]["davis346"]["box"], clips[0]["sensors"]["davis346"]["box"]
    assert box_l != box_m and 0.8 < (box_l[2] - box_l[0]) / (box_m[2] - box_m[0]) < 1.25
    with pytest.raises(ParameterError, match="face_box"):
        build_dataset(sessions[:1], tmp_path / "aligned", BuildOptions(), progress=False)
