"""Movement spotting on the live window stream: when does a facial movement start and end, and which 16 windows
does the model judge (no rclpy).

The model is trained on windows of ``window`` slices (16 x 33 ms) centred on a movement, from a fresh SNN state
(:mod:`microexp.learn.clips`); a running mean over a continuous stream sees rest, countdown and movement mixed.
The live path therefore spots first and recognises after:

1. **Activity** of each window: the events inside the crop box that pass a background-activity filter
   (:class:`~microexp.events.filters.BackgroundActivityFilter`): isolated noise events do not pass, the edges
   of a moving face do. The raw count inside the box (the dataset builder's ``activity``) is kept too.
2. **Spotting** (:class:`MovementSpotter`): a window is *active* when its filtered activity reaches the
   *level*: at least ``threshold`` events and ``ratio`` times the rest ceiling, the ``quantile`` of the filtered
   activity of the last ``background`` windows outside confirmed movements (so the brief bursts of head sway and
   blinking that a subject makes at rest raise the bar: the local background); inside an open movement also at
   least ``relative`` times the movement's largest window, so that the small activity around a large movement
   does not stretch it, and so for ``refractory`` windows after a movement ends (a head that has just turned
   sways with more events for a while). The first active window opens a candidate; it is *confirmed* once its filtered events
   add up to ``min_events`` and ``min_levels`` times the level (fewer: noise, dropped at its end, its windows
   counted as rest), and ends at its last active window once ``hold`` quiet windows followed (an apex hold,
   when the face is still between onset and offset, is bridged), or after ``max_windows``.
   The reported interval is where the movement's events lie: its ends are trimmed to the windows that hold the
   first and the last ``trim`` of its filtered events (a burst of sway merged at one end falls away), then
   ``extend`` windows are added at each end (a movement starts and stops slowly, and its first and last moments
   change the image too little to fire events).
3. **Verdict**: the movement's peak is the dataset builder's rule (:func:`~microexp.events.activity.movement_peak`: the box-filtered excess
   of raw activity over its median, here over the movement and ``pad`` windows each side); the model then runs
   from a fresh state over the ``window`` crops centred on the peak (clamped into what the buffer holds, as
   training clamps into the clip), which is what the offline evaluation of the same checkpoint computes.

Windows are numbered by the pipeline (consecutive within a clip). :meth:`MovementSpotter.push` takes one window
and returns the :class:`Spotted` movements whose verdict window is complete; :meth:`MovementSpotter.end` (a gap
in the stream, a lost face, the end) closes what is open and returns the rest.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Optional

import numpy as np

from microexp.errors import ParameterError
from microexp.events.activity import movement_peak

__all__ = ["SpotterConfig", "Spotted", "MovementSpotter"]


@dataclass(frozen=True)
class SpotterConfig:
    """Parameters of :class:`MovementSpotter` (window counts are 33 ms slices)."""

    threshold: int = 5  #: filtered events in the box that make a window active (at least)
    ratio: float = 2.0  #: ... and at least this many times the rest ceiling
    quantile: float = 0.95  #: the rest ceiling is this quantile of the recent windows outside movements
    relative: float = 0.05  #: ... and, inside a movement, this fraction of its largest window
    hold: int = 8  #: quiet windows after the last active one that end a movement
    refractory: int = 45  #: windows after a movement during which its ``relative`` level still holds
    min_events: int = 45  #: filtered events a movement needs in all (fewer: noise, dropped) ...
    min_levels: float = 3.0  #: ... and at least this many times the level
    trim: float = 0.05  #: fraction of the movement's events left outside its reported interval at each end
    max_windows: int = 90  #: a movement still going after this many windows ends there
    window: int = 16  #: windows the verdict runs over (the model's training window)
    pad: int = 4  #: windows each side of the movement searched for its peak
    extend: int = 1  #: windows added before the first and after the last active one in the reported interval
    background: int = 150  #: recent windows outside movements that the rest ceiling is taken over

    def __post_init__(self) -> None:
        if self.extend < 0:
            raise ParameterError(f"spotting extend must be >= 0, got {self.extend!r}")
        if self.refractory < 0:
            raise ParameterError(f"spotting refractory must be >= 0, got {self.refractory!r}")
        for name in ("threshold", "hold", "min_events", "max_windows", "window", "background"):
            if int(getattr(self, name)) < 1:
                raise ParameterError(f"spotting {name} must be >= 1, got {getattr(self, name)!r}")
        if self.pad < 0 or not self.ratio >= 0 or not self.min_levels >= 0:
            raise ParameterError(
                f"spotting pad, ratio and min_levels must be >= 0, got {self.pad!r}, {self.ratio!r}, {self.min_levels!r}"
            )
        for name in ("relative", "quantile", "trim"):
            if not 0 <= getattr(self, name) < 1:
                raise ParameterError(f"spotting {name} must be in [0, 1), got {getattr(self, name)!r}")


@dataclass
class Spotted:
    """A spotted movement and the windows its verdict runs over (window indices of the pipeline)."""

    onset: int  #: first active window
    offset: int  #: last active window
    peak: int  #: centre of the verdict window
    first: int  #: first window of the verdict (inclusive)
    last: int  #: last window of the verdict (exclusive)
    onset_us: int  #: sensor µs: start of the onset window
    apex_us: int  #: sensor µs: centre of the peak window
    offset_us: int  #: sensor µs: end of the offset window
    events: int  #: filtered events of the movement
    crops: Optional[np.ndarray] = None  #: float32 (window, 2, S, S): the crops the verdict runs over
    decided_us: int = 0  #: sensor µs: end of the newest window when the verdict window was complete
    forced: str = ""  #: why the movement was closed early ("gap", "face_lost", "end", "max_windows"), if so


@dataclass
class _Entry:
    index: int
    t0: int
    t1: int
    raw: int
    filtered: int
    crop: np.ndarray


class MovementSpotter:
    """See the module docstring. ``push`` one window at a time, in order."""

    def __init__(self, config: SpotterConfig = SpotterConfig()):
        self.config = config
        keep = config.max_windows + config.window + 2 * config.pad + config.hold + 2
        self._buf: deque[_Entry] = deque(maxlen=keep)
        self._quiet: deque[int] = deque(maxlen=config.background)
        self._candidate: list[int] = []  # filtered activity of the open, not yet confirmed movement's windows
        self._level: Optional[float] = None  # cached level (None: recompute)
        self._onset: Optional[int] = None
        self._last_active: Optional[int] = None
        self._largest = 0  # largest filtered activity of the open movement
        self._previous = (-(10**9), 0)  # (last window, largest activity) of the latest confirmed movement
        self._sum = 0  # filtered events of the open movement
        self._pending: list[Spotted] = []  # ended, waiting for the windows after their peak
        self.spotted = 0
        self.dropped = 0  # movements below min_events

    # ------------------------------------------------------------------------------------------- state
    @property
    def moving(self) -> bool:
        """A confirmed movement is open (between its first active window and its end)."""
        return self._onset is not None and self._sum >= self.min_events()

    def movement_crops(self) -> np.ndarray:
        """The crops of the open movement from its first window to the newest, (n, 2, S, S)."""
        if self._onset is None or not self._buf:
            raise ParameterError("no open movement")
        return np.stack([e.crop for e in self._entries(self._onset, self._buf[-1].index + 1)])

    @property
    def ceiling(self) -> float:
        """The rest ceiling: the ``quantile`` of the filtered activity of recent windows outside movements."""
        return float(np.quantile(self._quiet, self.config.quantile)) if self._quiet else 0.0

    def level(self) -> float:
        """Filtered activity that makes a window active now."""
        if self._level is None:
            self._level = max(float(self.config.threshold), self.config.ratio * self.ceiling)
        return self._level

    def min_events(self) -> float:
        """Filtered events that confirm a movement now."""
        return max(float(self.config.min_events), self.config.min_levels * self.level())

    def _rest(self, values) -> None:
        self._quiet.extend(int(v) for v in values)
        self._level = None

    # -------------------------------------------------------------------------------------------- input
    def push(self, index: int, t0: int, t1: int, raw: int, filtered: int, crop: np.ndarray) -> list[Spotted]:
        """One window: its index, sensor-µs bounds, raw and filtered activity in the box and its crop (copied).
        Returns the movements whose verdict windows are now complete."""
        if self._buf and index != self._buf[-1].index + 1:
            out = self.end("gap")
            self._buf.clear()
        else:
            out = []
        self._buf.append(_Entry(int(index), int(t0), int(t1), int(raw), int(filtered), np.array(crop, copy=True)))
        cfg = self.config
        largest = self._largest if self._onset is not None else 0
        if index - self._previous[0] <= cfg.refractory:
            largest = max(largest, self._previous[1])
        level = max(self.level(), cfg.relative * largest)
        if filtered >= level:
            if self._onset is None:
                self._onset = index
            self._last_active = index
            self._largest = max(self._largest, int(filtered))
            self._sum += int(filtered)
            if not self.moving:
                self._candidate.append(int(filtered))
            else:
                self._candidate.clear()
            if index - self._onset + 1 >= cfg.max_windows:
                self._close("max_windows")
        else:
            self._rest([filtered])
            if self._onset is not None and index - self._last_active >= cfg.hold:
                self._close("")
        return out + self._ready(index, final=False)

    def end(self, reason: str = "end") -> list[Spotted]:
        """The stream breaks (gap, lost face, end): close an open movement and judge every pending one with
        the windows there are."""
        if self._onset is not None:
            self._close(reason)
        last = self._buf[-1].index if self._buf else 0
        return self._ready(last, final=True)

    def reset(self) -> None:
        """Forget everything (the background included)."""
        self._buf.clear()
        self._quiet.clear()
        self._candidate.clear()
        self._level = None
        self._previous = (-(10**9), 0)
        self._onset = self._last_active = None
        self._largest = self._sum = 0
        self._pending.clear()

    # -------------------------------------------------------------------------------------------- inner
    def _entries(self, first: int, last: int) -> list[_Entry]:
        """Buffered windows with first <= index < last."""
        if not self._buf:
            return []
        base = self._buf[0].index
        lo, hi = max(first - base, 0), min(last - base, len(self._buf))
        return [self._buf[i] for i in range(lo, hi)] if hi > lo else []

    def _close(self, forced: str) -> None:
        cfg = self.config
        onset, offset, events, largest = self._onset, self._last_active, self._sum, self._largest
        confirmed = self.moving
        self._onset = self._last_active = None
        self._largest = self._sum = 0
        if not confirmed:
            self._rest(self._candidate)
            self._candidate.clear()
            self.dropped += 1
            return
        self._candidate.clear()
        self._previous = (offset, largest)
        moving = self._entries(onset, offset + 1)
        mass = np.cumsum([e.filtered for e in moving])
        lo = int(np.searchsorted(mass, cfg.trim * mass[-1], side="right"))
        hi = int(np.searchsorted(mass, (1.0 - cfg.trim) * mass[-1], side="left"))
        moving = moving[lo : max(hi, lo) + 1]
        onset, offset = moving[0].index, moving[-1].index
        around = self._entries(onset - cfg.pad, offset + cfg.pad + 1)
        peak = around[movement_peak([e.raw for e in around])].index
        first = peak - cfg.window // 2
        self._pending.append(
            Spotted(
                onset=onset,
                offset=offset,
                peak=peak,
                first=first,
                last=first + cfg.window,
                onset_us=moving[0].t0 - cfg.extend * (moving[0].t1 - moving[0].t0),
                apex_us=(self._entries(peak, peak + 1)[0].t0 + self._entries(peak, peak + 1)[0].t1) // 2,
                offset_us=moving[-1].t1 + cfg.extend * (moving[-1].t1 - moving[-1].t0),
                events=int(events),
                forced=forced,
            )
        )

    def _ready(self, index: int, final: bool) -> list[Spotted]:
        """Pending movements whose verdict window is in the buffer (or, ``final``, clamped into it)."""
        out, keep = [], []
        for s in self._pending:
            if not final and index < s.last - 1:
                keep.append(s)
                continue
            base, top = self._buf[0].index, self._buf[-1].index + 1
            n = self.config.window
            first = min(max(s.first, base), max(top - n, base))  # clamped into the buffer, as training clamps
            entries = self._entries(first, first + n)
            crops = np.stack([e.crop for e in entries])
            if len(entries) < n:  # a buffer shorter than the window: empty frames after, as training pads
                crops = np.concatenate([crops, np.zeros((n - len(entries),) + crops.shape[1:], crops.dtype)])
            s.first, s.last, s.crops, s.decided_us = first, first + n, crops, self._buf[-1].t1
            self.spotted += 1
            out.append(s)
        self._pending = keep
        return out
