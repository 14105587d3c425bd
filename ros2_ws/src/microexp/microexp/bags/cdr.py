"""Reading a few fields straight out of serialized (CDR) messages, without deserializing them (no rclpy).

The recorder and the counting subscriber take messages as CDR bytes; for an EventPacket they need its
``seq`` (gaps = packets lost on the way) and the length of its payload, not the decoded message.
"""

from __future__ import annotations

import struct

from microexp.events.stream import SeqTracker  # noqa: F401 - seq counting lives with the stream reader

EVENT_PACKET = "event_camera_msgs/msg/EventPacket"  # the ecosystem's event message (wire-compatible)


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


def _cdr_string(text: str, pos: int) -> tuple[bytes, int]:
    """A CDR string (uint32 length with NUL, bytes, NUL) aligned at body offset ``pos``; (bytes, new pos)."""
    data = text.encode()
    pad = _align(pos, 4) - pos
    out = b"\0" * pad + struct.pack("<I", len(data) + 1) + data + b"\0"
    return out, pos + len(out)


def event_packet_cdr(
    stamp_ns: int,
    frame_id: str,
    width: int,
    height: int,
    seq: int,
    parts,
    encoding: str = "evt3",
    time_base: int = 0,
    is_bigendian: bool = False,
) -> bytes:
    """A serialized ``event_camera_msgs/msg/EventPacket`` (little-endian plain CDR, as rclpy serializes it)
    whose ``events`` are the bytes of ``parts`` (bytes-like pieces, e.g. uint16 arrays) one after another: the
    payload is copied once, into the message. ``stamp_ns`` is the header stamp in ns."""
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    head = [b"\x00\x01\x00\x00", struct.pack("<iI", sec, nsec)]
    pos = 8
    frame, pos = _cdr_string(frame_id, pos)
    head.append(frame)
    pad = _align(pos, 4) - pos
    head.append(b"\0" * pad + struct.pack("<II", height, width))
    pos += pad + 8
    pad = _align(pos, 8) - pos
    head.append(b"\0" * pad + struct.pack("<QQ", seq, time_base))
    pos += pad + 16
    enc, pos = _cdr_string(encoding, pos)
    head.append(enc)
    head.append(b"\x01" if is_bigendian else b"\x00")
    pos += 1
    size = sum(memoryview(p).nbytes for p in parts)
    pad = _align(pos, 4) - pos
    head.append(b"\0" * pad + struct.pack("<I", size))
    return b"".join([*head, *parts])
