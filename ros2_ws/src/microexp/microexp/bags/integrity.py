"""Integrity of a bag's messages, checked in recording order (no rclpy).

**Checksums of sqlite3 bags.** The project's sqlite3 writer keeps a table beside rosbag2's ``messages``::

    CREATE TABLE microexp_checksums(message_id INTEGER PRIMARY KEY, crc32 INTEGER NOT NULL)

one row per message, inserted in the same transaction as the message itself: ``crc32`` is the CRC-32 (zlib) of
the topic name (UTF-8), the timestamp (int64, little-endian) and the serialized bytes, in that order. A
recorder killed with SIGKILL leaves a database whose last committed transaction holds messages and their
checksums together, so what was written before the kill verifies as far as it goes. Other readers (rosbag2,
rosbags) ignore the extra table. :func:`sqlite_messages` checks every row against it; a bag without the
table (a third-party bag) is *unverified*, not *ok*. MCAP bags carry a CRC-32 per chunk instead
(:mod:`microexp.bags.writer` fills it in; a chunk with CRC 0 is unverified).

**Obvious damage** (:class:`MessageChecker`, for every storage, checksums or not), each an error naming the
file, the topic and the message's index in that topic (counted from 0 in recording order):

- a time outside the bag's recorded range (metadata.yaml's per-file or whole-bag start and duration; an MCAP
  chunk's own message start and end time);
- a time that goes back by more than ``tolerance_ns`` (1 s) against the topic's previous message, when it is a
  single message out of line: the topic's next message returns to the old timeline (a damaged time that jumped
  back), or the message after a jump forward comes back (a damaged time that jumped forward). A step back that
  the topic goes on from is the recorder's clock being set back (a recorded clock jump, played over by
  :mod:`microexp.playback`), not damage;
- a payload whose size does not fit its type: an EventPacket or Image whose byte array's length prefix
  disagrees with the bytes the message holds (cut, or with bytes left over), an Image whose ``data`` is not
  ``step x height`` bytes.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from microexp.bags.cdr import EVENT_PACKET
from microexp.errors import FormatError

CHECKSUM_TABLE = "microexp_checksums"
CHECKSUM_SCHEMA = f"CREATE TABLE IF NOT EXISTS {CHECKSUM_TABLE}(message_id INTEGER PRIMARY KEY, crc32 INTEGER NOT NULL)"
TIME_TOLERANCE_NS = 1_000_000_000

IMAGE = "sensor_msgs/msg/Image"
_TIME = struct.Struct("<q")


def message_crc(topic: str, t_ns: int, data) -> int:
    """CRC-32 of one message as the checksum table stores it (topic name, int64 LE time, bytes)."""
    return zlib.crc32(data, zlib.crc32(topic.encode() + _TIME.pack(int(t_ns))))


def _seconds(t_ns: int) -> str:
    return f"{t_ns / 1e9:.3f} s"


class MessageChecker:
    """Feed every message of one data file in recording order to :meth:`check`; call :meth:`finish` at the end.

    ``lo_ns``/``hi_ns``: the file's recorded time range (None: unknown). Raises FormatError naming ``file``,
    the topic and the message index at the first problem (see the module docstring)."""

    def __init__(self, file, lo_ns: int | None = None, hi_ns: int | None = None, tolerance_ns: int = TIME_TOLERANCE_NS):
        self.file = Path(file)
        self.lo_ns, self.hi_ns = lo_ns, hi_ns
        self.tol = int(tolerance_ns)
        self.counts: dict[str, int] = {}
        self._last: dict[str, list] = {}  # topic -> its last two times [t(j-2), t(j-1)]
        self._step: dict[str, tuple] = {}  # topic -> (index, time, previous time) of a step back to confirm
        self.clock_steps: list[dict] = []  # steps back that the recording went on from

    def fail(self, topic: str, index: int, t_ns: int, reason: str) -> FormatError:
        return FormatError(self.file, f"{topic} message {index} (time {_seconds(t_ns)}): {reason}")

    def index(self, topic: str) -> int:
        """The index the next message of ``topic`` gets."""
        return self.counts.get(topic, 0)

    def check(self, topic: str, msgtype: str, t_ns: int, data, lo_ns: int | None = None, hi_ns: int | None = None):
        i = self.counts.get(topic, 0)
        self.counts[topic] = i + 1
        for lo, hi, where in (
            (self.lo_ns, self.hi_ns, "the bag's recorded range"),
            (lo_ns, hi_ns, "its chunk's range"),
        ):
            if (lo is not None and t_ns < lo) or (hi is not None and t_ns > hi):
                raise self.fail(
                    topic,
                    i,
                    t_ns,
                    f"lies outside {where} {_seconds(lo or 0)}..{_seconds(hi or 0)}: a damaged timestamp",
                )
        self._check_order(topic, i, t_ns)
        reason = payload_problem(msgtype, data)
        if reason:
            raise self.fail(topic, i, t_ns, f"{reason}: a damaged message")

    def _check_order(self, topic: str, i: int, t: int) -> None:
        last = self._last.setdefault(topic, [])
        step = self._step.pop(topic, None)
        if step is not None:
            j, tj, before = step
            if t >= before - self.tol:  # back on the old timeline: message j alone jumped back
                raise self.fail(
                    topic,
                    j,
                    tj,
                    f"goes back {(before - tj) / 1e9:.3f} s against the message before it while the "
                    "next one does not: a damaged timestamp",
                )
            self.clock_steps.append({"topic": topic, "index": j, "from_ns": before, "to_ns": tj})
        if last and t < last[-1] - self.tol:
            if len(last) == 2 and t >= last[0] - self.tol:  # the message before jumped forward alone
                raise self.fail(
                    topic,
                    i - 1,
                    last[-1],
                    f"lies {(last[-1] - t) / 1e9:.3f} s after the next message of this "
                    "topic while the one before it does not: a damaged timestamp",
                )
            self._step[topic] = (i, t, last[-1])
        last.append(t)
        if len(last) > 2:
            del last[0]

    def finish(self) -> None:
        """A step back on a topic's last message cannot be told from a clock step: taken as one."""
        for topic, (j, tj, before) in self._step.items():
            self.clock_steps.append({"topic": topic, "index": j, "from_ns": before, "to_ns": tj})
        self._step.clear()


