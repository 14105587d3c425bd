"""Benchmark: EVT3 RAW decoding, microexp against expelliarmus, on one core.

Builds an EVT3 RAW file in a temporary folder: the real Gen4.1 sample recording
(``expelliarmus_evt3_sample.raw`` from $MICROEXP_TESTDATA/events, decoded with microexp) tiled with time shifts
of one second per copy, so that the file crosses 2**24 µs wraps, or, when that recording is absent, synthetic
face-like events (an ellipse, eyes and a mouth moving at 1280x720). Its payload comes from
:class:`microexp.events.evt3.Evt3Encoder`. Then decodes the file with :func:`microexp.events.raw.read_raw` and
with ``expelliarmus.Wizard(encoding="evt3").read()`` (both single-threaded, whole file incl. reading it), best
of ``--repeat`` runs, and compares the arrays. ``*_mev_s`` are wall-clock rates; ``*_cpu_mev_s`` use the CPU time
of the decoding thread (user + system, so page faults count), which other processes on a shared machine
disturb less. The first, untimed call loads numba's compiled kernels.

Time comparison rule: expelliarmus 1.1 adds 4096 µs to its time for every TIME_LOW value lower than the one
before, in addition to the TIME_HIGH step that comes with it, so its t drifts ahead by 4096 µs per such step
(the reason its own reference for the sample ends at 11,772,513 µs). ``equal`` is True when x, y and p are
identical and expelliarmus' t equals microexp's t plus that drift, computed independently from the events;
``t_identical`` says whether the t arrays are identical as they are.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # the kernels are serial anyway: one core for both decoders

import tempfile
import time
from pathlib import Path

import numpy as np

from microexp.errors import ParameterError
from microexp.events.evt3 import Evt3Decoder, Evt3Encoder
from microexp.events.raw import read_raw
from microexp.synth.streams import face_like_events

SAMPLE = ("events", "expelliarmus_evt3_sample.raw")
WIDTH, HEIGHT = 1280, 720
TILE_SHIFT_US = 1_000_000


def add_arguments(parser) -> None:
    parser.add_argument("--events", type=int, default=10_000_000, help="number of events in the file (default 10M)")
    parser.add_argument("--repeat", type=int, default=3, help="decode runs per decoder; the best counts (default 3)")
    parser.add_argument(
        "--source",
        choices=("auto", "sample", "synthetic"),
        default="auto",
        help="events to tile: the real EVT3 sample (auto: when present) or synthetic face-like events",
    )


def _testdata() -> Path:
    env = os.environ.get("MICROEXP_TESTDATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[6] / "shared" / "data"


def _sample_events():
    path = _testdata().joinpath(*SAMPLE)
    if not path.exists():
        return None
    ev = read_raw(path).events
    return ev[np.argsort(ev["t"], kind="stable")]


def _tile(base: np.ndarray, n: int) -> np.ndarray:
    reps = -(-n // base.shape[0])
    ev = np.concatenate([base] * reps)[:n]
    ev["t"] += (np.arange(ev.shape[0]) // base.shape[0]) * TILE_SHIFT_US
    return ev


def _best(fn, repeat: int):
    """(best wall seconds, best CPU seconds of this thread, last result) over ``repeat`` runs."""
    best = best_cpu = float("inf")
    result = None
    for _ in range(max(1, repeat)):
        result = None
        t0, c0 = time.perf_counter(), time.thread_time()
        result = fn()
        c1, t1 = time.thread_time(), time.perf_counter()
        best, best_cpu = min(best, t1 - t0), min(best_cpu, c1 - c0)
    return best, best_cpu, result


def expelliarmus_time_model(t: np.ndarray) -> np.ndarray:
    """The t expelliarmus 1.1 reports for a stream written by Evt3Encoder (see the module docstring)."""
    low = t & 0xFFF
    drops = np.zeros(t.shape[0], dtype=np.int64)
    if t.shape[0] > 1:
        drops[1:] = np.cumsum(low[1:] < low[:-1])
    return t + 4096 * drops


def run(args) -> dict:
    n = int(args.events)
    if n < 1 or int(args.repeat) < 1:
        raise ParameterError(f"--events and --repeat must be at least 1 (got {n}, {args.repeat})")
    source = args.source
    base = None
    if source in ("auto", "sample"):
        base = _sample_events()
        if base is None and source == "sample":
            raise ParameterError(f"--source sample: {_testdata().joinpath(*SAMPLE)} is absent")
    if base is not None:
        events = _tile(base, n)
        source = "sample"
    else:
        events = face_like_events(n, width=WIDTH, height=HEIGHT)
        source = "synthetic"

    def encode():
        enc = Evt3Encoder(WIDTH, HEIGHT)
        step = 1 << 20
        return [enc.encode(events[i : i + step])[0] for i in range(0, events.shape[0], step)]

    Evt3Encoder(WIDTH, HEIGHT).encode(events[:1000])  # load the compiled kernels before timing
    enc_s, enc_cpu, parts = _best(encode, args.repeat)
    payload_bytes = sum(len(p) for p in parts)
    header = (
        b"% evt 3.0\n% format EVT3;height=720;width=1280\n% geometry 1280x720\n"
        b"% integrator_name microexp\n% plugin_name microexp_bench\n% end\n"
    )
    result = {
        "bench": "evt3",
        "events": n,
        "source": source,
        "bytes_per_event": round(payload_bytes / max(n, 1), 3),
        "encode_mev_s": round(n / enc_s / 1e6, 1),
        "encode_cpu_mev_s": round(n / enc_cpu / 1e6, 1),
    }
    with tempfile.TemporaryDirectory(prefix="microexp-bench-evt3-") as tmp:
        path = os.path.join(tmp, "bench.raw")
        with open(path, "wb") as f:
            f.write(header)
            for p in parts:
                f.write(p)
        Evt3Decoder(WIDTH, HEIGHT).decode(parts[0][: 1 << 17])  # load the compiled kernels before timing
        del parts
        mx_s, mx_cpu, rec = _best(lambda: read_raw(path), args.repeat)
        ours = rec.events
        result["microexp_mev_s"] = round(n / mx_s / 1e6, 1)
        result["microexp_cpu_mev_s"] = round(n / mx_cpu / 1e6, 1)
        try:
            import expelliarmus
        except ImportError:
            expelliarmus = None
        if expelliarmus is None:
            result.update(
                expelliarmus_mev_s=None, expelliarmus_cpu_mev_s=None, ratio=None, equal=None, t_identical=None
            )
        else:
            ex_s, ex_cpu, theirs = _best(lambda: expelliarmus.Wizard(encoding="evt3", fpath=path).read(), args.repeat)
            same_len = theirs.shape[0] == ours.shape[0] == n
            equal_xyp = same_len and all(
                np.array_equal(theirs[k].astype(np.int64), ours[k].astype(np.int64)) for k in ("x", "y", "p")
            )
            t_identical = same_len and np.array_equal(theirs["t"], ours["t"])
            t_model = same_len and np.array_equal(theirs["t"], expelliarmus_time_model(ours["t"]))
            result.update(
                expelliarmus_mev_s=round(n / ex_s / 1e6, 1),
                expelliarmus_cpu_mev_s=round(n / ex_cpu / 1e6, 1),
                ratio=round(ex_s / mx_s, 2),
                equal=bool(equal_xyp and t_model),
                t_identical=bool(t_identical),
            )
    result["microexp_equals_input"] = bool(ours.shape[0] == n and np.array_equal(ours, events))
    return result
