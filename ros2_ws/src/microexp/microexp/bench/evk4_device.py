"""Benchmark: the EVK4 node's device path, both ways (``raw``: the sensor's bytes passed through; ``decode``:
OpenEB's decoders, then the EVT3 encoder), beside its file passthrough path, on the same RAW file, in one run.

The RAW file is the shared EVT3 recording (``expelliarmus_evt3_sample.raw``, 219,596 events, Gen4.1 HD) tiled
to ``--events`` with a time shift of 1 s per copy (so it crosses 2**24 µs wraps), written with that file's own
header, so OpenEB opens it as it opens the original (``DeviceDiscovery.open_raw_file``).

Two levels, each flat out:

- ``core`` (best of ``--repeat``): no ROS. Device: :class:`~microexp.drivers.evk4.OpenEBDevice` reading
  buffers, its packetizer making packets, each serialized as the node does; ``hal_s`` is the time in ``read``
  (OpenEB, and in ``decode`` its decoders and the numpy conversion). File: the node's passthrough (the
  memory-mapped payload cut by :class:`~microexp.events.evt3_split.Evt3Cutter` in device-read-sized pieces,
  serialized). ``*_cpu_mev_s`` use this process's CPU time (OpenEB reads the file in a thread of its own,
  which counts there).
- ``node`` (``--node-repeat`` rounds, for each number of ``--busy`` processes beside them): the EVK4 node
  publishing with reliable QoS to a counting subscriber process (as ``bench playback``), in ``mode:=file``
  and in ``mode:=device`` with ``device_file`` (each ``device_read``), back to back in each round. A run's
  time is from the first packet published until the subscriber received the last; reported as
  min/median/max Mev/s, the device/file ratio of each round, and each run's packets sent, received and
  missing from the subscriber's seq numbers.

Goals: device path ≥ 50 Mev/s on one core (an EVK4 in a face scene gives 1–20 Mev/s); over DDS the device
path at ≥ 0.8× the file path on an idle machine (≥ 0.6× with two busy processes), no packet lost.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from microexp.bench.evt3 import SAMPLE, TILE_SHIFT_US, _testdata
from microexp.errors import ParameterError


def add_arguments(parser) -> None:
    parser.add_argument("--events", type=int, default=10_000_000, help="events in the tiled RAW file (default 10M)")
    parser.add_argument("--repeat", type=int, default=3, help="core runs per path; the best counts (default 3)")
    parser.add_argument("--no-node", action="store_true", help="skip the node-level (DDS) runs")
    parser.add_argument(
        "--node-repeat", type=int, default=5, help="rounds of the node paths (file, then each device way; default 5)"
    )
    parser.add_argument(
        "--busy",
        default="0,2",
        help="node runs with these numbers of busy processes beside them, comma-separated (default 0,2)",
    )


def make_raw(path: Path, n: int) -> tuple[int, int]:
    """Write the tiled RAW file; (events, payload bytes)."""
    from microexp.events.evt3 import Evt3Encoder
    from microexp.events.raw import read_raw

    src = _testdata().joinpath(*SAMPLE)
    rec = read_raw(src)
    base = rec.events[np.argsort(rec.events["t"], kind="stable")]
    base = base.copy()
    base["t"] -= int(base["t"][0])  # start near 0 so that the tiled stream's first epoch is unambiguous
    reps = -(-n // len(base))
    enc = Evt3Encoder(rec.width, rec.height, vectors="sensor")  # the form OpenEB decodes
    head = "".join(line + "\n" for line in rec.header.lines if not line.startswith("% end"))
    size = 0
    with open(path, "wb") as f:
        f.write((head + "% end\n").encode())
        left = n
        for k in range(reps):
            ev = base[:left].copy()
            ev["t"] += k * TILE_SHIFT_US
            payload, _ = enc.encode(ev)
            f.write(payload)
            size += len(payload)
            left -= len(ev)
    return n, size


def core_device(path: str, read: str) -> dict:
    """The device path without ROS, ``read`` = 'raw' (the sensor's bytes through microexp's binding) or 'decode'
    (OpenEB's decoders, then the EVT3 encoder)."""
    from microexp.drivers.evk4 import OpenEBDevice, make_packetizer

    dev = OpenEBDevice(raw_file=path)
    info = dev.open()
    pk = make_packetizer(read, info, 1000, 1_000_000)
    packets = 0
    hal_s = enc_s = 0.0
    c0, t0 = time.process_time(), time.perf_counter()
    dev.start(raw=read == "raw")
    while True:
        a = time.perf_counter()
        got = dev.read(0.05)
        b = time.perf_counter()
        hal_s += b - a
        packets += _serialize(pk.flush() if got is None else pk.feed(got))
        enc_s += time.perf_counter() - b
        if got is None:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    dev.close()
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "hal_s": hal_s,
        "encode_s": enc_s,
        "events": pk.events_in,
        "packets": packets,
        "buffers": dev.buffers,
    }


