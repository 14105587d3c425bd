"""The live inference runner: EventPackets in, one AU prediction per window out, without ROS.

:class:`LiveRunner` is what the inference node (:mod:`microexp.ros.nodes.inference_node`) runs; the node only
subscribes, feeds it packets (:class:`~microexp.events.stream.Packet`), publishes what it hands back and
reports its counters.

- **Intake** (:meth:`LiveRunner.feed`, one packet at a time from any thread): a
  :class:`~microexp.events.stream.StreamReader` decodes the packet and counts ``seq`` gaps; the stream's
  :class:`~microexp.infer.pipeline.StreamingAUPipeline` bins the events, and the windows they complete go
  into a bounded drop-oldest queue (``queue_size``; the oldest waiting window is skipped when it is full).
  A seq gap or an undecodable payload makes the pipeline reset the SNN before its next window. A packet with
  another encoding or geometry than the stream's (a stream change) opens a new stream: a new decoder and a
  new pipeline from ``make_pipeline(width, height)``, the old pipeline's counts carried over.
- **Idle** (:meth:`LiveRunner.idle`, called periodically): after ``gap_ms`` of wall time without a packet the
  open window is closed and queued, rather than when the stream resumes.
- **Worker** (:meth:`LiveRunner.start` / :meth:`LiveRunner.stop`; or :meth:`LiveRunner.run_pending` on the
  caller's thread): takes windows in order, skips (and counts) a window that waited longer than
  ``max_lag_ms`` since the arrival of the packet that closed it, infers the others and hands each result to
  ``on_result(result, stamp_ns, frame_id)``.
- **Verdicts** of a spotting pipeline (a movement's training window, 16 SNN steps at once) run on a thread of
  their own after :meth:`LiveRunner.start`, so that the per-window worker never waits for one; with
  :meth:`LiveRunner.run_pending` they run on the caller's thread after their window.

Time: window bounds are sensor µs. ``stamp_ns`` is the window end mapped to ROS time through a clock estimate
(:class:`~microexp.timesync.estimator.ClockEstimator`) fitted on (first event time, packet stamp) pairs, once
it is locked; before that, the ROS arrival time of the packet that closed the window. A packet's arrival is
its reception time (``received_ns``, system clock; e.g. the DDS message info's ``received_timestamp``) when
the caller gives it, else the moment :meth:`LiveRunner.feed` is called.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Callable, Optional

import numpy as np

from microexp.errors import MicroexpError
from microexp.events.codecs import make_decoder, make_encoder
from microexp.events.dtype import make_events
from microexp.events.stream import Packet, StreamReader
from microexp.infer.pipeline import StreamingAUPipeline
from microexp.infer.smoothing import LatencyStats
from microexp.timesync.estimator import ClockEstimator

__all__ = ["LiveRunner", "warm_up", "PIPELINE_COUNTS"]

PIPELINE_COUNTS = (
    "windows",
    "skipped",
    "empty_windows",
    "no_face_windows",
    "rest_windows",
    "verdicts",
    "late_events",
    "gaps",
    "resets",
)
"""Counters of a pipeline that are summed over the streams of a runner."""

Log = Callable[[str, str, float], None]  # (level: info/warning/error, message, throttle seconds)


def _no_log(level: str, message: str, throttle_s: float = 0.0) -> None:
    pass


class LiveRunner:
    """Live inference over one EventPacket stream (see the module docstring).

    ``make_pipeline(width, height)`` builds the pipeline of a stream; ``on_result(result, stamp_ns,
    frame_id)`` receives each :class:`~microexp.infer.pipeline.WindowResult` on the worker thread, and
    ``on_verdict(verdict, stamp_ns, frame_id)`` each :class:`~microexp.infer.pipeline.MovementVerdict` of a
    spotting pipeline, after the result of the window that completed it (``stamp_ns``: its apex on ROS
    time once the clock estimate is locked, else the window's stamp). ``log``
    receives (level, message, throttle seconds). ``clock_ns`` (monotonic), ``wall_ns`` (system clock, the
    clock of ``received_ns``) and ``ros_now_ns`` (ROS time) are the clocks it reads."""

    def __init__(
        self,
        make_pipeline: Callable[[int, int], StreamingAUPipeline],
        on_result: Callable[[object, int, str], None],
        *,
        queue_size: int = 4,
        max_lag_ms: float = 100.0,
        gap_ms: float = 200.0,
        name: str = "events",
        log: Optional[Log] = None,
        on_verdict: Optional[Callable[[object, int, str], None]] = None,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        wall_ns: Callable[[], int] = time.time_ns,
        ros_now_ns: Callable[[], int] = time.time_ns,
    ):
        self._make_pipeline = make_pipeline
        self._on_result = on_result
        self._on_verdict = on_verdict
        self.queue_size = int(queue_size)
        self.max_lag_ns = float(max_lag_ms) * 1e6
        self.gap_ms = float(gap_ms)
        self.name = name
        self._log = log or _no_log
        self._clock, self._wall, self._ros_now = clock_ns, wall_ns, ros_now_ns

        self.reader = StreamReader()
        self.pipeline: Optional[StreamingAUPipeline] = None
        self.latency = LatencyStats()
        self.frame_id = ""
        self._stream_key: Optional[tuple] = None
        self._clock_est: Optional[ClockEstimator] = None
        self._last_packet_ns: Optional[int] = None
        self._flushed = True
        # one Counter per thread that writes it (intake, worker, callers of segment_boundary): no lost increments
        self.counts: Counter = Counter({k: 0 for k in ("bad_packets", "idle_flushes", "stream_changes")})
        self._worker_counts: Counter = Counter({"published": 0, "infer_errors": 0, "au_events": 0})
        self._callback_counts: Counter = Counter({"segment_markers": 0})

        self._queue: deque = deque()
        self._in_flight: Optional[StreamingAUPipeline] = None  # the pipeline of the window being inferred
        self._retired: list = []  # pipelines of earlier streams that may still infer queued windows
        self._retired_counts: Counter = Counter()  # counts of earlier streams' pipelines that are done
        self._cond = threading.Condition()
        self._intake_lock = threading.Lock()  # the binning side: one packet at a time
        self._stop = False
        self._worker: Optional[threading.Thread] = None
        self._verdict_queue: deque = deque()  # (pipeline, spotted, stamp_ns, arrival_ns)
        self._verdict_worker: Optional[threading.Thread] = None

    # -------------------------------------------------------------------------------------------- intake
    def feed(self, packet: Packet, received_ns: int = 0) -> None:
        """One packet: decode, bin, queue the windows it completes. ``received_ns``: when it was received
        (system clock ns; 0 = now)."""
        with self._intake_lock:
            self._take(packet, int(received_ns))

    def _take(self, packet: Packet, received_ns: int) -> None:
        arrival_ns = self._clock()
        if received_ns > 0:  # time spent waiting to be taken counts
            ros_arrival_ns = received_ns
            arrival_ns -= max(0, self._wall() - received_ns)
        else:
            ros_arrival_ns = self._ros_now()
        if self._stream_key != packet.key:
            try:
                self._open_stream(packet)
            except MicroexpError as exc:
                self.counts["bad_packets"] += 1
                self._log("error", f"cannot run on {self.name}: {exc}", 10.0)
                return
        t_decode = self._clock()
        decoded = self.reader.feed(packet)
        if decoded.seq_gap:
            self.pipeline.note_discontinuity("seq_gap")
        self.frame_id = packet.frame_id
        if decoded.error is not None:
            self.pipeline.note_discontinuity("decode_error")
            self._log("warning", f"undecodable packet seq {packet.seq}: {decoded.error}", 5.0)
            return
        decode_ms = (self._clock() - t_decode) / 1e6
        self._last_packet_ns = arrival_ns
        events = decoded.events
        if events.shape[0] == 0:
            return
        self._clock_est.update(int(events["t"][0]), packet.stamp_ns if packet.stamp_ns > 0 else ros_arrival_ns)
        windows = self.pipeline.bin(events, arrival_ns, decode_ms)
        self._flushed = False
        self._enqueue(windows, ros_arrival_ns)
        self.latency.add("intake", (self._clock() - arrival_ns) / 1e6)

    def _open_stream(self, packet: Packet) -> None:
        """A new decoder and pipeline for the packet's encoding and geometry (MicroexpError: unusable)."""
        self.reader.open(*packet.key)
        pipeline = self._make_pipeline(packet.width, packet.height)
        old, self.pipeline = self.pipeline, pipeline
        if old is not None:
            self.counts["stream_changes"] += 1
            with self._cond:
                self._retired.append(old)
            pipeline.note_discontinuity("stream")
        self._clock_est = ClockEstimator()
        self._stream_key = packet.key
        self._log("info", f"stream {self.name}: {packet.encoding} {packet.width}x{packet.height}", 0.0)

    def idle(self) -> None:
        """No packet for gap_ms of wall time: queue the open window now rather than when the stream resumes."""
        if self.pipeline is None or self._flushed or self._last_packet_ns is None:
            return
        if (self._clock() - self._last_packet_ns) / 1e6 < self.gap_ms:
            return
        with self._intake_lock:
            self._flushed = True
            self.counts["idle_flushes"] += 1
            self._enqueue(self.pipeline.flush_windows(self._clock()), self._ros_now())

    def segment_boundary(self) -> None:
        """A recording segment starts or ends: the SNN resets before the next window."""
        if self.pipeline is not None:
            self._callback_counts["segment_markers"] += 1
            self.pipeline.reset("segment")

    def _enqueue(self, windows: list, ros_arrival_ns: int) -> None:
        if not windows:
            return
        est = self._clock_est
        pipeline = self.pipeline
        with self._cond:
            for w in windows:
                stamp = int(est.to_ros_ns(w.t1)) if est is not None and est.locked else ros_arrival_ns
                if len(self._queue) >= self.queue_size:
                    old_pipeline, old_window, _ = self._queue.popleft()
                    old_pipeline.skip(old_window)
                self._queue.append((pipeline, w, stamp))
            self._cond.notify_all()  # the window worker, not the verdict thread, must wake

    # -------------------------------------------------------------------------------------------- worker
    def start(self) -> None:
        """Start the worker thread."""
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="au_inference", daemon=True)
            self._worker.start()
            self._verdict_worker = threading.Thread(target=self._judge_loop, name="au_verdicts", daemon=True)
            self._verdict_worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker thread (windows still queued are dropped)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for worker in (self._worker, self._verdict_worker):
            if worker is not None and worker.is_alive():
                worker.join(timeout=timeout)

    def run_pending(self) -> int:
        """Process the queued windows on this thread (without the worker thread); returns how many."""
        n = 0
        while True:
            with self._cond:
                if not self._queue:
                    return n
                item = self._pop_window()
            self._run_window(item)
            n += 1

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                item = self._pop_window()
            self._run_window(item)

    def _pop_window(self):
        """The oldest queued window, marked in flight (the caller holds the condition's lock)."""
        item = self._queue.popleft()
        self._in_flight = item[0]
        return item

    def _run_window(self, item) -> None:
        try:
            self._process(*item)
        finally:
            self._in_flight = None

    def _process(self, pipeline: StreamingAUPipeline, window, stamp_ns: int) -> None:
        if self._clock() - window.arrival_ns > self.max_lag_ns:
            pipeline.skip(window)
            return
        try:
            result = pipeline.infer(window)
        except Exception as exc:  # noqa: BLE001 - one bad window must not stop live inference
            self._worker_counts["infer_errors"] += 1
            pipeline.skip(window)
            self._log("error", f"inference failed on window {window.t0}: {type(exc).__name__}: {exc}", 5.0)
            return
        self._on_result(result, stamp_ns, self.frame_id)
        self._worker_counts["published"] += 1
        for spotted in result.spotted:
            if self._verdict_worker is None:
                self._judge(pipeline, spotted, stamp_ns, result.arrival_ns)
            else:
                with self._cond:
                    self._verdict_queue.append((pipeline, spotted, stamp_ns, result.arrival_ns))
                    self._cond.notify_all()

    def _judge_loop(self) -> None:
        while True:
            with self._cond:
                while not self._verdict_queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                item = self._verdict_queue.popleft()
            self._judge(*item)

    def _judge(self, pipeline: StreamingAUPipeline, spotted, window_stamp_ns: int, arrival_ns: int) -> None:
        try:
            verdict = pipeline.judge(spotted)
            verdict.arrival_ns = arrival_ns
        except Exception as exc:  # noqa: BLE001 - one bad verdict must not stop live inference
            self._worker_counts["infer_errors"] += 1
            self._log("error", f"verdict failed on the movement at {spotted.apex_us}: {type(exc).__name__}: {exc}", 5.0)
            return
        est = self._clock_est
        stamp = int(est.to_ros_ns(verdict.apex_us)) if est is not None and est.locked else window_stamp_ns
        if self._on_verdict is not None:
            self._on_verdict(verdict, stamp, self.frame_id)
        self._worker_counts["au_events"] += 1

    # ---------------------------------------------------------------------------------------------- state
    @property
    def published(self) -> int:
        """Results handed to ``on_result`` so far."""
        return self._worker_counts["published"]

    def counters(self) -> dict:
        """Everything counted so far (stream reader, runner and pipelines, summed over streams), one flat dict."""
        r = self.reader
        out = {
            "packets": r.counts["packets"],
            "events": r.counts["events"],
            "seq_gaps": r.seq.gaps,
            "packets_missing": r.seq.missing,
            "decode_errors": r.counts["decode_errors"],
            **self.counts,
            **self._worker_counts,
            **self._callback_counts,
        }
        with self._cond:
            queued = len(self._queue)
            verdicts_queued = len(self._verdict_queue)
            busy = {id(item[0]) for item in self._queue} | {id(self._in_flight)}
            live = [p for p in self._retired if id(p) in busy]
            for p in self._retired:  # done: their counts no longer change
                if id(p) not in busy:
                    self._retired_counts.update(_pipeline_counts(p))
            self._retired = live
            total = Counter(self._retired_counts)
        if self.pipeline is not None:
            for p in live + [self.pipeline]:
                total.update(_pipeline_counts(p))
            for k in PIPELINE_COUNTS:
                out[k] = total[k]
            for k in sorted(k for k in total if k.startswith("resets.")):
                out[k] = total[k]
        out["queued"] = queued
        out["verdicts_queued"] = verdicts_queued
        return out

    def latency_summary(self) -> dict:
        """p50/p99 (ms) per stage: the pipeline's (decode, bin, queue, crop, snn, post, ready) and the runner's
        (intake: a packet's reception to the end of its decoding and binning; and what the caller adds)."""
        out = {} if self.pipeline is None else self.pipeline.latency.summary()
        out.update(self.latency.summary())
        return out


