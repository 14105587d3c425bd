"""The live inference runner (microexp.infer.live) without DDS: the drop-oldest queue, lag accounting, seq gaps,
format errors, stream changes (encoding or geometry) and the idle flush, with the real streaming pipeline and
a random untrained SNN on CPU, on a clock the test moves."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.events import DAVIS
from helpers.events import packets as make_packets
from helpers.infer import random_snn
from helpers.wait import wait_until

from microexp.errors import FormatError
from microexp.events.dtype import make_events
from microexp.events.stream import Packet
from microexp.infer.live import LiveRunner
from microexp.infer.pipeline import StreamingAUPipeline

MS = 1_000_000  # ns


def centre_blob_events(width, height, t0_us, span_us, n, seed):
    """A still blob at the array's centre (normal spread), uniform in time; not the moving blob of
    helpers.events.blob_events."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(t0_us, t0_us + span_us, n))
    cx, cy = width / 2, height / 2
    x = np.clip(rng.normal(cx, width / 8, n), 0, width - 1)
    y = np.clip(rng.normal(cy, height / 8, n), 0, height - 1)
    return make_events(x.astype(np.int64), y.astype(np.int64), t, rng.integers(0, 2, n))


def packets(encoding, width, height, events, seq0=0, per_packet_us=1000):
    """helpers.events.packets without packet stamps (stamp_ns 0: the runner falls back to reception time)."""
    return make_packets(encoding, width, height, events, per_packet_us=per_packet_us, seq0=seq0, stamped=False)


class Clock:
    def __init__(self):
        self.now = 1_000_000 * MS

    def __call__(self) -> int:
        return self.now


class Harness:
    """A runner on a test clock (monotonic, wall and ROS time all read it), collecting results and logs."""

    def __init__(self, queue_size=1000, max_lag_ms=60000.0, gap_ms=200.0):
        self.clock = Clock()
        self.results, self.logs = [], []
        self.model = random_snn()
        self.made = []
        self.runner = LiveRunner(
            self._make,
            lambda r, stamp, frame: self.results.append((r, stamp, frame)),
            queue_size=queue_size,
            max_lag_ms=max_lag_ms,
            gap_ms=gap_ms,
            name="/test/events",
            log=lambda level, msg, throttle: self.logs.append((level, msg)),
            clock_ns=self.clock,
            wall_ns=self.clock,
            ros_now_ns=self.clock,
        )

    def _make(self, width, height):
        p = StreamingAUPipeline(self.model, width, height, horizon=3, gap_us=200_000, cuda_graph=False)
        self.made.append(p)
        return p

    def feed(self, pkts, drain=True, step_ns=MS):
        for p in pkts:
            self.runner.feed(p)
            self.clock.now += step_ns
            if drain:
                self.runner.run_pending()

    @property
    def counters(self):
        return self.runner.counters()


def reference(events, width, height):
    """The pipeline alone on the same events (fresh model, same weights): what the runner must hand back."""
    pipeline = StreamingAUPipeline(random_snn(), width, height, horizon=3, gap_us=200_000, cuda_graph=False)
    return pipeline.push(events) + pipeline.flush()


def test_results_equal_the_pipeline_alone_and_the_idle_flush_closes_the_open_window():
    events = centre_blob_events(*DAVIS, 1_000_000, 200_000, 6000, seed=1)
    h = Harness()
    h.feed(packets("evt3", *DAVIS, events))
    open_before = len(h.results)
    h.clock.now += 150 * MS  # less than gap_ms: nothing
    h.runner.idle()
    assert h.counters["idle_flushes"] == 0
    h.clock.now += 60 * MS
    h.runner.idle()
    h.runner.idle()  # once only
    h.runner.run_pending()
    assert h.counters["idle_flushes"] == 1 and len(h.results) == open_before + 1
    expected = reference(events, *DAVIS)
    got = [r for r, _, _ in h.results]
    assert [(r.t0, r.t1, r.events) for r in got] == [(r.t0, r.t1, r.events) for r in expected]
    np.testing.assert_allclose(
        np.stack([r.probabilities for r in got]), np.stack([r.probabilities for r in expected]), rtol=0, atol=1e-6
    )
    c = h.counters
    assert c["packets"] == len(packets("evt3", *DAVIS, events)) and c["events"] == len(events)
    assert c["published"] == c["windows"] == len(expected) and c["skipped"] == 0 and c["queued"] == 0
    assert c["seq_gaps"] == 0 and c["stream_changes"] == 0 and c["resets"] == 1
    assert {frame for _, _, frame in h.results} == {"cam"}
    assert ("info", "stream /test/events: evt3 346x260") in h.logs


