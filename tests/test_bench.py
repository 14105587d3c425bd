"""The benchmarks' command line and streams (microexp.bench): option pass-through, the latency bench's rig
stream, the GPU bench on a machine without CUDA."""

from __future__ import annotations

import numpy as np
import pytest

from microexp.errors import ParameterError


def test_bench_options_pass_through():
    """`microexp bench latency -- --threads 1 --seconds 2` reaches the benchmark's own parser; bad ones fail."""
    import argparse
    import importlib

    from microexp.bench.cli import BENCHES, _namespace_for, build_parser_for_tests

    module = importlib.import_module(BENCHES["latency"])
    args = build_parser_for_tests().parse_args(["latency", "--", "--threads", "1", "--seconds", "2"])
    ns = _namespace_for(module, args)
    assert ns.threads == 1 and ns.seconds == 2.0 and ns.warmup == 1.0
    with pytest.raises(SystemExit):
        _namespace_for(
            module, argparse.Namespace(name="latency", options=["--no-such-option"], events=None, repeat=None)
        )


def test_latency_bench_rig_stream_is_the_synthetic_rigs_events():
    """`microexp bench latency -- --streams davis346:rig`: packets of 1 ms of the rig's own face events,
    time-ordered from t0, covering the asked seconds; a bad stream spec names itself."""
    import argparse

    from microexp.bench import latency
    from microexp.synth import streams

    packets = list(streams.rig_packets("davis346", 0.4, 5_000_000, seed=1))
    t = np.concatenate([p["t"] for p in packets])
    assert len(packets) > 300 and np.all(np.diff(t) >= 0) and t[0] >= 5_000_000 and t[-1] < 5_400_000
    assert all(p["t"][-1] - p["t"][0] < streams.PACKET_US for p in packets)
    assert (t // streams.PACKET_US).max() - (t // streams.PACKET_US).min() < 400
    with pytest.raises(ParameterError, match="davis346:fast"):
        latency.run(
            argparse.Namespace(
                streams="davis346:fast",
                model="",
                threads=1,
                device="cpu",
                seconds=1,
                warmup=1,
                qos="sensor",
                executor="single",
            )
        )


def test_gpu_bench_skips_without_cuda_and_its_stream_runs_on_cpu():
    """`microexp bench gpu` says it skipped on a machine without CUDA; its sustained-stream part (EVT3 decode
    -> bin -> crop -> SNN through the pipeline) is the real pipeline and runs on CPU too."""
    import argparse

    import torch

    from microexp.bench import gpu

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: `microexp bench gpu` measures it instead")
    res = gpu.run(argparse.Namespace(device="cuda", steps=10, rate=1.0, seconds=0.5, no_train=True))
    assert res["status"].startswith("skipped")
    sus = gpu.bench_sustained("cpu", 2.0, 0.5)
    assert sus["events"] == 1_000_000 and sus["windows"] >= 14 and sus["mev_s"] > 0 and not sus["cuda_graph"]


@pytest.mark.slow
@pytest.mark.heavy  # a headless chromium (installed by `make test`)
def test_monitor_bench_runs_both_conditions_and_the_page_was_open(tmp_path):
    """`microexp bench monitor -- --rounds 1 --streams davis346:rig --seconds 1`: one JSON line with the latency p99
    and the recorder's loss without and with the page, their ratio; the recorded messages of both conditions."""
    import json

    from helpers.cli import microexp

    out = tmp_path / "bench.jsonl"
    res = microexp(
        "bench", "--out", out, "monitor", "--", "--rounds", "1", "--streams", "davis346:rig", "--seconds", "1",
        timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(out.read_text().splitlines()[-1])
    assert r["bench"] == "monitor" and set(r["latency_p99_ms"]) == {"without", "with"}
    assert all(v is not None and v > 0 for v in r["latency_p99_ms"].values())
    assert r["latency_p99_ratio_with_without"] == pytest.approx(
        r["latency_p99_ms"]["with"] / r["latency_p99_ms"]["without"], abs=1e-3
    )
    for cond in ("without", "with"):
        (run,) = r["runs"][cond]
        assert run["latency"]["windows"] > 0 and run["recording"]["recorded"] > 1000, run
    assert r["recording_lost"] == {"without": 0, "with": 0}