def _pipeline_counts(pipeline) -> Counter:
    c = pipeline.counters()
    out = Counter({k: c[k] for k in PIPELINE_COUNTS})
    out.update({f"resets.{reason}": n for reason, n in c["resets_by_reason"].items()})
    return out


def warm_up(model, device: str, slice_us: int, temperature: float, noise_filter_us: int) -> Optional[str]:
    """Run the live path once so that the first real windows do not pay first-call costs: one SNN step on
    zeros (torch), then decode, bin, crop and SNN steps on random events (numba compiles its kernels on first
    use and caches them in $NUMBA_CACHE_DIR). Returns None, or what failed in the second part (the live path
    reports its own errors); the model is reset after."""
    import torch  # heavy: imported where a model runs

    size = model.config.input_size
    with torch.inference_mode():
        model.step(torch.zeros(1, 2, size, size, device=device))
    model.reset()
    error = None
    try:
        rng = np.random.default_rng(0)
        n, (w, h) = 4000, (346, 260)
        t = np.sort(rng.integers(0, 100_000, n))
        events = make_events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.integers(0, 2, n))
        for enc in ("evt3", "libcaer"):
            payload, time_base = make_encoder(enc, w, h).encode(events)
            make_decoder(enc, w, h).decode(bytes(payload), int(time_base))
        pipeline = StreamingAUPipeline(
            model,
            w,
            h,
            slice_us=slice_us,
            roi=None,
            device=device,
            temperature=temperature,
            cuda_graph=False,
            noise_filter_us=noise_filter_us,
        )
        pipeline.push(events)
        pipeline.flush()
    except Exception as exc:  # noqa: BLE001 - a warm-up only
        error = f"{type(exc).__name__}: {exc}"
    model.reset()
    return error
