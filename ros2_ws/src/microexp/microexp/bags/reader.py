"""Reading rosbag2 bags (sqlite3 or mcap) with rosbags, tolerant of real-world metadata quirks.

Quirks handled: metadata that names no storage identifier (inferred from the data files' magic bytes),
an empty ``files`` list (``relative_file_paths`` used instead), version 5 to 9 metadata.

Interrupted recordings: an MCAP bag whose writer was killed has no metadata.yaml and no MCAP footer. It is
opened anyway (``Bag.truncated`` is True) and read record by record up to the last complete chunk. A sqlite3
bag whose writer was killed has no metadata.yaml either: it is recovered to its last committed transaction
(SQLite rolls the hot journal back; the file is changed in place) and read as ``truncated``. A data file
shorter than the metadata says (a bag cut off) is ``truncated`` too.

Integrity: :meth:`Bag.verify` reads every message once in recording order: MCAP chunk CRC-32s (chunks written
with CRC 0 cannot be checked and are counted), the per-message checksums of the project's sqlite3 bags, SQLite's
``integrity_check``, and the checks of :class:`~microexp.bags.integrity.MessageChecker` (times outside the
recorded range, a single time out of line, payload sizes that do not fit the type); the first problem is raised
as FormatError naming the file (and the topic and message index). A bag without checksums is ``unverified``.
Reading MCAP messages checks the CRCs of the chunks read as well. A .db3 given directly without the
metadata.yaml of its folder is recovered like its folder. Data files must lie inside the bag folder
(metadata.yaml naming another path is refused). Anything else that is wrong is reported as
:class:`~microexp.errors.FormatError` naming the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from microexp.bags.integrity import MessageChecker, has_checksums, sqlite_messages
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
            self._single_file()
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

    def _single_file(self) -> None:
        """A .mcap/.db3 given directly: the metadata.yaml beside it when that names it; a .db3 without one
        (or with SQLite's hot journal beside it) is a killed recording and recovered as its folder would be."""
        meta = self.path.parent / "metadata.yaml"
        try:
            info = yaml.safe_load(meta.read_text()).get("rosbag2_bagfile_information") if meta.exists() else None
            names = list(info.get("relative_file_paths") or []) + [
                f.get("path") for f in info.get("files") or [] if isinstance(f, dict)
            ]
        except Exception:  # noqa: BLE001 - a broken metadata.yaml beside the file: read the file alone
            info, names = None, []
        if self.path.name in names:
            self.metadata = info
            return
        journal = any(self.path.with_name(self.path.name + s).exists() for s in ("-journal", "-wal"))
        if self.path.suffix == ".db3" and (journal or not meta.exists()):
            _recover_sqlite(self.path)
            self.truncated = True
            self.truncation = (
                "no metadata.yaml beside it (the recording did not close); recovered to its last committed transaction"
            )

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
                if self.storage == "sqlite3":  # a damaged database: name the first message that is bad
                    _verify_sqlite(f, MessageChecker(f, *self._recorded_range(f)))
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

    def messages_as_recorded(self, topics: Iterable[str] | None = None) -> Iterator[tuple[str, str, int, bytes]]:
        """Like :meth:`messages`, in the order the recorder wrote them (sqlite3: row order; MCAP: file order)
        rather than by time: a recording whose clock was set back plays that step back where it happened."""
        wanted = None if topics is None else set(topics)
        self._open()
        for f in self.files:
            if self.storage == "sqlite3":
                yield from _sqlite_in_order(f, wanted)
            else:
                yield from _mcap_in_order(f, wanted)

    def verify(self) -> dict:
        """Check the data files' integrity (see the module docstring); raise FormatError at the first problem.

        Returns ``{"checksums": "ok" | "unverified" | "partial", "messages": n, ...}`` plus, for MCAP, the
        chunks checked and those without CRC, for sqlite3 ``integrity_check`` and whether the file has the
        checksum table; ``clock_steps`` lists recorded steps back of the clock (see
        :mod:`microexp.bags.integrity`)."""
        out: dict = {"messages": 0}
        verified = unverified = 0
        steps: list = []
        for f in self.files:
            lo, hi = self._recorded_range(f)
            checker = MessageChecker(f, lo, hi)
            if self.storage == "mcap":
                r = _verify_mcap(f, checker)
                out["chunks"] = out.get("chunks", 0) + r["chunks"]
                out["chunks_without_crc"] = out.get("chunks_without_crc", 0) + r["chunks_without_crc"]
                verified += r["chunks"]
                unverified += r["chunks_without_crc"] + r["messages_outside_chunks"]
            else:
                r = _verify_sqlite(f, checker)
                out["integrity_check"] = "ok"
                verified += r["checksums"]
                unverified += not r["checksums"]
            out["messages"] += r["messages"]
            steps += [{"file": f.name, **st} for st in checker.clock_steps]
        out["checksums"] = "ok" if verified and not unverified else "partial" if verified else "unverified"
        if steps:
            out["clock_steps"] = steps
        return out

    def _recorded_range(self, file: Path) -> tuple:
        """``(start, end)`` ns of ``file`` from metadata.yaml (its own entry, else the bag's when it is the only
        file); ``(None, None)`` when unknown."""
        info = self.metadata or {}
        entries = [e for e in info.get("files") or [] if isinstance(e, dict) and e.get("path") == file.name]
        for src in entries[:1] + ([info] if len(self.files) == 1 else []):
            try:
                start = int(src["starting_time"]["nanoseconds_since_epoch"])
                dur = int(src["duration"]["nanoseconds"])
            except (KeyError, TypeError, ValueError):
                continue
            if dur >= 0 and (start or dur):
                return start, start + dur
        return None, None

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


def _verify_sqlite(file: Path, checker: MessageChecker) -> dict:
    """Every message in row order (its checksum where the file has the table, and ``checker``'s checks), then
    SQLite's integrity_check. ``{"messages": n, "checksums": bool}``."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise FormatError(file, f"damaged sqlite3 bag: {exc}") from None
    try:
        try:
            checksums = has_checksums(conn)
        except sqlite3.Error as exc:
            raise FormatError(file, f"damaged sqlite3 bag: {exc}") from None
        try:
            n = sqlite_messages(conn, file, checker, checksums)
        except FormatError as exc:
            if checksums or "unreadable" not in exc.reason:
                raise
            n = None  # a third-party bag that SQLite cannot read through: integrity_check says why
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check(5)")]
        except sqlite3.Error as exc:
            raise FormatError(file, f"damaged sqlite3 bag: {exc}") from None
    finally:
        conn.close()
    if rows != ["ok"]:
        raise FormatError(file, f"damaged sqlite3 bag: integrity_check: {'; '.join(rows)}")
    if n is None:
        raise FormatError(file, "damaged sqlite3 bag: its messages are unreadable")
    return {"messages": n, "checksums": checksums}


def _verify_mcap(file: Path, checker: MessageChecker) -> dict:
    """One pass over the records: the CRC-32 of every chunk (those written with CRC 0 are counted, not
    checked), and ``checker``'s checks on every message in file order (a chunk's messages also within the
    chunk's own time range)."""
    from mcap.records import Channel, Chunk, Message, Schema
    from mcap.stream_reader import CRCValidationError, StreamReader, breakup_chunk

    checked = without = outside = messages = 0
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}

    def message(rec, lo=None, hi=None) -> None:
        topic, msgtype = channels.get(rec.channel_id, (f"<channel {rec.channel_id}>", ""))
        checker.check(topic, msgtype, rec.log_time, rec.data, lo, hi)

    def meta(rec) -> None:
        if isinstance(rec, Schema):
            schemas[rec.id] = rec.name
        elif isinstance(rec, Channel):
            channels[rec.id] = (rec.topic, schemas.get(rec.schema_id, ""))

    complete = _mcap_complete(file)
    with open(file, "rb") as fh:
        reader = StreamReader(fh, skip_magic=False, emit_chunks=True)
        try:
            for rec in reader.records:
                if isinstance(rec, Message):
                    outside += 1
                    messages += 1
                    message(rec)
                    continue
                if not isinstance(rec, Chunk):
                    meta(rec)
                    continue
                try:
                    inner = breakup_chunk(rec, validate_crc=rec.uncompressed_crc != 0)
                except CRCValidationError as exc:
                    raise FormatError(
                        file,
                        f"chunk {checked + without + 1} (messages {rec.message_start_time / 1e9:.3f}.."
                        f"{rec.message_end_time / 1e9:.3f} s): CRC {exc.actual:08x} does not match "
                        f"the stored {exc.expected:08x}: the file is damaged",
                    ) from None
                if rec.uncompressed_crc == 0:
                    without += 1
                else:
                    checked += 1
                for r in inner:
                    if isinstance(r, Message):
                        messages += 1
                        message(r, rec.message_start_time, rec.message_end_time)
                    else:
                        meta(r)
        except FormatError:
            raise
        except Exception as exc:  # noqa: BLE001
            if complete:  # a closed file that does not parse is damaged (a cut one is checked up to its end)
                raise FormatError(
                    file,
                    f"damaged MCAP file: record {checked + without + 1} does not parse "
                    f"({type(exc).__name__}: {str(exc)[:120]})",
                ) from None
    checker.finish()
    return {"chunks": checked, "chunks_without_crc": without, "messages_outside_chunks": outside, "messages": messages}


