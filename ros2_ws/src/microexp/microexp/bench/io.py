"""Throughput benchmarks of the ROS side (one JSON dict each; the `microexp bench` dispatcher prints it).

- ``playback``: file playback flat out on one process, a counting subscriber in another: the EVK4 node's
  ``evt3`` passthrough (goal ≥ 50 Mev/s, the saturation rate metavision_driver was tested at) and the DAVIS346
  node's ``libcaer`` encoding (goal ≥ 12 Mev/s), with the messages received counted (no drops).
- ``recording``: EVK4-like ``evt3`` EventPackets sent flat out by a publisher process to the recorder; MB/s
  and Mev/s written with zero drops, beside the disk's own sequential write rate measured by ``dd`` in the
  same run (goal ≥ 200 MB/s or 80 % of the disk, whichever is lower).
- ``replay``: a bag of 1 ms EventPackets and 25 ms frames republished at rate 1; inter-arrival error at a
  subscriber process against the recorded intervals, p50/p99 (goal p99 < 2 ms).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from microexp.events.evt3 import Evt3Encoder
from microexp.synth.streams import row_run_events

EVT3_BYTES_PER_EVENT = None  # measured per run


def add_arguments(parser) -> None:
    parser.add_argument("--events", type=int, default=None, help="events (playback) / packets (recording)")
    parser.add_argument("--repeat", type=int, default=1)


def playback(events: int | None = None) -> dict:
    from microexp.ros.bench.throughput import play_file
    from microexp.ros.compose import overrides

    n = events or 20_000_000
    out = {"bench": "playback", "events": n}
    with tempfile.TemporaryDirectory(dir=_bench_dir()) as tmp:
        ev = row_run_events(n, 1280, 720, duration_us=n // 50, run=8)  # 50 Mev/s of sensor time, edge-like runs
        payload, _ = Evt3Encoder(1280, 720).encode(ev)
        raw = Path(tmp) / "evk4.raw"
        raw.write_bytes(b"% evt 3.0\n% geometry 1280x720\n% end\n" + payload)
        out["evt3_bytes_per_event"] = round(len(payload) / n, 3)

        def evk4():
            from microexp.ros.nodes.evk4_node import Evk4Node

            return Evk4Node(
                parameter_overrides=overrides(
                    "evk4", None, mode="file", file=str(raw), rate=0.0, qos="reliable", wait_for_subscribers_s=30.0
                )
            )

        r = play_file(evk4, ["/evk4/events|event_camera_msgs/msg/EventPacket"])
        sent = r["published"].get("/evk4/events", 0)
        got = r["received"].get("/evk4/events", 0)
        out.update(
            evk4_mev_s=round(n / r["wall_s"] / 1e6, 1),
            evk4_mb_s=round(len(payload) / r["wall_s"] / 1e6, 1),
            evk4_packets=sent,
            evk4_received=got,
            evk4_drops=sent - got,
        )

        m = min(n, 5_000_000)
        aedat = Path(tmp) / "davis.aedat4"
        _write_aedat4(aedat, row_run_events(m, 346, 260, duration_us=m // 12))

        def davis():
            from microexp.ros.nodes.davis346_node import Davis346Node

            return Davis346Node(
                parameter_overrides=overrides(
                    "davis346",
                    None,
                    mode="file",
                    file=str(aedat),
                    rate=0.0,
                    qos="reliable",
                    wait_for_subscribers_s=30.0,
                )
            )

        r = play_file(davis, ["/davis346/events|event_camera_msgs/msg/EventPacket"])
        sent = r["published"].get("/davis346/events", 0)
        got = r["received"].get("/davis346/events", 0)
        out.update(
            davis_events=m,
            davis_mev_s=round(m / r["wall_s"] / 1e6, 1),
            davis_packets=sent,
            davis_received=got,
            davis_drops=sent - got,
        )
    out["goal_evk4_mev_s"], out["goal_davis_mev_s"] = 50, 12
    return out


def _write_aedat4(path: Path, events) -> None:
    import dv_processing as dv

    store = dv.EventStore()
    for x, y, t, p in zip(events["x"].tolist(), events["y"].tolist(), events["t"].tolist(), events["p"].tolist()):
        store.push_back(t, x, y, bool(p))
    cfg = dv.io.MonoCameraWriter.EventOnlyConfig("DAVIS346_BENCH", (346, 260))
    writer = dv.io.MonoCameraWriter(str(path), cfg)
    writer.writeEvents(store)
    del writer


def _bench_dir() -> str:
    d = Path(os.environ.get("MICROEXP_BENCH_DIR", "out/bench"))
    d.mkdir(parents=True, exist_ok=True)
    return str(d)


def _dd_mb_s(folder: str, megabytes: int = 1024) -> float:
    target = Path(folder) / "dd.bin"
    t0 = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={megabytes}", "conv=fdatasync"],
        check=True,
        capture_output=True,
    )
    dt = time.perf_counter() - t0
    target.unlink()
    return megabytes * 1.048576 / dt


def recording(packets: int | None = None) -> dict:
    from microexp.ros.bench.throughput import record_flat_out

    n = packets or 3000
    size = 200_000  # 1 ms of EVK4 traffic at ~100 Mev/s (about 2 bytes/event)
    with tempfile.TemporaryDirectory(dir=_bench_dir()) as tmp:
        disk = _dd_mb_s(tmp)
        r = record_flat_out(str(Path(tmp) / "session"), n, size)
    mb_s = r["bytes"] / max(r["wall_written_s"], 1e-9) / 1e6
    return {
        "bench": "recording",
        "packets": n,
        "packet_bytes": size,
        "received": r["received"],
        "lost_before_recorder": n - r["received"],
        "written": r["written"],
        "dropped": r["dropped"],
        "recorder_mb_s": round(mb_s, 1),
        "recorder_mev_s_at_2B_per_event": round(mb_s / 2, 1),
        "disk_dd_mb_s": round(disk, 1),
        "ratio_to_disk": round(mb_s / disk, 3),
        "goal_mb_s": round(min(200.0, 0.8 * disk), 1),
        "errors": r["errors"],
    }


def replay(seconds: float = 5.0) -> dict:
    from microexp.ros.bench.throughput import finish_counter, make_replay_bag, start_counter

    with tempfile.TemporaryDirectory(dir=_bench_dir()) as tmp:
        topics, stamps = make_replay_bag(str(Path(tmp) / "bag"), seconds)
        counter = start_counter([f"{t}|{m}" for t, m in topics.items()])
        res = subprocess.run(
            [
                os.sys.executable,
                "-m",
                "microexp.cli",
                "replay",
                str(Path(tmp) / "bag"),
                "--rate",
                "1",
                "--wait-subscribers",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        got = finish_counter(counter)
    arrivals = np.sort(np.array(got["arrivals"]))  # DDS reception times; poll intake takes topic by topic
    recorded = np.array(sorted(stamps), dtype=np.float64) * 1e-9
    k = min(len(arrivals), len(recorded))
    err = np.abs(np.diff(arrivals[:k]) - np.diff(recorded[:k])) * 1e3
    return {
        "bench": "replay",
        "messages": int(len(recorded)),
        "received": int(len(arrivals)),
        "interval_error_p50_ms": round(float(np.percentile(err, 50)), 3),
        "interval_error_p99_ms": round(float(np.percentile(err, 99)), 3),
        "goal_p99_ms": 2.0,
        "replay_rc": res.returncode,
    }


def run_playback(args) -> dict:
    return playback(args.events)


def run_recording(args) -> dict:
    return recording(args.events)


def run_replay(args) -> dict:
    return replay()
