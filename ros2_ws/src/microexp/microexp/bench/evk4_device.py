"""Benchmark: the EVK4 node's device path, both ways (``raw``: the sensor's bytes passed through; ``decode``:
OpenEB's decoders, then the EVT3 encoder), beside its file passthrough path, on the same RAW file, in one run.

The RAW file is the shared EVT3 recording (``expelliarmus_evt3_sample.raw``, 219,596 events, Gen4.1 HD) tiled
to ``--events`` with a time shift of 1 s per copy (so it crosses 2**24 µs wraps), written with that file's own
header, so OpenEB opens it as it opens the original (``DeviceDiscovery.open_raw_file``).

Two levels, each flat out, best of ``--repeat``:

- ``core``: no ROS. Device: :class:`~microexp.events.evk4_device.OpenEBDevice` reading buffers and its
  packetizer making packets; ``hal_s`` is the time in ``read`` (OpenEB, and in ``decode`` its decoders and the
  numpy conversion). File: the node's passthrough (memory-mapped payload, :func:`word_times`,
  :func:`split_evt3`, :func:`trigger_words`). ``*_cpu_mev_s`` use this process's CPU time (OpenEB reads the
  file in a thread of its own, which counts there).
- ``node``: the EVK4 node publishing over DDS to a counting subscriber process (as ``bench playback``), in
  ``mode:=device`` with ``device_file`` (each ``device_read``) and in ``mode:=file``; packets received are
  counted.

Goal: device path ≥ 50 Mev/s on one core (an EVK4 in a face scene gives 1–20 Mev/s).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from microexp.bench.evt3 import SAMPLE, TILE_SHIFT_US, _testdata


def add_arguments(parser) -> None:
    parser.add_argument("--events", type=int, default=10_000_000, help="events in the tiled RAW file (default 10M)")
    parser.add_argument("--repeat", type=int, default=3, help="core runs per path; the best counts (default 3)")
    parser.add_argument("--no-node", action="store_true", help="skip the node-level (DDS) runs")


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
    from microexp.events.evk4_device import OpenEBDevice, make_packetizer

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
        out = pk.flush() if got is None else pk.feed(got)
        enc_s += time.perf_counter() - b
        packets += len(out)
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
    from microexp.events.evt3_split import Evt3TimeState, split_evt3, trigger_words, word_times
    from microexp.events.raw import raw_payload

    c0, t0 = time.process_time(), time.perf_counter()
    words = np.frombuffer(raw_payload(path), dtype="<u2")
    times = word_times(words, Evt3TimeState())
    packets = 0
    for start, end, _ in split_evt3(words, times, 1000, 1_000_000):
        trigger_words(words[start:end], times[start:end])
        bytes(words[start:end])  # the node copies each packet's words into its message
        packets += 1
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "packets": packets}


def node_run(mode: str, path: str, read: str = "auto") -> dict:
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

    r = play_file(factory, ["/evk4/events|event_camera_msgs/msg/EventPacket"])
    return {
        "wall_s": r["wall_s"],
        "sent": r["published"].get("/evk4/events", 0),
        "received": r["received"].get("/evk4/events", 0),
    }


def run(args) -> dict:
    from microexp.events.evk4_device import openeb_available, raw_reader_available

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
            nf = node_run("file", str(raw))
            out.update(
                node_file_mev_s=round(n / nf["wall_s"] / 1e6, 1),
                node_file_sent=nf["sent"],
                node_file_received=nf["received"],
            )
            for read in reads:
                nd = node_run("device", str(raw), read)
                out.update(
                    {
                        f"node_device_{read}_mev_s": round(n / nd["wall_s"] / 1e6, 1),
                        f"node_device_{read}_sent": nd["sent"],
                        f"node_device_{read}_received": nd["received"],
                        f"node_device_{read}_over_file": round(nf["wall_s"] / nd["wall_s"], 3),
                    }
                )
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return out
