"""Message classes by name, and the one builder of ``event_camera_msgs/msg/EventPacket`` messages."""

from __future__ import annotations

import importlib

from microexp.bags.cdr import EVENT_PACKET  # noqa: F401 - the type name, for the modules that import it from here


def msg_class(msgtype: str):
    """The message class of ``msgtype`` ('package/msg/Type'); ValueError naming it when it is not one."""
    parts = msgtype.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{msgtype!r} is not a message type 'package/msg/Type'")
    pkg, kind, name = parts
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError):
        raise ValueError(f"{msgtype!r}: no such message type is installed") from None


def event_packet(
    stamp: tuple[int, int] | int,
    frame_id: str,
    width: int,
    height: int,
    seq: int,
    events,
    encoding: str = "evt3",
    time_base: int = 0,
):
    """An EventPacket: ``stamp`` as (sec, nanosec) or nanoseconds, ``events`` the encoded payload (bytes-like)."""
    from event_camera_msgs.msg import EventPacket

    msg = EventPacket()
    sec, nanosec = stamp if isinstance(stamp, tuple) else divmod(int(stamp), 1_000_000_000)
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(sec), int(nanosec)
    msg.header.frame_id = frame_id
    msg.width, msg.height = int(width), int(height)
    msg.seq, msg.time_base, msg.encoding, msg.is_bigendian = int(seq), int(time_base), encoding, False
    msg.events = events if isinstance(events, bytes) else bytes(events)
    return msg