def core_file(path: str) -> dict:
    """The node's file passthrough without ROS: the memory-mapped payload cut in device-read-sized pieces,
    each packet serialized as the node serializes it."""
    from microexp.events.evt3_split import PIECE_WORDS, Evt3Cutter
    from microexp.events.raw import raw_payload

    c0, t0 = time.process_time(), time.perf_counter()
    words = np.frombuffer(raw_payload(path), dtype="<u2")
    cutter = Evt3Cutter(1000, 1_000_000)
    packets = 0
    for start in range(0, len(words), PIECE_WORDS):
        packets += _serialize(cutter.add_words(words[start : start + PIECE_WORDS]))
    packets += _serialize(cutter.flush())
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "packets": packets}


def _serialize(packets) -> int:
    """Serialize ``packets`` as the node does (:func:`~microexp.bags.cdr.event_packet_cdr`); how many."""
    from microexp.bags.cdr import event_packet_cdr

    for i, pkt in enumerate(packets):
        event_packet_cdr(0, "evk4", 1280, 720, i, pkt.parts)
    return len(packets)


EVK4_TOPICS = [
    "/evk4/events|event_camera_msgs/msg/EventPacket",
    "/evk4/triggers|event_camera_msgs/msg/EventPacket",
    "/evk4/sensor_info|std_msgs/msg/String",
    "/evk4/sync_status|microexp_msgs/msg/SyncStatus",
]


def node_run(mode: str, path: str, read: str = "auto") -> dict:
    """One run of the EVK4 node flat out (reliable QoS) to a counting subscriber process on all its topics:
    wall time from the first packet published until the subscriber received the last (DDS reception time),
    packets sent and received, seq numbers missing at the subscriber."""
    from microexp.ros.bench.throughput import play_file
    from microexp.ros.compose import overrides

    def factory():
        from microexp.ros.nodes.evk4_node import Evk4Node

        source = (
            {"mode": "device", "device_file": path, "device_read": read}
            if mode == "device"
            else {"mode": "file", "file": path}
        )
        return Evk4Node(
            parameter_overrides=overrides("evk4", None, rate=0.0, qos="reliable", wait_for_subscribers_s=30.0, **source)
        )

    r = play_file(factory, EVK4_TOPICS)
    seq = r["seq"].get("/evk4/events", {})
    sent, received = r["published"].get("/evk4/events", 0), r["received"].get("/evk4/events", 0)
    span = r["spans"].get("/evk4/events")
    return {
        # until the subscriber received the last packet (its acknowledgement may wait for a DDS heartbeat)
        "wall_s": span[1] - r["start_epoch_s"] if span and r["start_epoch_s"] else r["wall_s"],
        "sent": sent,
        "received": received,
        "lost": sent - received,
        "seq_missing": seq.get("seq_missing", 0),
    }