def _sqlite_in_order(file: Path, wanted) -> Iterator[tuple[str, str, int, bytes]]:
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT t.name, t.type, m.timestamp, m.data FROM messages m JOIN topics t ON t.id = m.topic_id "
                "ORDER BY m.id"
            )
            for topic, msgtype, t_ns, data in rows:
                if wanted is None or topic in wanted:
                    yield topic, msgtype, t_ns, data
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise FormatError(file, f"damaged sqlite3 bag: {exc}") from None


def _mcap_in_order(file: Path, wanted) -> Iterator[tuple[str, str, int, bytes]]:
    from mcap.records import Channel, Chunk, Message, Schema
    from mcap.stream_reader import CRCValidationError, StreamReader, breakup_chunk

    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    complete = _mcap_complete(file)
    with open(file, "rb") as fh:
        reader = StreamReader(fh, skip_magic=False, emit_chunks=True)
        try:
            for rec in reader.records:
                try:
                    inner = (
                        breakup_chunk(rec, validate_crc=rec.uncompressed_crc != 0) if isinstance(rec, Chunk) else [rec]
                    )
                except CRCValidationError:
                    raise FormatError(file, "a chunk's CRC does not match its data: the file is damaged") from None
                for r in inner:
                    if isinstance(r, Schema):
                        schemas[r.id] = r.name
                    elif isinstance(r, Channel):
                        channels[r.id] = (r.topic, schemas.get(r.schema_id, ""))
                    elif isinstance(r, Message) and r.channel_id in channels:
                        topic, msgtype = channels[r.channel_id]
                        if wanted is None or topic in wanted:
                            yield topic, msgtype, r.log_time, r.data
        except FormatError:
            raise
        except Exception as exc:  # noqa: BLE001
            if complete:
                raise FormatError(file, f"damaged MCAP file: {type(exc).__name__}: {str(exc)[:120]}") from None


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
