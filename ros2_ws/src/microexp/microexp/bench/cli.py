"""`microexp bench NAME`: benchmarks kept apart from the tests. Each prints one JSON line."""

from __future__ import annotations

import importlib
import json
import os
import platform

BENCHES = {
    "binning": "microexp.bench.binning",
    "evt3": "microexp.bench.evt3",
    "evk4-device": "microexp.bench.evk4_device",
    "gpu": "microexp.bench.gpu",
    "latency": "microexp.bench.latency",
    "load": "microexp.bench.load",
    "monitor": "microexp.bench.monitor",
    "offline": "microexp.bench.offline",
    "playback": "microexp.bench.playback",
    "recording": "microexp.bench.recording",
    "replay": "microexp.bench.replay",
}


def add_arguments(parser) -> None:
    parser.add_argument("name", choices=sorted(BENCHES) + ["all"], help="which benchmark ('all' runs each in turn)")
    parser.add_argument("--events", type=int, default=None, help="events to process (default: the benchmark's own)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats; the best is reported")
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    parser.add_argument(
        "options",
        nargs="*",
        metavar="-- OPTION",
        help="the benchmark's own options after `--`, e.g. `microexp bench latency -- --threads 1` "
        "(`microexp bench NAME -- --help` lists them)",
    )


def build_parser_for_tests():
    """The `microexp bench` argument parser on its own."""
    import argparse

    parser = argparse.ArgumentParser(prog="microexp bench")
    add_arguments(parser)
    return parser


def _machine() -> dict:
    return {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}


def run(args) -> int:
    names = sorted(BENCHES) if args.name == "all" else [args.name]
    for name in names:
        module = importlib.import_module(BENCHES[name])
        sub_args = _namespace_for(module, args)
        result = module.run(sub_args)
        result.setdefault("bench", name)
        result.update(_machine())
        line = json.dumps(result)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(line + "\n")
    return 0


def _namespace_for(module, args):
    """The benchmark's own defaults, overridden by what the user gave."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"microexp bench {args.name} --")
    module.add_arguments(parser)
    ns = parser.parse_args(list(getattr(args, "options", None) or []))
    for key in ("events", "repeat"):
        if getattr(args, key, None) is not None and hasattr(ns, key):
            setattr(ns, key, getattr(args, key))
    return ns