def spread(values: list[float]) -> dict:
    """min, median, max, rounded."""
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def node_series(raw: str, n: int, reads: list[str], rounds: int) -> dict:
    """``rounds`` rounds of the node paths, each round file then device (each ``read``) back to back; Mev/s
    and device/file ratio per round as min/median/max, and every run's loss."""
    runs: dict[str, list[dict]] = {"file": [], **{f"device_{r}": [] for r in reads}}
    for _ in range(rounds):
        runs["file"].append(node_run("file", raw))
        for read in reads:
            runs[f"device_{read}"].append(node_run("device", raw, read))
    out: dict = {"rounds": rounds}
    for path, rs in runs.items():
        out[f"node_{path}_mev_s"] = spread([n / r["wall_s"] / 1e6 for r in rs])
        out[f"node_{path}_runs"] = [
            {"mev_s": round(n / r["wall_s"] / 1e6, 1), **{k: r[k] for k in ("sent", "received", "lost", "seq_missing")}}
            for r in rs
        ]
        out[f"node_{path}_lost"] = sum(r["lost"] for r in rs)
        if path != "file":
            out[f"node_{path}_over_file"] = spread([f["wall_s"] / r["wall_s"] for f, r in zip(runs["file"], rs)])
    return out


def run(args) -> dict:
    from microexp.drivers.evk4 import openeb_available, raw_reader_available

    try:
        args.busy_list = [int(b) for b in str(getattr(args, "busy", "0")).split(",") if b.strip()]
    except ValueError:
        raise ParameterError(f"bench evk4-device: --busy {args.busy!r}: give numbers, e.g. 0,2") from None
    if any(b < 0 for b in args.busy_list):
        raise ParameterError("bench evk4-device: --busy: numbers of processes cannot be negative")
    args.node_repeat = getattr(args, "node_repeat", 5)

    out = {"bench": "evk4-device", "events": args.events, "goal_mev_s": 50}
    reason = openeb_available()
    if reason:
        out["skipped"] = reason
        return out
    if not _testdata().joinpath(*SAMPLE).exists():
        out["skipped"] = f"the shared EVT3 recording {_testdata().joinpath(*SAMPLE)} is absent"
        return out
    out["load_before"] = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "evk4_tiled.raw"
        n, size = make_raw(raw, args.events)
        out["raw_mb"] = round(size / 1e6, 1)
        reads = ["decode"] + (["raw"] if raw_reader_available() is None else [])
        if "raw" not in reads:
            out["raw_skipped"] = raw_reader_available()
        for read in reads:
            core_device(str(raw), read)  # untimed: loads numba's kernels and warms the page cache
        fil = min((core_file(str(raw)) for _ in range(max(1, args.repeat))), key=lambda r: r["wall_s"])
        out.update(
            file_mev_s=round(n / fil["wall_s"] / 1e6, 1),
            file_cpu_mev_s=round(n / fil["cpu_s"] / 1e6, 1),
            file_packets=fil["packets"],
        )
        for read in reads:
            dev = min((core_device(str(raw), read) for _ in range(max(1, args.repeat))), key=lambda r: r["wall_s"])
            out.update(
                {
                    f"device_{read}_events": dev["events"],
                    f"device_{read}_mev_s": round(n / dev["wall_s"] / 1e6, 1),
                    f"device_{read}_cpu_mev_s": round(n / dev["cpu_s"] / 1e6, 1),
                    f"device_{read}_hal_mev_s": round(n / dev["hal_s"] / 1e6, 1),
                    f"device_{read}_packets": dev["packets"],
                    f"device_{read}_buffers": dev["buffers"],
                    f"device_{read}_over_file": round(fil["wall_s"] / dev["wall_s"], 3),
                }
            )
        if not args.no_node:
            for busy in args.busy_list:
                from microexp.ros.bench.load import busy_processes

                hogs = busy_processes(busy)
                try:
                    load = os.getloadavg()[0]
                    series = node_series(str(raw), n, reads, max(1, args.node_repeat))
                finally:
                    for h in hogs:
                        h.kill()
                        h.wait()
                out[f"node_busy_{busy}"] = {"busy": busy, "load_at_start": round(load, 2), **series}
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return out
