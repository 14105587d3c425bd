"""Benchmark: the GPU figures of live inference and training (``microexp bench gpu``), without ROS.

On a machine without CUDA it prints ``status: skipped`` and nothing else. With a GPU (``--device cuda``):

- ``step``: one streaming SNN step of the paper's architecture (random init, 2 x 64 x 64 event frames of
  realistic sparsity) over ``--steps`` steps, each timed to completion (``torch.cuda.synchronize``):
  eager ``model.step`` against the same step replayed as a CUDA graph
  (:class:`microexp.models.snn_graph.CudaGraphStep`), p50/p99 in ms, and the largest difference of their
  outputs. Goal: graph step p99 <= 0.2 ms.
- ``sustained``: decode + bin + crop + infer of an EVK4 stream (1280 x 720, EVT3 packets of 1 ms, the
  latency benchmark's moving blob at ``--rate`` Mev/s) through :class:`microexp.infer.pipeline.StreamingAUPipeline`
  as fast as it goes, one thread: events per second of wall time. Goal: >= 50 Mev/s.
- ``train``: one training step (forward, MSE, backward, Adam) of the paper's SNN configuration (75 time steps
  of 64 x 64 frames) at batch 8 and at batch 56, and the 7-fold x 100-epoch protocol on 147 clips projected
  from the batch-8 step (126 training clips per fold = 16 batches). Goal: <= 5 min.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from microexp.events.codecs import make_decoder, make_encoder
from microexp.infer.pipeline import StreamingAUPipeline
from microexp.models.snn import AUSpikingNet, SNNConfig
from microexp.models.snn_graph import CudaGraphStep
from microexp.synth.streams import blob_packets


def add_arguments(parser) -> None:
    parser.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    parser.add_argument("--steps", type=int, default=2000, help="streaming steps timed per mode (default 2000)")
    parser.add_argument("--rate", type=float, default=50.0, help="event rate of the sustained stream, Mev/s")
    parser.add_argument("--seconds", type=float, default=4.0, help="sensor seconds of the sustained stream")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step timing")
    parser.add_argument("--repeat", type=int, default=1, help="accepted for `bench all`")


def _percentiles(samples: list) -> dict:
    a = np.asarray(samples) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 4), "p99_ms": round(float(np.percentile(a, 99)), 4)}


def _frames(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    active = torch.rand(n, 1, 2, 64, 64, generator=g) < 0.05
    return active.float() * torch.rand(n, 1, 2, 64, 64, generator=g) * 0.5


def bench_step(device: str, steps: int) -> dict:
    torch.manual_seed(0)
    model = AUSpikingNet(SNNConfig()).to(device).eval()
    frames = _frames(steps).to(device)
    res: dict = {}
    outs = {}
    with torch.inference_mode():
        for name in ("eager", "graph"):
            stepper = model if name == "eager" else CudaGraphStep(model, device=device)
            stepper.reset()
            for t in range(20):  # warm-up
                stepper.step(frames[t])
            stepper.reset()
            times = []
            last = None
            for t in range(steps):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                last = stepper.step(frames[t])
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            outs[name] = last.float().cpu()
            res[name] = _percentiles(times)
    res["max_abs_diff"] = float((outs["eager"] - outs["graph"]).abs().max())
    res["goal_graph_p99_ms"] = 0.2
    return res


def bench_sustained(device: str, rate: float, seconds: float) -> dict:
    width, height = 1280, 720
    encoder = make_encoder("evt3", width, height)
    payloads = [encoder.encode(ev)[0] for ev in blob_packets(width, height, rate, seconds, t0_us=0)]
    n_events = int(round(rate * 1e6 * seconds))
    side = int(height * 0.6)
    roi = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
    torch.manual_seed(0)
    model = AUSpikingNet(SNNConfig())
    warm = StreamingAUPipeline(model, width, height, roi=roi, device=device)
    decoder = make_decoder("evt3", width, height)
    for p in payloads[:40]:  # compile the numba kernels, load CUDA
        warm.push(decoder.decode(p)[0])
    pipeline = StreamingAUPipeline(model, width, height, roi=roi, device=device)
    decoder = make_decoder("evt3", width, height)
    t0 = time.perf_counter()
    windows = 0
    for p in payloads:
        windows += len(pipeline.push(decoder.decode(p)[0]))
    windows += len(pipeline.flush())
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return {
        "events": n_events,
        "windows": windows,
        "wall_s": round(wall, 3),
        "mev_s": round(n_events / wall / 1e6, 1),
        "goal_mev_s": 50,
        "cuda_graph": type(pipeline.model).__name__ == "CudaGraphStep",
        "graph_error": pipeline.graph_error,
    }


def bench_train(device: str) -> dict:
    res: dict = {}
    for batch in (8, 56):
        torch.manual_seed(0)
        model = AUSpikingNet(SNNConfig()).to(device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = _frames(75 * batch).reshape(75, batch, 2, 64, 64).to(device)
        target = torch.nn.functional.one_hot(torch.arange(batch) % 21, 21).float().to(device)
        times = []
        for it in range(6):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(model(x), target)
            loss.backward()
            opt.step()
            torch.cuda.synchronize()
            if it >= 2:
                times.append(time.perf_counter() - t0)
        res[f"batch{batch}_step_s"] = round(float(np.median(times)), 4)
    batches_per_epoch = -(-126 // 8)
    res["protocol_projected_min"] = round(7 * 100 * batches_per_epoch * res["batch8_step_s"] / 60, 1)
    res["goal_protocol_min"] = 5
    return res


def run(args) -> dict:
    if not torch.cuda.is_available():
        return {"bench": "gpu", "status": "skipped: no CUDA device (torch.cuda.is_available() is False)"}
    device = args.device
    result: dict = {"bench": "gpu", "device_name": torch.cuda.get_device_name(device), "torch": torch.__version__}
    result["step"] = bench_step(device, int(args.steps))
    result["sustained"] = bench_sustained(device, float(args.rate), float(args.seconds))
    if not args.no_train:
        result["train"] = bench_train(device)
    return result