def test_a_full_queue_drops_its_oldest_windows():
    events = centre_blob_events(*DAVIS, 1_000_000, 300_000, 6000, seed=2)
    h = Harness(queue_size=3)
    h.feed(packets("evt3", *DAVIS, events), drain=False)  # the worker is stalled: nothing is taken
    c = h.counters
    completed = c["queued"] + c["skipped"]
    assert c["queued"] == 3 and c["skipped"] == completed - 3 and completed >= 8
    h.runner.run_pending()
    got = [r for r, _, _ in h.results]
    assert [r.index for r in got] == list(range(completed - 3, completed))  # the newest three
    assert got[0].reset == "start" and got[1].reset is None
    c = h.counters
    assert c["published"] == c["windows"] == 3 and c["skipped"] == completed - 3 and c["queued"] == 0


def test_windows_older_than_max_lag_are_skipped_and_counted_and_the_next_one_resets():
    events = centre_blob_events(*DAVIS, 1_000_000, 300_000, 6000, seed=3)
    pkts = packets("evt3", *DAVIS, events)
    h = Harness(max_lag_ms=50.0)
    half = len(pkts) // 2
    h.feed(pkts[:half], drain=False, step_ns=0)
    queued = h.counters["queued"]
    assert queued >= 3
    h.clock.now += 49 * MS  # within max_lag: the first window is inferred
    h.runner.run_pending()
    assert len(h.results) == queued
    h.feed(pkts[half : half + 40], drain=False, step_ns=0)
    late = h.counters["queued"]
    assert late >= 1
    h.clock.now += 51 * MS  # past max_lag
    h.runner.run_pending()
    c = h.counters
    assert c["skipped"] == late and c["published"] == queued and c["queued"] == 0
    h.feed(pkts[half + 40 :])
    h.clock.now += 300 * MS
    h.runner.idle()
    h.runner.run_pending()
    after = [r for r, _, _ in h.results[queued:]]
    assert after and after[0].reset == "skipped" and h.counters["resets.skipped"] == 1


def test_the_lag_counts_from_the_reception_time_the_caller_gives():
    events = centre_blob_events(*DAVIS, 1_000_000, 100_000, 3000, seed=4)
    pkts = packets("evt3", *DAVIS, events)
    h = Harness(max_lag_ms=50.0)
    for p in pkts:  # each packet waited 60 ms between its reception and the feed: every window is too late
        h.runner.feed(p, received_ns=h.clock.now - 60 * MS)
    h.runner.run_pending()
    c = h.counters
    assert c["published"] == 0 and c["skipped"] >= 2
    h2 = Harness(max_lag_ms=50.0)
    for p in pkts:  # 40 ms: in time
        h2.runner.feed(p, received_ns=h2.clock.now - 40 * MS)
    h2.runner.run_pending()
    assert h2.counters["skipped"] == 0 and h2.counters["published"] == c["skipped"]
    # before the clock estimate locks, a result's stamp is the ROS reception time of its closing packet
    assert {stamp for _, stamp, _ in h2.results} == {h2.clock.now - 40 * MS}


def test_a_seq_gap_is_counted_and_resets_the_snn_before_the_next_window():
    events = centre_blob_events(*DAVIS, 1_000_000, 200_000, 6000, seed=5)
    pkts = packets("evt3", *DAVIS, events)
    h = Harness()
    kept = pkts[:100] + pkts[103:]  # packets 100..102 were lost
    h.feed(kept)
    c = h.counters
    assert c["seq_gaps"] == 1 and c["packets_missing"] == 3 and c["packets"] == len(kept)
    assert c["resets.seq_gap"] == 1 and c["resets"] == 2
    resets = [r.reset for r, _, _ in h.results if r.reset]
    assert resets == ["start", "seq_gap"]


