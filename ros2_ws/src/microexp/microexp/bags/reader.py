"""Reading rosbag2 bags (sqlite3 or mcap) with rosbags, tolerant of real-world metadata quirks.

Quirks handled: metadata that names no storage identifier (inferred from the data files' magic bytes),
an empty ``files`` list (``relative_file_paths`` used instead), version 5 to 9 metadata.

Interrupted recordings: an MCAP bag whose writer was killed has no metadata.yaml and no MCAP footer. It is
opened anyway (``Bag.truncated`` is True) and read record by record up to the last complete chunk. A sqlite3
bag whose writer was killed has no metadata.yaml either: it is recovered to its last committed transaction
(SQLite rolls the hot journal back; the file is changed in place) and read as ``truncated``. A data file
shorter than the metadata says (a bag cut off) is ``truncated`` too.

Integrity: :meth:`Bag.verify` checks every MCAP chunk's CRC-32 (chunks written with CRC 0 cannot be
checked and are counted) and runs SQLite's ``integrity_check`` plus a check of the messages' time range
against metadata.yaml; the first problem is raised as FormatError. Reading MCAP messages checks the CRCs of
the chunks read as well. Data files must lie inside the bag folder (metadata.yaml naming another path is
refused). Anything else that is wrong is reported as :class:`~microexp.errors.FormatError` naming the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from microexp.bags.types import typestore
from microexp.errors import FormatError

MAGIC = {b"\x89MCAP0\r\n": "mcap", b"SQLite format 3\x00": "sqlite3"}
SUFFIX = {"mcap": ".mcap", "sqlite3": ".db3"}


@dataclass(frozen=True)
class TopicSummary:
    name: str
    msgtype: str
    messages: int


def storage_of(file: Path) -> str:
    """'mcap' or 'sqlite3' from a data file's magic bytes."""
    try:
        with open(file, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise FormatError(file, f"cannot read: {exc.strerror or exc}") from None
    if not head:
        raise FormatError(file, "empty file: not a bag data file", 0)
    for magic, name in MAGIC.items():
        if head.startswith(magic):
            return name
    raise FormatError(file, f"unknown magic {head[:8]!r}: neither MCAP nor SQLite (a bag data file is one of them)", 0)


class Bag:
    """A rosbag2 bag: a folder with metadata.yaml, or a single .mcap/.db3 file.

    Example
    -------
    >>> with Bag("recording/seg_0001") as bag:                       # doctest: +SKIP
    ...     for topic, msgtype, t_ns, raw in bag.messages(["/davis/events"]):
    ...         msg = bag.deserialize(raw, msgtype)
    """

    def __init__(self, path):
        self.path = Path(path)
        self.metadata: dict = {}
        self.truncated = False
        self.truncation: str = ""
        if not self.path.exists():
            raise FormatError(self.path, "does not exist")
        if not self.path.is_dir() and not self.path.is_file():
            raise FormatError(self.path, "not a regular file or folder (a pipe or device?): not a bag")
        if self.path.is_dir():
            self.files = self._files_from_metadata()
        elif self.path.suffix in (".mcap", ".db3"):
            self.files = [self.path]
        else:
            raise FormatError(
                self.path, "not a rosbag2 bag (expected a folder with metadata.yaml, or a .mcap/.db3 file)"
            )
        self.storage = storage_of(self.files[0])
        for f in self.files[1:]:
            storage_of(f)
        self._readers = []

    def _files_from_metadata(self) -> list[Path]:
        meta_path = self.path / "metadata.yaml"
        if not meta_path.exists():
            mcaps = sorted(self.path.glob("*.mcap"))
            if mcaps:  # an MCAP recording that never closed: read what was flushed
                self.truncated = True
                self.truncation = "no metadata.yaml (the recording did not close)"
                return mcaps
            dbs = sorted(self.path.glob("*.db3"))
            if dbs:  # a sqlite3 recording that never closed: its last committed transaction
                for db in dbs:
                    _recover_sqlite(db)
                self.truncated = True
                self.truncation = (
                    "no metadata.yaml (the recording did not close); recovered to its last committed transaction"
                )
                return dbs
            raise FormatError(self.path, "no metadata.yaml in this folder: not a rosbag2 bag folder")
        try:
            doc = yaml.safe_load(meta_path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise FormatError(meta_path, f"not valid YAML: {str(exc).splitlines()[0]}") from None
        info = doc.get("rosbag2_bagfile_information") if isinstance(doc, dict) else None
        if not isinstance(info, dict):
            raise FormatError(meta_path, "no 'rosbag2_bagfile_information' mapping")
        self.metadata = info
        names = list(info.get("relative_file_paths") or [])
        if not names:
            names = [f.get("path") for f in info.get("files") or [] if isinstance(f, dict) and f.get("path")]
        if not names:
            raise FormatError(meta_path, "lists no data files (relative_file_paths and files are empty)")
        files = []
        root = self.path.resolve()
        for n in names:
            if not isinstance(n, str) or not n:
                raise FormatError(meta_path, "names a data file that is not a file name")
            f = self.path / n
            if Path(n).is_absolute() or ".." in Path(n).parts or root not in f.resolve().parents:
                raise FormatError(meta_path, f"names data file {n!r} outside the bag folder: refused")
            if not f.exists():
                raise FormatError(meta_path, f"names data file {f.name!r}, which is missing")
            files.append(f)
        return files

    # -- reading ---------------------------------------------------------------------------------------
    def _open(self):
        if self._readers:
            return self._readers
        from rosbags.rosbag2 import Reader

        for f in self.files:
            if self.storage == "sqlite3" and _sqlite_cut(f):
                self.truncated = True
                self.truncation = self.truncation or (
                    f"{f.name} is shorter than its own header says (cut off): unreadable as sqlite3"
                )
                raise FormatError(
                    f,
                    "sqlite3 file cut off (shorter than its header's page count): the bag is "
                    "truncated and SQLite cannot read a cut database",
                )
            if self.storage == "mcap" and not _mcap_complete(f):
                self.truncated = True
                self.truncation = self.truncation or f"{f.name} has no MCAP footer (the writer stopped)"
                self._readers.append(_TruncatedMcap(f))
                continue
            try:
                reader = Reader(f)
                reader.open()
            except Exception as exc:  # rosbags raises several types; all mean the same to a user
                self.close()
                raise FormatError(f, f"unreadable {self.storage} bag file: {exc}") from None
            self._readers.append(reader)
        return self._readers

    def close(self) -> None:
        for r in self._readers:
            try:
                r.close()
            except Exception:
                pass
        self._readers = []

    def __enter__(self) -> "Bag":
        self._open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def topics(self) -> dict[str, TopicSummary]:
        """Per topic: its type and message count (summed over the bag's files)."""
        out: dict[str, TopicSummary] = {}
        for reader in self._open():
            for c in reader.connections:
                prev = out.get(c.topic)
                count = c.msgcount + (prev.messages if prev else 0)
                out[c.topic] = TopicSummary(c.topic, c.msgtype, count)
        return out

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[tuple[str, str, int, bytes]]:
        """``(topic, msgtype, receive time ns, serialized CDR bytes)`` in time order, file after file."""
        wanted = None if topics is None else set(topics)
        for reader in self._open():
            conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
            if not conns:
                continue
            try:
                for conn, t_ns, raw in reader.messages(connections=conns):
                    yield conn.topic, conn.msgtype, t_ns, raw
            except FormatError:
                raise
            except Exception as exc:
                why = (
                    "a chunk's CRC does not match its data: the file is damaged"
                    if "checksum" in str(exc).lower()
                    else f"stopped reading mid-file: {exc}"
                )
                raise FormatError(reader.path, why) from None

    def verify(self) -> dict:
        """Check the data files' integrity (see the module docstring); raise FormatError at the first problem.
        Returns ``{"chunks": checked, "chunks_without_crc": n}`` (MCAP) or ``{"integrity_check": "ok"}``."""
        out: dict = {}
        for f in self.files:
            if self.storage == "mcap":
                r = _verify_mcap(f)
                out["chunks"] = out.get("chunks", 0) + r["chunks"]
                out["chunks_without_crc"] = out.get("chunks_without_crc", 0) + r["chunks_without_crc"]
            else:
                lo, hi = _verify_sqlite(f)
                out["integrity_check"] = "ok"
                if self.metadata and len(self.files) == 1:
                    self._check_time_range(lo, hi)
        return out

    def _check_time_range(self, lo: int | None, hi: int | None) -> None:
        """Messages outside metadata.yaml's [starting_time, starting_time + duration] mean damaged timestamps."""
        try:
            start = int(self.metadata["starting_time"]["nanoseconds_since_epoch"])
            dur = int(self.metadata["duration"]["nanoseconds"])
        except (KeyError, TypeError, ValueError):
            return
        if lo is not None and (lo < start or hi > start + dur):
            raise FormatError(
                self.files[0],
                f"message times {lo / 1e9:.3f}..{hi / 1e9:.3f} s lie outside the "
                f"metadata's {start / 1e9:.3f}..{(start + dur) / 1e9:.3f} s: damaged "
                "timestamps",
            )

    @staticmethod
    def deserialize(raw: bytes, msgtype: str):
        """The message object of CDR bytes ``raw`` (rosbags' dataclass; arrays are numpy)."""
        return typestore().deserialize_cdr(raw, msgtype)


def _mcap_complete(file: Path) -> bool:
    """An MCAP file ends with its magic once the writer closed it."""
    with open(file, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        if size < 16:
            return False
        fh.seek(size - 8)
        return fh.read(8) == b"\x89MCAP0\r\n"


def _recover_sqlite(file: Path) -> None:
    """Open a killed sqlite3 bag read-write once, so that SQLite rolls back its hot journal (or replays its WAL)
    and the file holds exactly the last committed transaction; rosbags then reads it as immutable."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{file}", uri=True)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise FormatError(file, f"killed sqlite3 bag cannot be recovered: {exc}") from None


def _sqlite_cut(file: Path) -> bool:
    """A sqlite3 file shorter than its header's page count x page size (cut off)."""
    with open(file, "rb") as fh:
        head = fh.read(100)
        fh.seek(0, 2)
        size = fh.tell()
    if len(head) < 100:
        return True
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    return pages > 0 and size < pages * page


def _verify_sqlite(file: Path) -> tuple:
    """SQLite's integrity_check; returns the messages' (min, max) timestamp read from the table itself."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check(5)")]
            lo, hi = conn.execute("SELECT min(timestamp), max(timestamp) FROM messages NOT INDEXED").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise FormatError(file, f"damaged sqlite3 bag: {exc}") from None
    if rows != ["ok"]:
        raise FormatError(file, f"damaged sqlite3 bag: integrity_check: {'; '.join(rows)}")
    return lo, hi


def _verify_mcap(file: Path) -> dict:
    """CRC-32 of every chunk (those written with CRC 0 are counted, not checked)."""
    from mcap.records import Chunk
    from mcap.stream_reader import CRCValidationError, StreamReader, get_chunk_data_stream

    checked = without = 0
    complete = _mcap_complete(file)
    with open(file, "rb") as fh:
        reader = StreamReader(fh, skip_magic=False, emit_chunks=True)
        try:
            for rec in reader.records:
                if not isinstance(rec, Chunk):
                    continue
                if rec.uncompressed_crc == 0:
                    without += 1
                    continue
                try:
                    get_chunk_data_stream(rec, validate_crc=True)
                except CRCValidationError as exc:
                    raise FormatError(
                        file,
                        f"chunk {checked + without + 1} (messages {rec.message_start_time / 1e9:.3f}.."
                        f"{rec.message_end_time / 1e9:.3f} s): CRC {exc.actual:08x} does not match "
                        f"the stored {exc.expected:08x}: the file is damaged",
                    ) from None
                checked += 1
        except FormatError:
            raise
        except Exception as exc:  # noqa: BLE001
            if complete:  # a closed file that does not parse is damaged (a cut one is checked up to its end)
                raise FormatError(
                    file,
                    f"damaged MCAP file: record {checked + without + 1} does not parse "
                    f"({type(exc).__name__}: {str(exc)[:120]})",
                ) from None
    return {"chunks": checked, "chunks_without_crc": without}


class _Conn:
    def __init__(self, topic: str, msgtype: str):
        self.topic, self.msgtype, self.msgcount = topic, msgtype, 0


class _TruncatedMcap:
    """Reads an MCAP file without footer record by record with the `mcap` library, up to where it ends."""

    def __init__(self, path: Path):
        self.path = path
        self.connections = []
        self._by_id: dict[int, _Conn] = {}
        self.last_complete_offset = 0
        for conn, _, _ in self._scan(count=True):
            conn.msgcount += 1

    def _scan(self, count: bool = False):
        from mcap.exceptions import McapError
        from mcap.records import Channel, Message, Schema
        from mcap.stream_reader import StreamReader

        schemas: dict[int, str] = {}
        from mcap.stream_reader import CRCValidationError

        with open(self.path, "rb") as fh:
            reader = StreamReader(fh, skip_magic=False, emit_chunks=False, validate_crcs=True)
            try:
                for rec in reader.records:
                    if isinstance(rec, Schema):
                        schemas[rec.id] = rec.name
                    elif isinstance(rec, Channel):
                        if rec.id not in self._by_id:
                            conn = _Conn(rec.topic, schemas.get(rec.schema_id, ""))
                            self._by_id[rec.id] = conn
                            self.connections.append(conn)
                    elif isinstance(rec, Message):
                        conn = self._by_id.get(rec.channel_id)
                        if conn is not None:
                            yield conn, rec.log_time, rec.data
                    if count:
                        self.last_complete_offset = fh.tell()
            except CRCValidationError:
                raise FormatError(self.path, "a chunk's CRC does not match its data: the file is damaged") from None
            except (McapError, EOFError, ValueError, OSError):
                return  # the file ends inside a record: everything before it was read
            except Exception as exc:  # the mcap library's end-of-file error has no common base
                if type(exc).__name__ not in ("EndOfFile", "RecordLengthLimitExceeded", "InvalidMagic"):
                    raise

    def messages(self, connections):
        wanted = {id(c) for c in connections}
        for conn, t_ns, data in self._scan():
            if id(conn) in wanted:
                yield conn, t_ns, data

    def close(self) -> None:
        pass
