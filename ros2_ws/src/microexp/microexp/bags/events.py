"""EventPacket streams in bags: decoding with the payload codecs, per-topic counts and sequence gaps."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from microexp.bags.reader import Bag
from microexp.events.codecs import make_decoder

EVENT_PACKET = "event_camera_msgs/msg/EventPacket"
IMAGE = "sensor_msgs/msg/Image"


def iter_event_packets(bag: Bag, topic: str) -> Iterator[tuple[object, np.ndarray, np.ndarray]]:
    """``(message, events, triggers)`` for every EventPacket of ``topic``, decoded by one stateful decoder."""
    decoder = None
    encoding = None
    for _, msgtype, _, raw in bag.messages([topic]):
        msg = bag.deserialize(raw, msgtype)
        if decoder is None or msg.encoding != encoding:
            encoding = msg.encoding
            decoder = make_decoder(encoding, int(msg.width), int(msg.height))
        events, triggers = decoder.decode(msg.events, time_base=int(msg.time_base))
        yield msg, events, triggers


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
    _last_seq: int | None = field(default=None, repr=False)

    def update(self, msg, events: np.ndarray, triggers: np.ndarray) -> None:
        self.messages += 1
        self.width, self.height, self.encoding = int(msg.width), int(msg.height), str(msg.encoding)
        self.bytes += len(msg.events)
        seq = int(msg.seq)
        if self._last_seq is not None and seq != self._last_seq + 1:
            self.seq_gaps += 1
            if seq > self._last_seq:
                self.seq_missing += seq - self._last_seq - 1
        self._last_seq = seq
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