def test_an_undecodable_packet_is_counted_and_resets_the_snn():
    events = centre_blob_events(*DAVIS, 1_000_000, 200_000, 6000, seed=6)
    pkts = packets("libcaer", *DAVIS, events)
    h = Harness()
    h.feed(pkts[:50])

    class Faulty:
        def __init__(self, inner):
            self.inner = inner

        def decode(self, payload, time_base=0):
            if payload == b"bad":
                raise FormatError(None, "corrupt")
            return self.inner.decode(payload, time_base=time_base)

        def reset(self):
            self.inner.reset()

    h.runner.reader.decoder = Faulty(h.runner.reader.decoder)
    h.feed([Packet("libcaer", *DAVIS, 50, b"bad", pkts[50].time_base)] + pkts[51:])
    c = h.counters
    assert c["decode_errors"] == 1 and c["resets.decode_error"] == 1 and c["seq_gaps"] == 0
    assert any(level == "warning" and "undecodable packet seq 50" in msg for level, msg in h.logs)


@pytest.mark.parametrize("second", [("libcaer", *DAVIS), ("evt3", 640, 480)], ids=["encoding", "geometry"])
def test_a_stream_change_opens_a_new_pipeline_and_carries_the_counts(second):
    first_events = centre_blob_events(*DAVIS, 1_000_000, 200_000, 5000, seed=7)
    second_events = centre_blob_events(second[1], second[2], 3_000_000, 200_000, 5000, seed=8)
    h = Harness()
    a = packets("evt3", *DAVIS, first_events, seq0=500)
    b = packets(*second, second_events, seq0=0)  # another driver: seq starts over
    h.feed(a, drain=False)
    queued_from_first = h.counters["queued"]
    h.feed(b, drain=False)
    h.runner.run_pending()
    h.clock.now += 300 * MS
    h.runner.idle()
    h.runner.run_pending()
    assert len(h.made) == 2 and h.runner.pipeline is h.made[1]
    assert (h.made[1].width, h.made[1].height) == second[1:]
    got = [r for r, _, _ in h.results]
    # windows queued before the change are inferred by the old pipeline, in order; the new stream starts anew
    first_n = h.made[0].counters()["windows"]
    assert first_n == queued_from_first
    assert [r.t0 for r in got[:first_n]] == [r.t0 for r in reference(first_events, *DAVIS)[:first_n]]
    assert [(r.t0, r.events) for r in got[first_n:]] == [
        (r.t0, r.events) for r in reference(second_events, *second[1:])
    ]
    assert got[first_n].reset is not None and "stream" in got[first_n].reset.split(",")
    c = h.counters
    assert c["stream_changes"] == 1 and c["seq_gaps"] == 0 and c["packets"] == len(a) + len(b)
    assert c["windows"] == len(got) == c["published"] and c["resets"] == 2  # summed over both pipelines
    assert c["events"] == len(first_events) + len(second_events)
    assert any(f"{second[0]} {second[1]}x{second[2]}" in msg for _, msg in h.logs)


def test_an_unusable_stream_is_counted_as_bad_packets_and_the_runner_keeps_going():
    events = centre_blob_events(*DAVIS, 1_000_000, 100_000, 2000, seed=9)
    h = Harness()
    h.feed([Packet("mystery", *DAVIS, 0, b"\0" * 16)])
    assert h.counters["bad_packets"] == 1 and h.counters["packets"] == 0 and h.runner.pipeline is None
    assert h.logs[-1][0] == "error" and "cannot run on /test/events" in h.logs[-1][1]
    h.feed(packets("evt3", *DAVIS, events, seq0=1))
    assert h.counters["published"] >= 2 and h.counters["stream_changes"] == 0


def test_the_worker_thread_infers_and_stops():
    events = centre_blob_events(*DAVIS, 1_000_000, 200_000, 4000, seed=10)
    results = []
    model = random_snn()
    runner = LiveRunner(
        lambda w, h: StreamingAUPipeline(model, w, h, cuda_graph=False),
        lambda r, stamp, frame: results.append(r),
        queue_size=100,
        max_lag_ms=60000.0,
    )
    runner.start()
    try:
        for p in packets("evt3", *DAVIS, events):
            runner.feed(p)
        wait_until(lambda: runner.counters()["published"] >= 5, 30, "the worker published fewer than 5 windows")
    finally:
        runner.stop()
    assert runner.published == len(results) >= 5 and not runner._worker.is_alive()
    assert [r.index for r in results] == list(range(len(results)))
