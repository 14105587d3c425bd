"""The synthetic subject's player without ROS: clips of (AU, trial) simulated ahead of time, cached, and played
with their arrival timing, each sensor's clock carried on across clips.

The simulator is slower than real time for the EVK4, so clips are simulated on worker threads (asked for by the
protocol's take status, prefetched in the protocol's order, or requested when a segment starts) and played on
the caller's thread (:meth:`ClipPlayer.play_loop`) through ``publish(message)``. Between clips nothing is
played. The synthetic rig node is its ROS face.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable

from microexp.aus import au_index, au_label
from microexp.playback import Pacer


class ClipPlayer:
    """Clips of ``rig`` for subject ``subject_id`` (``chunk_s``: message chunk length), played at ``rate``
    (1 = real time, 0 = flat out) until ``stop`` is set. ``log(level, text)``: 'info' or 'error' lines."""

    def __init__(
        self,
        rig,
        subject_id: int,
        chunk_s: float,
        rate: float,
        stop: threading.Event,
        log: Callable[[str, str], None] = lambda level, text: None,
    ):
        self.rig = rig
        self.subject_id = subject_id
        self.chunk_s = chunk_s
        self.rate = rate
        self.stop = stop
        self.log = log
        self.clips_played = 0
        self.shift_us: dict[str, int] = {}  # per sensor: how far the clip being played moves its sensor time
        self._pending = 0  # clips requested and not yet played
        self._playing = threading.Event()
        self._requests: queue.Queue = queue.Queue()
        self._prepared: queue.Queue = queue.Queue(maxsize=2)
        self._origin = time.monotonic()
        self._last_clip_end = 0.0
        self._cache: dict = {}
        self._key_locks: dict = {}
        self._cache_lock = threading.Lock()

    # -- what to play ---------------------------------------------------------------------------------------------
    def request(self, au: str, trial: int, due: float | None = None, why: str = "") -> None:
        """Play the clip of (``au``, ``trial``) after the clips requested before, not before monotonic ``due``."""
        self._pending += 1
        self._requests.put((au, int(trial), due, why))

    def end_of_requests(self) -> None:
        """No clip will be requested any more: :meth:`play_loop` returns after the last one."""
        self._requests.put(None)

    # -- simulation ---------------------------------------------------------------------------------------------
    def simulate(self, au: str, trial: int) -> list:
        """The clip's messages, simulated once per (AU, trial): concurrent callers wait for the same work."""
        key = (au_index(au), int(trial))
        with self._cache_lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._cache:
                t0 = time.monotonic()
                clip = self.rig.clip(self.subject_id, au_label(key[0]), key[1])
                self._cache[key] = list(clip.stream(chunk_s=self.chunk_s))
                self.log("info", f"simulated {au_label(key[0])} trial {key[1]} in {time.monotonic() - t0:.1f} s")
            return self._cache[key]

    def _simulate_in_background(self, au: str, trial: int) -> None:
        threading.Thread(target=self.simulate, args=(au, trial), daemon=True).start()

    def clip_ready(self, au: str, trial: int) -> bool:
        """Whether the clip of (au, trial) is simulated; if it is neither simulated nor being simulated, start."""
        key = (au_index(au), int(trial))
        with self._cache_lock:
            if key in self._cache:
                return True
            lock = self._key_locks.get(key)
            busy = lock is not None and lock.locked()  # simulated and played already: simulate again
        if not busy:
            self._simulate_in_background(au, trial)
        return False

    def wait_ready(self, au: str, trial: int, timeout_s: float = 120.0) -> bool:
        """Block until the clip of (au, trial) is simulated (the experimenter waits for the subject)."""
        key = (au_index(au), int(trial))
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not self.stop.is_set():
            with self._cache_lock:
                if key in self._cache:
                    return True
                busy = key in self._key_locks
            if not busy:
                self._simulate_in_background(au, trial)
            time.sleep(0.02)
        return False

    def prefetch_loop(self, plan: list[tuple[str, int]]) -> None:
        """Simulate the takes of ``plan`` in order, staying at most two clips ahead of the player."""
        for au, trial in plan:
            while len(self._cache) >= 2 and not self.stop.is_set():
                time.sleep(0.05)
            if self.stop.is_set():
                return
            try:
                self.simulate(au, trial)
            except Exception as exc:
                self.log("error", f"prefetch of {au} failed: {exc}")
                return

    def prepare_loop(self) -> None:
        """Simulate the requested clips in order for :meth:`play_loop` (a worker thread runs it)."""
        try:
            while not self.stop.is_set():
                req = self._requests.get()
                if req is None:
                    self._prepared.put(None)
                    return
                au, trial, due, _why = req
                msgs = self.simulate(au, trial)
                with self._cache_lock:  # played once: keep memory bounded
                    self._cache.pop((au_index(au), int(trial)), None)
                self._prepared.put((au, trial, due, msgs))
        except Exception as exc:  # a failing simulation must not hang the graph
            self.log("error", f"synthetic rig stopped: {exc}")
            self._prepared.put(None)

    # -- playing ------------------------------------------------------------------------------------------------
    def is_idle(self) -> bool:
        """Every requested clip has been played."""
        return self._requests.empty() and self._prepared.empty() and not self._playing.is_set() and self._pending == 0

    def wait_idle(self, timeout_s: float = 120.0, grace_s: float = 0.3) -> bool:
        """Block until every requested clip has been played, then ``grace_s`` more (the last messages cross)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not self.stop.is_set():
            if self.is_idle():
                time.sleep(grace_s)
                return True
            time.sleep(0.02)
        return False

    def play_loop(self, publish: Callable[[object], None]) -> None:
        """Play the prepared clips through ``publish`` until the end of the requests or ``stop``."""
        while not self.stop.is_set():
            item = self._prepared.get()
            if item is None:
                return
            self._playing.set()
            au, trial, due, msgs = item
            if due is not None:
                delay = due - time.monotonic()
                if delay > 0 and self.stop.wait(delay):
                    return
            try:
                self.play(msgs, publish)
            except Exception as exc:  # noqa: BLE001 - one clip fails, the next plays
                if self.stop.is_set():
                    return
                self.log("error", f"playing {au} trial {trial} failed: {type(exc).__name__}: {exc}")
            finally:
                self.clips_played += 1
                self._pending -= 1
                self._playing.clear()

    def play(self, msgs, publish: Callable[[object], None]) -> None:
        """Play a clip simulated at host time 0 as if it happened now: every sensor's stamps move by what its own
        clock advanced since the player started (:attr:`shift_us`; the clocks are affine, so this is exact),
        which keeps sensor time, seq and the clock estimates continuous across clips."""
        if not msgs:
            return
        h0, w0 = msgs[0].host_time_s, time.monotonic()
        host_now = max(w0 - self._origin, self._last_clip_end)
        self.shift_us = {
            name: int(round(setup.clock.sensor_us_float(host_now) - setup.clock.sensor_us_float(0.0)))
            for name, setup in self.rig.setups.items()
        }
        self._last_clip_end = host_now + (msgs[-1].host_time_s - h0) + 0.001
        pacer = Pacer(self.rate, self.stop)
        for m in msgs:
            if not pacer.wait(int(round((m.host_time_s - h0) * 1e6))):
                return
            publish(m)
