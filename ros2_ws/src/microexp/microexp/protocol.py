"""The paper's elicitation protocol (§3.3) as a UI-agnostic state machine (no rclpy).

For each Action Unit: its name and description, a demonstration prompt, a countdown (the segment starts
recording when the countdown appears, as in the paper), the performance, a double beep, and rest (the
segment is closed and kept). Each AU is performed ``takes`` times in a row (trials ``first_trial``,
``first_trial + 1``, ...; a redone take gets the next trial number). The experimenter can redo (the previous take is marked redone and the AU runs
again), pause, skip, or quit. A :class:`ProtocolRunner` is driven by ``tick(now)``; a recorder is any object
with ``start_segment(au, trial) -> id``, ``stop_segment(status)`` and ``redo_segment() -> id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from microexp.aus import AU_CODES, au_index, au_label, au_name


class Phase(str, Enum):
    IDLE = "idle"
    DEMO = "demo"
    COUNTDOWN = "countdown"
    PERFORM = "perform"
    BEEP = "beep"
    REST = "rest"
    PAUSED = "paused"
    DONE = "done"


@dataclass
class Timing:
    """Seconds of each phase (paper: a 3x demonstration clip, a countdown, about 2.5 s of performance, rest)."""

    demo_s: float = 4.0
    countdown_s: float = 3.0
    perform_s: float = 2.5
    beep_s: float = 0.4
    rest_s: float = 3.0

    def scaled(self, factor: float) -> "Timing":
        return Timing(*(v * factor for v in (self.demo_s, self.countdown_s, self.perform_s, self.beep_s, self.rest_s)))


DESCRIPTIONS = {
    "AU2": "raise the outer part of both eyebrows",
    "AU4": "lower and draw the eyebrows together",
    "AU5": "widen the eyes by raising the upper lids",
    "AU6": "raise the cheeks as in a genuine smile",
    "AU9": "wrinkle the nose",
    "AU12": "pull the lip corners up and back (smile)",
    "AU15": "pull the lip corners down",
    "AU17": "push the chin boss up",
    "AU23": "tighten the lips",
    "AU26": "let the jaw drop, lips parted",
    "AU41": "let the upper lids droop",
    "AU43": "close the eyes",
    "AU45": "blink once",
    "AU51": "turn the head to the left",
    "AU52": "turn the head to the right",
    "AU53": "tilt the head up",
    "AU54": "tilt the head down",
    "AU61": "look to the left (eyes only)",
    "AU62": "look to the right (eyes only)",
    "AU63": "look up (eyes only)",
    "AU64": "look down (eyes only)",
}


def parse_aus(text: str | None) -> list[str]:
    """'AU2,AU12,45' -> ['AU2', 'AU12', 'AU45']; None or 'all' -> the 21 AUs of Table 1 in order."""
    if not text or text.strip().lower() == "all":
        return [f"AU{c}" for c in AU_CODES]
    return [au_label(au_index(part)) for part in text.split(",") if part.strip()]


@dataclass
class ProtocolRunner:
    aus: list[str]
    recorder: object
    timing: Timing = field(default_factory=Timing)
    on_event: object = None  # callable(kind: str, info: dict) for UIs: 'phase', 'beep', 'segment', 'done'
    clock: object = None  # callable() -> now; when given, phases after a blocking recorder call start from it
    index: int = 0
    trial: int = 1
    takes: int = 1  # kept takes wanted per AU
    first_trial: int = 1  # trial number of each AU's first take
    kept: int = 0  # kept takes of the current AU
    phase: Phase = Phase.IDLE
    phase_end: float = 0.0
    paused_from: tuple | None = None
    segment_id: int | None = None
    log: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.takes < 1 or self.first_trial < 0:
            raise ValueError(f"takes must be >= 1 and first_trial >= 0 (got {self.takes}, {self.first_trial})")
        self.trial = self.first_trial

    def _next_au(self) -> None:
        self.index += 1
        self.trial = self.first_trial
        self.kept = 0

    @property
    def au(self) -> str | None:
        return self.aus[self.index] if self.index < len(self.aus) else None

    def _emit(self, kind: str, **info) -> None:
        info.update(au=self.au, phase=self.phase.value, trial=self.trial)
        self.log.append((kind, dict(info)))
        if self.on_event:
            self.on_event(kind, info)

    def _enter(self, phase: Phase, now: float, duration: float = 0.0) -> None:
        self.phase, self.phase_end = phase, now + duration
        extra = {}
        if phase == Phase.DEMO and self.au:
            extra = {"name": au_name(self.au), "description": DESCRIPTIONS.get(self.au, "")}
        self._emit("phase", seconds=duration, **extra)

    def start(self, now: float) -> None:
        """Begin (or, after the last AU, finish)."""
        if self.au is None:
            self._enter(Phase.DONE, now)
            self._emit("done")
            return
        self._enter(Phase.DEMO, now, self.timing.demo_s)

    def tick(self, now: float) -> Phase:
        """Advance the state machine to ``now``; returns the current phase."""
        while self.phase not in (Phase.IDLE, Phase.PAUSED, Phase.DONE) and now >= self.phase_end:
            t = self.phase_end
            if self.phase == Phase.DEMO:
                self.segment_id = self.recorder.start_segment(self.au, self.trial)
                if self.clock is not None:  # starting may have waited (for the recorder, for the subject)
                    t = max(t, self.clock())
                self._emit("segment", action="start", segment_id=self.segment_id)
                self._enter(Phase.COUNTDOWN, t, self.timing.countdown_s)
            elif self.phase == Phase.COUNTDOWN:
                self._enter(Phase.PERFORM, t, self.timing.perform_s)
            elif self.phase == Phase.PERFORM:
                self._emit("beep", count=2)
                self._enter(Phase.BEEP, t, self.timing.beep_s)
            elif self.phase == Phase.BEEP:
                self.recorder.stop_segment("kept")
                self.kept += 1
                self._emit("segment", action="stop", segment_id=self.segment_id, status="kept")
                self._enter(Phase.REST, t, self.timing.rest_s)
            elif self.phase == Phase.REST:
                if self.kept < self.takes:  # the same AU again
                    self.trial += 1
                else:
                    self._next_au()
                self.start(t)
        return self.phase

    # -- experimenter keys -------------------------------------------------------------------------------
    def redo(self, now: float) -> None:
        """The take in progress (or the one just finished) is marked redone; the AU runs again."""
        if self.phase in (Phase.COUNTDOWN, Phase.PERFORM, Phase.BEEP):
            self.recorder.stop_segment("redone")
        elif self.phase == Phase.REST and self.index < len(self.aus):
            self.recorder.mark_redone(self.segment_id)
            self.kept -= 1
        else:
            return
        self._emit("segment", action="redo", segment_id=self.segment_id, status="redone")
        self.trial += 1
        self._enter(Phase.DEMO, now, self.timing.demo_s)

    def pause(self, now: float) -> None:
        if self.phase == Phase.PAUSED:
            phase, remaining = self.paused_from
            self.phase, self.phase_end = phase, now + remaining
            self._emit("phase", resumed=True)
        elif self.phase not in (Phase.IDLE, Phase.DONE):
            self.paused_from = (self.phase, max(0.0, self.phase_end - now))
            self.phase = Phase.PAUSED
            self._emit("phase", paused=True)

    def skip(self, now: float) -> None:
        if self.phase in (Phase.COUNTDOWN, Phase.PERFORM, Phase.BEEP):
            self.recorder.stop_segment("discarded")
            self._emit("segment", action="stop", segment_id=self.segment_id, status="discarded")
        if self.phase != Phase.DONE:
            self._next_au()
            self.start(now)

    def quit(self, now: float) -> None:
        if self.phase in (Phase.COUNTDOWN, Phase.PERFORM, Phase.BEEP):
            self.recorder.stop_segment("discarded")
        self.index = len(self.aus)
        self._enter(Phase.DONE, now)
        self._emit("done", quit=True)
