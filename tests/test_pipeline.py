"""microexp.infer without DDS: the crop (vision.crop), probabilities and horizon smoothing, the streaming
pipeline against the offline multi-step computation on the same windows, and loading the AU model (checkpoint
errors, the shipped default model). The models are random untrained SNNs (see tests/helpers/infer.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.events import DAVIS, blob_events
from helpers.infer import ROI, assert_same_ranking, offline, random_snn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microexp.aus import AU_LABELS
from microexp.errors import ParameterError
from microexp.infer import load_au_model
from microexp.infer.pipeline import StreamingAUPipeline, offline_probabilities
from microexp.infer.smoothing import HorizonSmoother, au_probabilities, top_k
from microexp.models import (
    AUSpikingNet,
    C3DNet,
    CheckpointArchitectureError,
    CheckpointError,
    CheckpointNotFoundError,
    CNN3DConfig,
    SNNConfig,
    save_checkpoint,
)
from microexp.vision.crop import crop_resize, parse_roi, pixel_box, square_box


def run_pipeline(pipeline, events, chunk):
    results = []
    for i in range(0, events.shape[0], chunk):
        results += pipeline.push(events[i : i + chunk])
    return results + pipeline.flush()


# --------------------------------------------------------------------------------------------- crop/resize
def test_crop_resize_area_averages_counts_and_pads_outside_the_sensor():
    frame = np.zeros((2, 8, 8), np.uint16)
    frame[1, 0:2, 0:2] = [[1, 2], [3, 6]]
    crop = crop_resize(frame, (0, 0, 8, 8), size=4)
    assert crop.shape == (2, 4, 4) and crop.dtype == np.float32
    assert crop[1, 0, 0] == pytest.approx(3.0)  # mean of the 2x2 block
    assert crop[0].sum() == 0
    # a box hanging over the top-left corner: the outside reads as zero counts, geometry kept
    padded = crop_resize(frame, (-2, -2, 6, 6), size=4)
    assert padded[1, 1, 1] == pytest.approx(3.0) and padded[1, 0].sum() == 0 and padded[1, :, 0].sum() == 0
    # exact size: copied unchanged; whole frame by default
    same = crop_resize(frame, None, size=8)
    assert np.array_equal(same, frame.astype(np.float32))


def test_event_driven_crop_equals_opencv_area_resampling():
    """Downscaling crops spread each non-zero pixel over the outputs it overlaps (numba); the result must be
    cv2.resize(INTER_AREA) of the zero-padded box, for random boxes, scales, dtypes and borders."""
    import cv2

    rng = np.random.default_rng(3)
    for trial in range(60):
        h, w = (260, 346) if trial % 2 else (720, 1280)
        dtype = (np.float32, np.uint16, np.int32)[trial % 3]
        frame = ((rng.random((2, h, w)) < rng.uniform(0.001, 0.5)) * rng.integers(1, 6, (2, h, w))).astype(dtype)
        side = int(rng.integers(64, 480))
        x0, y0 = int(rng.integers(-80, w - 20)), int(rng.integers(-80, h - 20))
        box = (x0 + rng.random(), y0 + rng.random(), x0 + side + int(rng.integers(0, 40)), y0 + side)
        got = crop_resize(frame, box, 64)
        bx0, by0, bx1, by1 = pixel_box(box)
        region = np.zeros((2, by1 - by0, bx1 - bx0), np.float32)
        sx0, sy0, sx1, sy1 = max(bx0, 0), max(by0, 0), min(bx1, w), min(by1, h)
        if sx1 > sx0 and sy1 > sy0:
            region[:, sy0 - by0 : sy1 - by0, sx0 - bx0 : sx1 - bx0] = frame[:, sy0:sy1, sx0:sx1]
        want = np.stack([cv2.resize(np.ascontiguousarray(p), (64, 64), interpolation=cv2.INTER_AREA) for p in region])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * max(1.0, float(want.max())))


def test_crop_from_events_equals_the_crop_of_their_eq1_frame():
    """crop_events (the live node's and the builder's crop) must equal crop_resize of event_frames for random
    windows: downscaling and upscaling boxes, boxes over the sensor border, events outside the sensor and with
    a bad polarity, any event order."""
    from microexp.events.dtype import make_events
    from microexp.events.frames import event_frames
    from microexp.vision.crop import crop_events

    rng = np.random.default_rng(11)
    for trial in range(40):
        h, w = (260, 346) if trial % 2 else (720, 1280)
        n = int(rng.integers(0, 30_000))
        ev = make_events(
            rng.integers(0, w + 4, n), rng.integers(0, h + 4, n), rng.integers(0, 33_000, n), rng.integers(0, 3, n)
        )
        side = int(rng.integers(20, 480))
        x0, y0 = int(rng.integers(-80, w - 10)), int(rng.integers(-80, h - 10))
        box = (
            None
            if trial == 0
            else (x0 + rng.random(), y0 + rng.random(), x0 + side + int(rng.integers(0, 30)), y0 + side)
        )
        want = crop_resize(event_frames(ev, w, h, t_start=0, n_slices=1)[0], box, 64)
        got = crop_events(ev, w, h, box, 64)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * max(1.0, float(want.max())))
    assert np.array_equal(crop_events(ev[:0], w, h, box, 64), np.zeros((2, 64, 64), np.float32))


def test_box_rounding_square_boxes_and_roi_parsing():
    assert pixel_box((0.49, 0.5, 10.5, 10.4)) == (0, 1, 11, 10)
    assert pixel_box((3.0, 3.0, 3.2, 3.1)) == (3, 3, 4, 4)  # at least one pixel
    assert square_box((0, 0, 10, 20), margin=1.5) == (-10.0, -5.0, 20.0, 25.0)
    assert parse_roi("") is None
    assert parse_roi("10,20,30,40") == (10.0, 20.0, 40.0, 60.0)
    with pytest.raises(ParameterError, match="roi"):
        parse_roi("10,20,30")
    with pytest.raises(ParameterError, match="positive"):
        parse_roi("10,20,0,40")


def test_probabilities_top3_and_horizon_smoothing():
    m = np.zeros(21, np.float32)
    m[[5, 2, 7]] = [0.9, 0.5, 0.5]
    p = au_probabilities(m)
    assert p.dtype == np.float32 and p.sum() == pytest.approx(1.0)
    assert np.allclose(p, np.exp(m) / np.exp(m).sum())
    assert np.allclose(au_probabilities(torch.from_numpy(m)), p)  # torch and numpy paths agree
    assert top_k(p) == (5, 2, 7)  # ties: lower index first
    smoother = HorizonSmoother(2)
    smoother.push(np.ones(21))
    smoother.push(np.zeros(21))
    assert np.allclose(smoother.push(np.full(21, 4.0)), 2.0) and smoother.count == 2


# --------------------------------------------------------------------------------------- streaming pipeline
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(windows=st.integers(1, 9), chunk=st.sampled_from([7, 300, 5000]), seed=st.integers(0, 3))
def test_streaming_single_steps_equal_multi_step_over_the_same_windows(windows, chunk, seed):
    """Property, at pipeline level, with a random untrained SNN: the pipeline's single steps over T windows
    (fed in packets of any size) publish exactly what multi-step inference over the same T windows gives."""
    model = random_snn(seed % 2)
    events = blob_events(*DAVIS, windows * 33_000 - 1000, 1.0e6, seed=seed)
    pipeline = StreamingAUPipeline(model, *DAVIS, roi=ROI, horizon=4)
    results = run_pipeline(pipeline, events, chunk)
    frames, expected = offline(model, events, *DAVIS, ROI)
    assert len(results) == frames.shape[0] == windows
    got = np.stack([r.probabilities for r in results])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert_same_ranking([r.top3 for r in results], expected)
    assert [r.events for r in results] == [int(f.sum()) for f in frames]
    assert [r.steps for r in results] == list(range(1, windows + 1))
    for k, r in enumerate(results):  # smoothed = mean of the last `horizon` windows' probabilities
        np.testing.assert_allclose(r.smoothed, expected[max(0, k - 3) : k + 1].mean(0), atol=1e-6)
    assert pipeline.counters()["resets_by_reason"] == {"start": 1}


def test_random_model_outputs_are_not_trivial():
    """Guard for the equality tests: the scaled random SNN does not give the uniform distribution."""
    model = random_snn()
    events = blob_events(*DAVIS, 8 * 33_000, 1.0e6)
    _, expected = offline(model, events, *DAVIS, ROI)
    assert expected[-1].max() - expected[-1].min() > 0.01


def test_empty_windows_are_inferred_and_counted_without_reset():
    model = random_snn()
    events = blob_events(*DAVIS, 400_000, 0.5e6, pauses=((100_000, 120_000),))  # < gap: 3 empty windows
    pipeline = StreamingAUPipeline(model, *DAVIS, roi=ROI, gap_us=200_000)
    results = run_pipeline(pipeline, events, 1000)
    frames, expected = offline(model, events, *DAVIS, ROI)
    np.testing.assert_allclose(np.stack([r.probabilities for r in results]), expected, atol=1e-6)
    c = pipeline.counters()
    assert c["empty_windows"] == sum(int(f.sum()) == 0 for f in frames) >= 2
    assert c["resets"] == 1 and c["gaps"] == 0


def test_noise_filter_in_the_pipeline_equals_the_builders_path():
    """noise_filter_us: the live pipeline bins what passes the background-activity filter while the raw
    events keep the window grid: its outputs equal the dataset builder's path (filter the whole stream, Eq. (1)
    frames on the raw grid, crop, multi-step) and it publishes the same windows as without the filter."""
    from microexp.events.filters import BackgroundActivityFilter

    model = random_snn()
    events = blob_events(*DAVIS, 20 * 33_000 + 5_000, 0.5e6, seed=4)
    plain = run_pipeline(StreamingAUPipeline(model, *DAVIS, roi=ROI), events, 1500)
    pipeline = StreamingAUPipeline(model, *DAVIS, roi=ROI, noise_filter_us=300)
    results = run_pipeline(pipeline, events, 1500)
    kept = BackgroundActivityFilter(*DAVIS, 300)(events)
    assert 0.05 * len(events) < len(kept) < 0.95 * len(events)
    frames, expected = offline(model, kept, *DAVIS, ROI, t_start=int(events["t"][0]))
    assert [(r.t0, r.t1) for r in results] == [(r.t0, r.t1) for r in plain]
    assert len(results) == frames.shape[0]
    np.testing.assert_allclose(np.stack([r.probabilities for r in results]), expected, atol=1e-6)
    assert sum(r.events for r in results) == len(kept) and pipeline.noise_filter.seen == len(events)


def test_stream_gap_resets_the_snn_and_restarts_the_window_grid():
    model = random_snn()
    first = blob_events(*DAVIS, 150_000, 0.5e6, seed=1)
    second = blob_events(*DAVIS, 200_000, 0.5e6, seed=2, t0_us=int(first["t"][-1]) + 700_000)
    pipeline = StreamingAUPipeline(model, *DAVIS, roi=ROI, gap_us=200_000)
    results = run_pipeline(pipeline, np.concatenate([first, second]), 2000)
    f1, e1 = offline(model, first, *DAVIS, ROI)
    f2, e2 = offline(model, second, *DAVIS, ROI)
    assert len(results) == f1.shape[0] + f2.shape[0]  # the gap's empty windows are not run
    np.testing.assert_allclose(np.stack([r.probabilities for r in results]), np.concatenate([e1, e2]), atol=1e-6)
    after = results[f1.shape[0]]
    assert after.reset == "gap" and after.steps == 1 and after.t0 == int(second["t"][0])
    c = pipeline.counters()
    assert c["gaps"] == 1 and c["resets_by_reason"] == {"start": 1, "gap": 1}


def test_dropped_packets_skipped_windows_and_segments_reset_and_are_counted():
    model = random_snn()
    events = blob_events(*DAVIS, 12 * 33_000, 0.5e6)
    frames, _ = offline(model, events, *DAVIS, ROI)
    crops = np.stack([crop_resize(f, ROI) for f in frames])
    pipeline = StreamingAUPipeline(model, *DAVIS, roi=ROI)
    cut = np.searchsorted(events["t"], int(events["t"][0]) + 3 * 33_000 + 5000)
    windows = pipeline.bin(events[:cut])
    pipeline.note_discontinuity("seq_gap")  # the node saw a seq gap: the open window lacks events
    windows += pipeline.bin(events[cut:]) + pipeline.flush_windows()
    assert [w.reset for w in windows][:4] == ["start", None, None, "seq_gap"]
    results = []
    for w in windows:
        if w.index == 6:
            pipeline.skip(w)  # the worker fell behind
            continue
        if w.index == 9:
            pipeline.reset("segment")
        results.append(pipeline.infer(w))
    resets = {r.index: r.reset for r in results if r.reset}
    assert resets == {0: "start", 3: "seq_gap", 7: "skipped", 9: "segment"}
    # after each reset the outputs are those of a fresh multi-step run from that window on
    for start, stop in ((3, 6), (7, 9), (9, len(windows))):
        expected = offline_probabilities(model, crops[start:stop])
        got = np.stack([r.probabilities for r in results if start <= r.index < stop])
        np.testing.assert_allclose(got, expected, atol=1e-6)
    c = pipeline.counters()
    assert c["skipped"] == 1 and c["resets"] == 4
    assert c["resets_by_reason"] == {"start": 1, "seq_gap": 1, "skipped": 1, "segment": 1}


# ------------------------------------------------------------------------------------------- start errors
def test_missing_or_wrong_checkpoints_are_clear_one_line_errors(tmp_path, random_checkpoint):
    with pytest.raises(CheckpointNotFoundError) as missing:
        load_au_model(tmp_path / "absent.pt")
    assert str(missing.value) == f"{tmp_path / 'absent.pt'}: no such checkpoint file"
    cnn = tmp_path / "cnn3d.pt"
    save_checkpoint(cnn, C3DNet(CNN3DConfig(widths=(2,) * 8, fc_hidden=4)))
    with pytest.raises(CheckpointArchitectureError, match="holds a 'cnn3d' model but a 'snn' model is expected"):
        load_au_model(cnn)
    rgb = tmp_path / "rgb_snn.pt"
    save_checkpoint(rgb, AUSpikingNet(SNNConfig(in_channels=3)))
    with pytest.raises(CheckpointError, match="3-channel input"):
        load_au_model(rgb)
    for err in (missing.value,):
        assert "\n" not in str(err)
    model, meta, model_id = load_au_model(random_checkpoint)
    assert model_id.startswith("random_untrained_snn.pt@") and meta["classes"] == list(AU_LABELS)


def test_the_default_model_ships_with_its_card(monkeypatch):
    """models/au_snn_default.pt: the paper's SNN, loadable for live use, and MODEL_CARD.md quotes the
    leave-one-subject-out figures stored in the checkpoint itself (both written by `microexp export`)."""
    import hashlib

    from microexp.infer import default_model_path, load_au_model
    from microexp.models import count_parameters

    monkeypatch.delenv("MICROEXP_MODELS_DIR", raising=False)
    path = default_model_path()
    assert path.exists(), f"{path}: the default model is missing"
    model, meta, ident = load_au_model(path)
    assert count_parameters(model) == 4_312_470 and meta["extra"]["stored_dtype"] == "float16"
    loso = meta["extra"]["loso"]
    assert loso["folds"] == 7 and 0.0476 < loso["accuracy"] <= 1.0
    card = (path.parent / "MODEL_CARD.md").read_text()
    assert f"**{100 * loso['accuracy']:.1f} % ± {100 * loso['accuracy_std']:.1f}**" in card
    assert hashlib.sha256(path.read_bytes()).hexdigest()[:16] in card
    assert "synthetic" in card and "not** an estimate of accuracy on real people" in card
    assert ident.startswith("au_snn_default.pt@")
