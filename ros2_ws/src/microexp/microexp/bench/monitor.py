"""Benchmark: does an open monitor page slow the graph down or make the recorder lose anything?

Each round measures two things twice, once without and once with the monitor (the order alternates between
rounds, so that a drift of the machine's load does not side with one condition):

- ``latency``: `microexp bench latency` (``--streams``, default the synthetic rig's DAVIS346 and EVK4 streams,
  ``--seconds`` each): the p99 of arrival of a window's closing packet -> publish of its AUPrediction;
- ``recording``: the ``rig`` scenario of `microexp bench load` (no busy processes): the synthetic rig's three
  sensors recorded by the recorder node, ``lost = published - recorded`` over all streams.

"With the monitor": a ``microexp monitor`` process (its own process, as a lab runs it, subscribed to the
benchmark's event topics and the default ones) and a headless Chromium (``python -m microexp.monitor.browser``)
holding its page open for the whole measurement, the page fetching frames and snapshots as an experimenter's
would. Reported: per condition the values of every round and their median, the ratio with/without of the
median latency p99, the loss of both, and the 1-minute load average before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np

from microexp.errors import MicroexpError, ParameterError


def add_arguments(parser) -> None:
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (without, with) the page (default 2)")
    parser.add_argument(
        "--streams", default="davis346:rig,evk4:rig", help="streams of the latency part (bench latency --streams)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per latency stream (default 3)")
    parser.add_argument("--aus", default="AU12", help="AUs of the recording part (bench load --aus; default AU12)")
    parser.add_argument("--repeat", type=int, default=1, help="accepted for `bench all`; see --rounds")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from microexp.cli import main; sys.exit(main())", *args]


@contextmanager
def monitor_page(events_topics: str):
    """A monitor process and a headless Chromium on its page, for the duration of the block."""
    mon = subprocess.Popen(
        _cli("monitor", "--port", "0", "--events-topics", events_topics),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    page = None
    try:
        line = mon.stdout.readline().strip()
        if not line.startswith("monitor: http"):
            raise MicroexpError(f"bench monitor: the monitor did not start ({line or 'no output'})")
        url = line.split(" ", 1)[1]
        page = subprocess.Popen(
            [sys.executable, "-m", "microexp.monitor.browser", url], stdout=subprocess.PIPE, text=True
        )
        if page.stdout.readline().strip() != "open":
            raise MicroexpError("bench monitor: the browser did not open the page")
        yield url
    finally:
        for proc in (page, mon):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _latency(args) -> dict:
    from microexp.bench import latency

    parser = argparse.ArgumentParser()
    latency.add_arguments(parser)
    ns = parser.parse_args(["--streams", args.streams, "--seconds", str(args.seconds)])
    r = latency.run(ns)
    return {"p99_ms": r["p99_ms"], "p50_ms": r["p50_ms"], "windows": r["windows"], "skipped": r["skipped"]}


def _recording(args) -> dict:
    from microexp.bench import load

    parser = argparse.ArgumentParser()
    load.add_arguments(parser)
    r = load.run(parser.parse_args(["--busy", "0", "--scenarios", "rig", "--aus", args.aus]))
    streams = r["scenarios"]["rig"]["busy_0"]["streams"]
    return {
        "lost": sum(int(s["lost"] or 0) for s in streams.values()),
        "recorded": sum(int(s.get("recorded") or 0) for s in streams.values()),
    }


def run(args) -> dict:
    if args.rounds < 1:
        raise ParameterError("bench monitor: --rounds must be at least 1")
    sensors = [item.partition(":")[0] for item in args.streams.split(",") if item.strip()]
    topics = ",".join([f"/latency_bench/{s}/events" for s in sensors] + ["/davis346/events", "/evk4/events"])
    load_before = os.getloadavg()[0]
    rows = {"without": [], "with": []}
    for i in range(args.rounds):
        order = ("without", "with") if i % 2 == 0 else ("with", "without")
        for cond in order:
            started = time.monotonic()
            if cond == "with":
                with monitor_page(topics):
                    row = {"latency": _latency(args), "recording": _recording(args)}
            else:
                row = {"latency": _latency(args), "recording": _recording(args)}
            row["wall_s"] = round(time.monotonic() - started, 1)
            rows[cond].append(row)

    def median(cond, part, key):
        vals = [r[part][key] for r in rows[cond] if r[part][key] is not None]
        return float(np.median(vals)) if vals else None

    p99 = {c: median(c, "latency", "p99_ms") for c in rows}
    return {
        "bench": "monitor",
        "rounds": args.rounds,
        "latency_p99_ms": p99,
        "latency_p99_ratio_with_without": round(p99["with"] / p99["without"], 3) if p99["without"] else None,
        "recording_lost": {c: sum(r["recording"]["lost"] for r in rows[c]) for c in rows},
        "runs": rows,
        "goal": "ratio within run-to-run noise, 0 lost with the page open",
        "loadavg_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }
