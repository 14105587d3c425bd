"""Writing rosbag2 bags on a thread of their own behind a bounded queue (no rclpy).

The recorder hands over the serialized CDR bytes exactly as they arrived; ``put`` never blocks: when the
queue's byte budget is spent, the message is dropped and counted. Each segment is one bag folder
(mcap by default, sqlite3 as an option), split further by size or duration as a safety net. A write
error (disk full, file-size limit) closes the segment, is reported through ``on_error``, and the writer
drops messages until the next segment opens; bags already closed are untouched.

Files and folders are created owner-only (0700 / 0600): recordings of faces are biometric data.

Integrity: MCAP chunks are written with the CRC-32 of their records (rosbags' writer leaves it 0, "not
computed"), so readers can tell a damaged chunk; sqlite3 bags get a CRC-32 per message in a table of their own,
written in the message's transaction (:mod:`microexp.bags.integrity`). sqlite3 bags are committed every
``commit_s`` (1 s): a
recorder killed with SIGKILL leaves a bag that holds everything up to its last commit (no metadata.yaml;
:class:`~microexp.bags.reader.Bag` reads it as ``truncated``); the messages since that commit are lost.
A failing callback (``on_error``/``on_closed``) is reported in ``errors`` and never stops the writer thread.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
import time
import types
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rosbags.rosbag2 import StoragePlugin, Writer

from microexp.bags.integrity import CHECKSUM_SCHEMA, CHECKSUM_TABLE, message_crc
from microexp.bags.types import typestore
from microexp.errors import ParameterError

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


@dataclass
class TopicCounters:
    received: int = 0
    written: int = 0
    dropped: int = 0  # lost: queue over its byte budget, or a write that failed
    outside: int = 0  # arrived while no segment was open (not recorded, by design)
    bytes: int = 0


@dataclass
class BagInfo:
    """One closed (or failed) bag of a segment."""

    path: str
    segment: str
    messages: int = 0
    bytes: int = 0
    t_first_ns: int | None = None
    t_last_ns: int | None = None
    error: str = ""
    counts: dict = field(default_factory=dict)


class SegmentWriter:
    """Bag writer thread. ``open_segment(name)``, ``put(topic, t_ns, data)``, ``close_segment()``, ``stop()``.

    Parameters
    ----------
    root: folder that receives one bag folder per segment (and split).
    topics: ``{topic: msgtype}`` of everything that may be written.
    storage: "mcap" or "sqlite3".
    queue_bytes: byte budget of the queue; beyond it ``put`` drops and counts.
    split_bytes / split_seconds: start a new bag of the same segment past this size / duration (0 = never).
    on_error: called (from the writer thread) with a one-line message when a bag fails.
    on_closed: called with the :class:`BagInfo` of every bag closed.
    """

    def __init__(
        self,
        root,
        topics: dict[str, str],
        storage: str = "mcap",
        queue_bytes: int = 512 << 20,
        split_bytes: int = 0,
        split_seconds: float = 0.0,
        on_error: Callable[[str], None] | None = None,
        on_closed: Callable[[BagInfo], None] | None = None,
        commit_s: float = 1.0,
    ):
        if storage not in STORAGES:
            raise ParameterError(f"storage {storage!r} is not one of {', '.join(STORAGES)}")
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.topics = dict(topics)
        self.storage = storage
        self.queue_bytes = int(queue_bytes)
        self.split_bytes = int(split_bytes)
        self.split_seconds = float(split_seconds)
        self.commit_s = float(commit_s)
        self._last_commit = 0.0
        self.on_error = on_error or (lambda m: None)
        self.on_closed = on_closed or (lambda b: None)
        self.counters: dict[str, TopicCounters] = defaultdict(TopicCounters)
        self.bags: list[BagInfo] = []
        self.errors: list[str] = []
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._accepting = False
        self._since_ns, self._until_ns = 0, 2**63 - 1
        self._last_put = 0.0
        self._thread = threading.Thread(target=self._loop, name="bag_writer", daemon=True)
        self._writer: Writer | None = None
        self._conns: dict = {}
        self._bag: BagInfo | None = None
        self._segment = ""
        self._split_index = 0
        self._opened_at = 0.0
        self._thread.start()

    # -- called from any thread -----------------------------------------------------------------------------
    def put(self, topic: str, t_ns: int, data: bytes) -> bool:
        """Queue one serialized message; False (and counted as dropped) when it cannot be taken."""
        c = self.counters[topic]
        c.received += 1
        n = len(data)
        with self._lock:
            if not self._accepting or topic not in self.topics or t_ns < self._since_ns or t_ns > self._until_ns:
                c.outside += 1
                return False
            if self._pending + n > self.queue_bytes:
                c.dropped += 1
                return False
            self._pending += n
            self._last_put = time.monotonic()
        self._q.put(("msg", topic, t_ns, data))
        return True

    def open_segment(self, name: str, start_ns: int = 0) -> Path:
        """Start writing into a new bag folder ``root/name`` (closing the current one); messages received
        before ``start_ns`` are not part of it."""
        path = self.root / name
        if path.exists():
            raise ParameterError(f"segment {name!r}: {path} exists already")
        with self._lock:
            self._accepting = True
            self._since_ns, self._until_ns = int(start_ns), 2**63 - 1
        self._q.put(("open", name))
        return path

    def close_segment(
        self, wait: bool = True, stop_ns: int | None = None, quiet_s: float = 0.0, max_wait_s: float = 10.0
    ) -> None:
        """Close the segment. With ``stop_ns``: messages received (by DDS) up to ``stop_ns`` that are still on
        their way through a lagging subscriber executor keep being taken until none came for ``quiet_s``
        (at most ``max_wait_s``); messages received after ``stop_ns`` are not part of the segment."""
        if stop_ns is not None and quiet_s > 0:
            with self._lock:
                self._until_ns = int(stop_ns)
                self._last_put = time.monotonic()
            end = time.monotonic() + max_wait_s
            while time.monotonic() < end and time.monotonic() - self._last_put < quiet_s:
                time.sleep(0.02)
        with self._lock:
            self._accepting = False
        done = threading.Event()
        self._q.put(("close", done))
        if wait:
            done.wait()

    def flush(self) -> None:
        done = threading.Event()
        self._q.put(("sync", done))
        done.wait()

    def stop(self) -> None:
        self.close_segment(wait=True)
        self._q.put(("stop",))
        self._thread.join()

    @property
    def queued_bytes(self) -> int:
        return self._pending

    # -- the writer thread -----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            item = self._q.get()
            try:
                if self._step(item):
                    return
            except Exception as exc:  # noqa: BLE001 - the writer thread must outlive any error
                self.errors.append(f"bag writer: {type(exc).__name__}: {exc}")
                if item[0] in ("close", "sync"):
                    item[1].set()
                elif item[0] == "stop":
                    return

    def _step(self, item) -> bool:
        """Handle one queue item; True when the thread is to end."""
        kind = item[0]
        if kind == "msg":
            _, topic, t_ns, data = item
            with self._lock:
                self._pending -= len(data)
            self._write(topic, t_ns, data)
        elif kind == "open":
            self._close_bag()
            self._segment, self._split_index = item[1], 0
            self._open_bag()
        elif kind == "close":
            self._close_bag()
            self._segment = ""
            item[1].set()
        elif kind == "sync":
            self._commit()
            item[1].set()
        elif kind == "stop":
            self._close_bag()
            return True
        return False

    def _notify_error(self, message: str) -> None:
        try:
            self.on_error(message)
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"reporting {message!r} failed: {exc}")

    def _notify_closed(self, bag: "BagInfo") -> None:
        try:
            self.on_closed(bag)
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"{bag.path}: recording its close failed: {exc}")

    def _commit(self) -> None:
        """sqlite3: commit what was written, so a killed process keeps it."""
        self._last_commit = time.monotonic()
        storage = getattr(self._writer, "storage", None)
        conn = getattr(storage, "conn", None)
        if conn is not None:
            conn.commit()

    def _bag_path(self) -> Path:
        name = self._segment if self._split_index == 0 else f"{self._segment}_split{self._split_index:03d}"
        return self.root / name

    def _open_bag(self) -> None:
        path = self._bag_path()
        old = os.umask(0o077)
        try:
            writer = Writer(path, version=9, storage_plugin=STORAGES[self.storage])
            writer.open()
            self._conns = {}
            store = typestore()
            for topic, msgtype in sorted(self.topics.items()):
                self._conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            if self.storage == "mcap":
                writer.storage.close_chunk = types.MethodType(_close_chunk_with_crc, writer.storage)
            elif self.storage == "sqlite3":
                writer.storage.conn.execute(CHECKSUM_SCHEMA)
                writer.storage.write = types.MethodType(_write_with_checksum, writer.storage)
                writer.storage.conn.commit()  # the topics table: a killed bag names its topics
        except OSError as exc:
            self._fail(f"cannot open bag {path}: {exc.strerror or exc}", path)
            return
        finally:
            os.umask(old)
        os.chmod(path, 0o700)
        self._writer = writer
        self._bag = BagInfo(path=str(path), segment=self._segment)
        self._opened_at = self._last_commit = time.monotonic()

    def _write(self, topic: str, t_ns: int, data: bytes) -> None:
        c = self.counters[topic]
        if self._writer is None:
            c.dropped += 1
            return
        try:
            self._writer.write(self._conns[topic], int(t_ns), data)
            if self.commit_s and self.storage == "sqlite3" and time.monotonic() - self._last_commit >= self.commit_s:
                self._commit()
        except Exception as exc:  # noqa: BLE001 - OSError, or sqlite3's own error types for the same causes
            c.dropped += 1
            self._fail(f"writing {self._bag.path if self._bag else '?'} failed: {_reason(exc)}; segment closed", None)
            return
        c.written += 1
        c.bytes += len(data)
        bag = self._bag
        bag.messages += 1
        bag.bytes += len(data)
        bag.counts[topic] = bag.counts.get(topic, 0) + 1
        bag.t_first_ns = t_ns if bag.t_first_ns is None else min(bag.t_first_ns, t_ns)
        bag.t_last_ns = t_ns if bag.t_last_ns is None else max(bag.t_last_ns, t_ns)
        if (self.split_bytes and bag.bytes >= self.split_bytes) or (
            self.split_seconds and time.monotonic() - self._opened_at >= self.split_seconds
        ):
            self._close_bag()
            self._split_index += 1
            self._open_bag()

    def _close_bag(self) -> None:
        writer, bag = self._writer, self._bag
        self._writer, self._bag = None, None
        if writer is None or bag is None:
            return
        try:
            writer.close()
        except Exception as exc:  # noqa: BLE001
            bag.error = f"closing {bag.path} failed: {_reason(exc)}"
            self.errors.append(bag.error)
            self._notify_error(bag.error)
        self._chmod_files(Path(bag.path))
        self.bags.append(bag)
        self._notify_closed(bag)

    def _fail(self, message: str, path) -> None:
        """A bag that cannot go on: keep what was written, report, and drop until the next segment."""
        self.errors.append(message)
        bag = self._bag
        writer = self._writer
        self._writer, self._bag = None, None
        with self._lock:
            self._accepting = False
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                # metadata may not fit on a full disk; the data file keeps every flushed chunk (sqlite3: every
                # commit); release the file handles
                storage = getattr(writer, "storage", None)
                for closer in (
                    getattr(getattr(storage, "bio", None), "close", None),
                    getattr(getattr(storage, "conn", None), "close", None),
                ):
                    try:
                        if closer is not None:
                            closer()
                    except Exception:  # noqa: BLE001
                        pass
        if bag is not None:
            bag.error = message
            self._chmod_files(Path(bag.path))
            self.bags.append(bag)
            self._notify_closed(bag)
        self._notify_error(message)

    @staticmethod
    def _chmod_files(path: Path) -> None:
        if path.is_dir():
            for f in path.iterdir():
                try:
                    os.chmod(f, 0o600)
                except OSError:
                    pass


def _reason(exc: BaseException) -> str:
    """A write error in a few words: 'disk full', 'file size limit reached' or the system's message."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code in (errno.ENOSPC, errno.EDQUOT) or "database or disk is full" in text:
        return "disk full"
    if code == errno.EFBIG:
        return "file size limit reached"
    return getattr(exc, "strerror", None) or text or type(exc).__name__