# ---------------------------------------------------------------------------------------------- payloads


class _Cdr:
    """A bounds-checked walk over CDR bytes (alignment relative to the 4-byte encapsulation header)."""

    def __init__(self, data):
        self.data = memoryview(data)
        if len(self.data) < 4:
            raise ValueError(f"{len(self.data)} bytes: shorter than the CDR header")
        self.le = self.data[1] & 1 == 1
        self.pos = 4

    def _take(self, n: int, align: int = 1) -> memoryview:
        self.pos += (-(self.pos - 4)) % align
        if self.pos + n > len(self.data):
            raise ValueError(f"needs {n} bytes at offset {self.pos}, the message has {len(self.data)}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return int.from_bytes(self._take(4, 4), "little" if self.le else "big")

    def skip(self, n: int, align: int = 1) -> None:
        self._take(n, align)

    def string(self) -> None:
        n = self.u32()
        self._take(n)

    def header(self) -> None:
        self.skip(8, 4)  # stamp: int32 sec, uint32 nanosec
        self.string()  # frame_id

    def byte_array(self, what: str) -> int:
        n = self.u32()
        have = len(self.data) - self.pos
        if n > have:
            raise ValueError(f"{what} says {n} bytes, the message holds {have}")
        self.pos += n
        return n

    def rest(self) -> int:
        return len(self.data) - self.pos


def payload_problem(msgtype: str, data) -> str:
    """'' when a serialized EventPacket / Image fits its own lengths; else what does not fit."""
    if msgtype not in (EVENT_PACKET, IMAGE):
        return ""
    try:
        cdr = _Cdr(data)
        cdr.header()
        if msgtype == EVENT_PACKET:
            cdr.skip(8, 4)  # height, width
            cdr.skip(16, 8)  # seq, time_base
            cdr.string()  # encoding
            cdr.skip(1)  # is_bigendian
            n = cdr.byte_array("the events array")
            what = f"the events array ({n} bytes)"
        else:
            height = cdr.u32()
            cdr.skip(4)  # width
            cdr.string()  # encoding
            cdr.skip(1)  # is_bigendian
            step = cdr.u32()
            n = cdr.byte_array("the image data")
            if n != step * height:
                return f"image data of {n} bytes, but step x height = {step} x {height} = {step * height}"
            what = f"the image data ({n} bytes)"
    except ValueError as exc:
        return f"payload size does not fit the message type {msgtype.rsplit('/', 1)[-1]}: {exc}"
    if cdr.rest() > 7:  # CDR pads to at most 8
        return f"{cdr.rest()} bytes follow {what}, the last field of {msgtype.rsplit('/', 1)[-1]}"
    return ""


# ---------------------------------------------------------------------------------------------- sqlite3


def has_checksums(conn) -> bool:
    return bool(
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (CHECKSUM_TABLE,)).fetchone()
    )


def sqlite_messages(conn, file, checker: MessageChecker, checksums: bool) -> int:
    """Check every message of an open sqlite3 bag in recording (row id) order: its checksum (when ``checksums``)
    and ``checker``'s checks. Returns the number of messages checked; raises FormatError at the first problem."""
    import sqlite3

    crc_col = "c.crc32" if checksums else "NULL"
    join = f"LEFT JOIN {CHECKSUM_TABLE} c ON c.message_id = m.id" if checksums else ""
    sql = (
        f"SELECT m.id, t.name, t.type, m.timestamp, m.data, {crc_col} FROM messages m "
        f"LEFT JOIN topics t ON t.id = m.topic_id {join} ORDER BY m.id"
    )
    n = 0
    last = None
    try:
        for mid, topic, msgtype, t_ns, data, crc in conn.execute(sql):
            if topic is None:
                raise FormatError(file, f"damaged sqlite3 bag: message row {mid} names no topic of the bag")
            i = checker.index(topic)
            if checksums:
                if crc is None:
                    raise checker.fail(topic, i, t_ns, "damaged sqlite3 bag: the message has no checksum row")
                got = message_crc(topic, t_ns, data)
                if got != crc & 0xFFFFFFFF:
                    raise checker.fail(
                        topic,
                        i,
                        t_ns,
                        f"damaged sqlite3 bag: checksum {got:08x} does not match the stored "
                        f"{crc & 0xFFFFFFFF:08x} (its time, topic or bytes changed)",
                    )
            checker.check(topic, msgtype, t_ns, data)
            last = (topic, i)
            n += 1
        if checksums:
            orphans = conn.execute(
                f"SELECT count(*) FROM {CHECKSUM_TABLE} WHERE message_id NOT IN (SELECT id FROM messages)"
            ).fetchone()[0]
            if orphans:
                raise FormatError(file, f"damaged sqlite3 bag: {orphans} checksummed messages are missing from it")
    except sqlite3.Error as exc:
        after = f" after {last[0]} message {last[1]}" if last else ""
        raise FormatError(file, f"damaged sqlite3 bag: the messages{after} are unreadable ({exc})") from None
    checker.finish()
    return n
