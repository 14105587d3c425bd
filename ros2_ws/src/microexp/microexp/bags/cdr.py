"""Reading a few fields straight out of serialized (CDR) messages, without deserializing them (no rclpy).

The recorder and the counting subscriber take messages as CDR bytes; for an EventPacket they need its
``seq`` (gaps = packets lost on the way) and the length of its payload, not the decoded message.
"""

from __future__ import annotations

import struct

from microexp.events.stream import SeqTracker  # noqa: F401 - seq counting lives with the stream reader


def _align(pos: int, n: int) -> int:
    return (pos + n - 1) & ~(n - 1)


def event_packet_fields(raw) -> tuple[int, int, str]:
    """``(seq, payload_bytes, encoding)`` of a serialized ``event_camera_msgs/msg/EventPacket``.

    Layout (XCDR1, after the 4-byte encapsulation header; alignment counted from the body): header
    (stamp sec int32, nanosec uint32, frame_id string), height uint32, width uint32, seq uint64, time_base
    uint64, encoding string, is_bigendian uint8, events sequence<uint8>. Raises ValueError when ``raw`` is
    too short or not little/big-endian plain CDR."""
    mv = memoryview(raw)
    if len(mv) < 4 or mv[0] != 0 or mv[1] not in (0, 1):
        raise ValueError("not a plain CDR message")
    end = "<" if mv[1] == 1 else ">"
    body = mv[4:]
    try:
        (n,) = struct.unpack_from(end + "I", body, 8)  # frame_id length, NUL included
        pos = _align(12 + n, 4) + 8  # height, width
        pos = _align(pos, 8)
        seq, _time_base = struct.unpack_from(end + "QQ", body, pos)
        pos += 16
        (n,) = struct.unpack_from(end + "I", body, pos)
        encoding = bytes(body[pos + 4 : pos + 4 + max(n - 1, 0)]).decode("ascii", "replace")
        pos = _align(pos + 4 + n + 1, 4)  # + is_bigendian
        (payload,) = struct.unpack_from(end + "I", body, pos)
    except struct.error:
        raise ValueError("truncated EventPacket") from None
    return int(seq), int(payload), encoding