def _write_with_checksum(self, connection, timestamp: int, data) -> None:
    """rosbags' ``Sqlite3Writer.write`` plus the message's row in the checksum table, in the same transaction
    (bound to the storage object; see :mod:`microexp.bags.integrity`)."""
    self.cursor.execute(
        "INSERT INTO messages (topic_id, timestamp, data) VALUES(?, ?, ?)", (connection.id, timestamp, data)
    )
    self.cursor.execute(
        f"INSERT INTO {CHECKSUM_TABLE} (message_id, crc32) VALUES(?, ?)",
        (self.cursor.lastrowid, message_crc(connection.topic, timestamp, data)),
    )


def _close_chunk_with_crc(self) -> None:
    """rosbags' ``McapWriter.close_chunk`` with the chunk's CRC-32 filled in (bound to the storage object)."""
    from collections import defaultdict as _dd
    from io import BytesIO

    from rosbags.rosbag2.storage_mcap import (
        PendingChunk,
        write_record,
        write_string,
        write_uint16,
        write_uint32,
        write_uint64,
    )

    records = self.chunk.bio.getvalue()
    rec = BytesIO()
    write_uint64(rec, self.chunk.message_start_time)
    write_uint64(rec, self.chunk.message_end_time)
    write_uint64(rec, len(records))
    write_uint32(rec, zlib.crc32(records))
    compressed = self.compressor(records)
    write_string(rec, self.compression)
    write_uint64(rec, len(compressed))
    rec.write(compressed)

    chunk_start = self.bio.tell()
    write_record(self.bio, 0x06, rec)
    chunk_end = self.bio.tell()

    offsets: list = []
    for cid, msgs in self.chunk.msgs.items():
        offsets.append((cid, self.bio.tell()))
        rec = BytesIO()
        write_uint16(rec, cid)
        write_uint32(rec, len(msgs) * 16)
        for ts, offset in msgs:
            write_uint64(rec, ts)
            write_uint64(rec, offset)
        write_record(self.bio, 0x07, rec)

    rec = BytesIO()
    write_uint64(rec, self.chunk.message_start_time)
    write_uint64(rec, self.chunk.message_end_time)
    write_uint64(rec, chunk_start)
    write_uint64(rec, chunk_end - chunk_start)
    write_uint32(rec, len(offsets) * 10)
    for cid, offset in offsets:
        write_uint16(rec, cid)
        write_uint64(rec, offset)
    write_uint64(rec, self.bio.tell() - chunk_end)
    write_string(rec, self.compression)
    write_uint64(rec, len(compressed))
    write_uint64(rec, len(records))
    self.chunks.append(rec)
    self.chunk = PendingChunk(2**63 - 1, 0, BytesIO(), _dd(list))
