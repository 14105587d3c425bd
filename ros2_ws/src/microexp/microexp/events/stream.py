"""One EventPacket stream, read packet by packet: the payload decoder, ``seq`` gaps, stream changes, resets.

Every reader of EventPackets (bag reading, the dataset builder, the live inference runner, the counting
subscriber) feeds the packets of one stream (one topic, or one role of a recording) to a
:class:`StreamReader`:

- **decoder per encoding and geometry**: the stream is keyed by ``(encoding, width, height)``; the first
  packet, and any packet whose key differs from the previous one (a stream change: another driver, another
  sensor mode), opens a fresh decoder (:func:`microexp.events.codecs.make_decoder`) and forgets the previous
  ``seq``, so a change is not also counted as a gap;
- **seq gaps**: ``seq`` not the previous + 1 within a stream is a gap; skipped numbers forward are missing
  packets, a step backwards a restart (:class:`SeqTracker`); the decoder keeps its state across a gap;
- **format errors**: a payload the decoder rejects (:class:`~microexp.errors.FormatError`) is counted and
  the decoder reset (its carried state, e.g. EVT3's time high bits, may be what went wrong); a ``strict``
  reader raises it after that, for files where a damaged payload is an error.

Packets are plain data (:class:`Packet`, or :meth:`Packet.from_msg` of any object with the EventPacket
fields: rclpy messages, messages deserialized from bags), so the reader needs no ROS.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional

import numpy as np

from microexp.errors import FormatError
from microexp.events.codecs import make_decoder
from microexp.events.dtype import empty_events, empty_triggers

__all__ = ["Packet", "Decoded", "SeqTracker", "StreamReader"]


class SeqTracker:
    """Gaps in a topic's ``seq`` numbers: ``gaps`` (times the next seq was not the previous + 1), ``missing``
    (seq numbers skipped forward: packets that never arrived), ``restarts`` (seq went backwards: a publisher
    restarted), ``streams`` (runs of seq told apart).

    A DDS writer delivers in order, so a seq that continues a run from before a forward jump shows that the jump
    was another publisher's stream on the same topic, not a loss: the jump's ``missing`` is taken back and the two
    runs are counted apart (rclpy does not give the writer of a message, so publishers are told apart by the
    continuity of their numbers). At most :attr:`MAX_RUNS` runs are followed."""

    MAX_RUNS = 8
    __slots__ = ("runs", "gaps", "missing", "restarts", "streams", "first")

    def __init__(self):
        self.runs: list[list] = []  # [last seq, [(seq before a forward jump, that jump's missing), ...]]
        self.first: int | None = None
        self.gaps = self.missing = self.restarts = 0
        self.streams = 0

    @property
    def last(self) -> int | None:
        """The seq of the run that took the last packet (None before the first)."""
        return self.runs[-1][0] if self.runs else None

    def _new_run(self, seq: int) -> None:
        self.runs.append([seq, []])
        self.streams += 1
        del self.runs[: -self.MAX_RUNS]

    def _touch(self, run: list[int]) -> None:
        self.runs.remove(run)
        self.runs.append(run)

    def update(self, seq: int) -> int:
        """Take the next ``seq``; returns the packets it shows missing (0 without a gap, -1 for a restart)."""
        if self.first is None:
            self.first = seq
        if not self.runs:
            self._new_run(seq)
            return 0
        for run in reversed(self.runs):
            if run[0] + 1 == seq:  # the next of a run
                run[0] = seq
                self._touch(run)
                return 0
        for run in reversed(self.runs):
            jump = next((j for j in run[1] if j[0] + 1 == seq), None)
            if jump is not None:  # continues a run from before one of its jumps: that jump was another
                self.missing -= jump[1]  # publisher's stream starting, not a loss
                self.gaps -= 1
                run[1].remove(jump)
                self._new_run(seq)
                return 0
        below = [r for r in self.runs if r[0] < seq]
        self.gaps += 1
        if below:  # a forward jump of the closest run below: packets that never arrived
            run = max(below, key=lambda r: r[0])
            missing = seq - run[0] - 1
            run[1] = [*run[1][-15:], (run[0], missing)]
            run[0] = seq
            self.missing += missing
            self._touch(run)
            return missing
        self.restarts += 1  # backwards: the publisher restarted (or a second one started)
        self._new_run(seq)
        return -1

    def forget_last(self) -> None:
        """The next seq starts a new run (a new stream): it is not compared with the previous ones."""
        self.runs = []

    def as_dict(self) -> dict:
        return {"seq_gaps": self.gaps, "seq_missing": self.missing, "seq_restarts": self.restarts}


@dataclass(frozen=True)
class Packet:
    """The fields of an ``event_camera_msgs/msg/EventPacket`` that reading it needs."""

    encoding: str
    width: int
    height: int
    seq: int
    payload: object  #: the payload bytes (bytes-like, or the message's uint8 sequence)
    time_base: int = 0
    stamp_ns: int = 0  #: header.stamp in ns (0 = unset)
    frame_id: str = ""

    @property
    def key(self) -> tuple:
        return self.encoding, self.width, self.height

    @classmethod
    def from_msg(cls, msg) -> "Packet":
        """From an EventPacket message (rclpy, or deserialized from a bag)."""
        stamp = msg.header.stamp
        return cls(
            str(msg.encoding),
            int(msg.width),
            int(msg.height),
            int(msg.seq),
            msg.events,
            int(msg.time_base),
            int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec),
            str(msg.header.frame_id),
        )


def merge_evt3(packets: list) -> list:
    """``packets`` (of one stream, in order) with every run of consecutive EVT3 packets of the same geometry joined
    into one packet (EVT3 is a word stream: the joined payload decodes to the same events as its parts one after
    the other), each paired with how many it joins: ``[(packet, n), ...]``. Other encodings pass one by one."""
    out: list = []
    run: list = []

    def flush():
        if run:
            last = run[-1]
            payload = b"".join(bytes(p.payload) for p in run) if len(run) > 1 else last.payload
            out.append((Packet(last.encoding, last.width, last.height, last.seq, payload, 0, last.stamp_ns,
                               last.frame_id), len(run)))  # fmt: skip
            run.clear()

    for p in packets:
        if p.encoding != "evt3":
            flush()
            out.append((p, 1))
        elif run and p.key != run[-1].key:
            flush()
            run.append(p)
        else:
            run.append(p)
    flush()
    return out


@dataclass
class Decoded:
    """What one packet gave."""

    events: np.ndarray  #: EVENT_DTYPE (empty after a format error)
    triggers: np.ndarray  #: TRIGGER_DTYPE
    opened: bool = False  #: the packet opened a stream (the first packet, or a changed encoding or geometry)
    changed: bool = False  #: it replaced a previous stream (a stream change)
    seq_gap: bool = False  #: its seq was not the previous + 1 of the same stream
    missing: int = 0  #: packets skipped forward by that gap
    error: Optional[FormatError] = None  #: the payload was undecodable (the decoder was reset)


class StreamReader:
    """Decodes the packets of one stream in order (see the module docstring).

    ``counts``: ``packets``, ``events``, ``triggers``, ``decode_errors``, ``stream_changes``; ``seq`` is the
    stream's :class:`SeqTracker` (``gaps``, ``missing``, ``restarts``, summed over stream changes)."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.key: Optional[tuple] = None
        self.decoder = None
        self.seq = SeqTracker()
        self.counts: Counter = Counter(
            {k: 0 for k in ("packets", "events", "triggers", "decode_errors", "stream_changes")}
        )

    def open(self, encoding: str, width: int, height: int) -> bool:
        """Make the decoder of ``(encoding, width, height)`` unless it is the current stream's; True when a
        stream was opened. Raises :class:`~microexp.errors.ParameterError` for an unknown encoding or a bad
        geometry, leaving the current stream as it was."""
        key = (str(encoding), int(width), int(height))
        if key == self.key:
            return False
        decoder = make_decoder(*key)
        if self.key is not None:
            self.counts["stream_changes"] += 1
        self.key, self.decoder = key, decoder
        self.seq.forget_last()
        return True

    def reset(self) -> None:
        """Forget the decoder's carried state and the previous seq (the stream restarts)."""
        if self.decoder is not None:
            self.decoder.reset()
        self.seq.forget_last()

    def feed(self, packet: Packet) -> Decoded:
        """Decode the next packet of the stream."""
        had_stream = self.key is not None
        opened = self.open(packet.encoding, packet.width, packet.height)
        self.counts["packets"] += 1
        missing = self.seq.update(int(packet.seq))
        out = Decoded(empty_events(), empty_triggers(), opened, opened and had_stream, missing != 0, max(missing, 0))
        try:
            events, triggers = self.decoder.decode(packet.payload, time_base=int(packet.time_base))
        except FormatError as exc:
            self.counts["decode_errors"] += 1
            self.decoder.reset()
            if self.strict:
                raise
            out.error = exc
            return out
        self.counts["events"] += int(events.shape[0])
        self.counts["triggers"] += int(triggers.shape[0])
        out.events, out.triggers = events, triggers
        return out
