"""EventPacket streams in bags: decoding with the payload codecs, per-topic counts and sequence gaps."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from microexp.bags.reader import Bag
from microexp.events.stream import Packet, SeqTracker, StreamReader

IMAGE = "sensor_msgs/msg/Image"


def iter_event_packets(bag: Bag, topic: str) -> Iterator[tuple[object, np.ndarray, np.ndarray]]:
    """``(message, events, triggers)`` for every EventPacket of ``topic``, decoded by one
    :class:`~microexp.events.stream.StreamReader` (an undecodable payload raises its FormatError)."""
    reader = StreamReader(strict=True)
    for _, msgtype, _, raw in bag.messages([topic]):
        msg = bag.deserialize(raw, msgtype)
        decoded = reader.feed(Packet.from_msg(msg))
        yield msg, decoded.events, decoded.triggers


@dataclass
class StreamStats:
    """Counts of one event stream; ``update`` per packet."""

    messages: int = 0
    events: int = 0
    on_events: int = 0
    triggers: int = 0
    t_first_us: int | None = None
    t_last_us: int | None = None
    seq_gaps: int = 0
    seq_missing: int = 0
    width: int = 0
    height: int = 0
    encoding: str = ""
    bytes: int = 0
    _seq: SeqTracker = field(default_factory=SeqTracker, repr=False)

    def update(self, msg, events: np.ndarray, triggers: np.ndarray) -> None:
        self.messages += 1
        self.width, self.height, self.encoding = int(msg.width), int(msg.height), str(msg.encoding)
        self.bytes += len(msg.events)
        self._seq.update(int(msg.seq))
        self.seq_gaps, self.seq_missing = self._seq.gaps, self._seq.missing
        self.add_events(events, triggers)

    def add_events(self, events: np.ndarray, triggers: np.ndarray) -> None:
        n = len(events)
        self.events += n
        self.triggers += len(triggers)
        if n:
            self.on_events += int(np.count_nonzero(events["p"]))
            t0, t1 = int(events["t"][0]), int(events["t"][-1])
            self.t_first_us = t0 if self.t_first_us is None else min(self.t_first_us, t0)
            self.t_last_us = t1 if self.t_last_us is None else max(self.t_last_us, t1)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
