"""The session manifest written beside the bags (no rclpy): subject pseudonym, per-segment AU, trial,
start/stop, status (recording/kept/redone/discarded/error), lux, sensors, software version, sync quality.

It is rewritten atomically (temp file + rename, mode 0600) at every change, so a crash leaves the last
complete state. ``validate`` checks it against ``schemas/manifest.schema.json``.

Full disks: beside the manifest lies a reserve file (``.manifest.reserve``, 512 KiB or 8x the manifest,
allocated before each segment starts and removed when the session finishes). When a save meets ENOSPC, the
temp file is removed, 64 KiB of the reserve are given back and the save is tried again, so the manifest can
still record that a segment failed for lack of space. A segment that starts while the reserve cannot be
allocated in full, or while less than 1 MiB is free besides it, is marked ``error`` ("disk full: ...") and
not recorded; once space comes back, the next segment records. A save never leaves a ``manifest.json.tmp`` behind.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import re
from importlib import resources
from pathlib import Path

from microexp import __version__
from microexp.errors import FormatError, MicroexpError, ParameterError

PSEUDONYM = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MANIFEST = "manifest.json"
RESERVE = ".manifest.reserve"
RESERVE_BYTES = 512 << 10
RESERVE_STEP = 64 << 10
MIN_FREE_BYTES = 1 << 20
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def write_json_atomic(path, doc: dict) -> Path:
    """Write ``doc`` as JSON to ``path`` through a temp file and a rename (mode 0600); on failure the temp
    file is removed and the OSError raised (the old file is untouched)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(doc, indent=2) + "\n"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def check_output_folder(path, what: str = "--out") -> Path:
    """A folder that output can be written to: created when missing; refused (ParameterError naming it) when it
    is a file, or when a file cannot be created in it (read-only, immutable, no permission)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ParameterError(f"{what} {p}: is a file, not a folder")
    try:
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ParameterError(f"{what} {p}: cannot create the folder: {exc.strerror or exc}") from None
    probe = p / f".microexp-write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ParameterError(f"{what} {p}: cannot write into this folder: {exc.strerror or exc}") from None
    return p


def check_pseudonym(subject: str) -> str:
    """Subjects appear only as pseudonyms (letters, digits, _ and -, at most 32): no names with spaces."""
    if not PSEUDONYM.match(subject or ""):
        raise ParameterError(
            f"subject {subject!r}: use a pseudonym such as S01 (letters, digits, _ or -; "
            "recordings of faces are biometric data, never store names)"
        )
    return subject


SENSOR_TOPICS = {"davis346": "/davis346/events", "evk4": "/evk4/events", "webcam": "/webcam/image_raw"}
"""The stream of each sensor that must deliver during every segment of a session that runs it."""


def silent_topics(seg: dict, expected) -> str:
    """'' when every topic of ``expected`` has messages in segment ``seg``; else the reason the segment failed,
    e.g. ``no /evk4/events messages during segment seg_0001_AU1_t1 (sensor stopped or unplugged?)``."""
    got = seg.get("messages") or {}
    silent = [t for t in expected if t and not got.get(t)]
    if not silent:
        return ""
    return (
        f"no {', '.join(silent)} messages during segment {seg.get('name', '?')} "
        "(sensor stopped, unplugged, or its input is corrupt)"
    )


def foreign_note(publishers) -> str:
    """'' for a segment without foreign publishers (manifest field ``foreign_publishers``); else one phrase
    naming them, e.g. ``2 foreign publishers wrote into it (/davis346/events from node /x on host 3f2a)``."""
    pubs = [p for p in publishers or [] if isinstance(p, dict)]
    if not pubs:
        return ""
    shown = "; ".join(
        f"{p.get('topic', '?')} from node {p.get('node', '?')}"
        + (f" on host {p['host_id']}" if p.get("host_id") else "")
        + (f": {p['foreign']}" if p.get("foreign") else "")
        for p in pubs[:3]
    )
    more = f"; {len(pubs) - 3} more" if len(pubs) > 3 else ""
    return f"{len(pubs)} foreign publisher{'s' if len(pubs) > 1 else ''} wrote into it ({shown}{more})"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def schema() -> dict:
    return json.loads(resources.files("microexp").joinpath("schemas/manifest.schema.json").read_text())


def validate(doc: dict) -> None:
    """Raise FormatError naming the first violation of the schema."""
    import jsonschema

    try:
        jsonschema.validate(doc, schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(map(str, exc.absolute_path)) or "(top)"
        raise FormatError(MANIFEST, f"field {where}: {exc.message}") from None


class Manifest:
    """The manifest of one recording session folder."""

    def __init__(self, folder, subject: str, storage: str, source: str = "", session: str | None = None):
        self.folder = Path(folder)
        self.doc = {
            "format": "microexp-session-1",
            "session": session or self.folder.name,
            "subject": check_pseudonym(subject),
            "created": now_iso(),
            "finished": None,
            "software": {"microexp": __version__},
            "storage": storage,
            "source": source,
            "sensors": {},
            "sync": {},
            "segments": [],
        }

    @property
    def segments(self) -> list[dict]:
        return self.doc["segments"]

    def segment(self, seg_id: int) -> dict:
        for s in self.segments:
            if s["id"] == seg_id:
                return s
        raise ParameterError(f"segment {seg_id} does not exist (segments: 1..{len(self.segments)})")

    def add_segment(self, subject: str, au: str, trial: int, lux: float, start_ns: int, note: str = "") -> dict:
        seg_id = len(self.segments) + 1
        seg = {
            "id": seg_id,
            "name": f"seg_{seg_id:04d}_{au}_t{trial}",
            "subject": check_pseudonym(subject),
            "au": au,
            "trial": int(trial),
            "lux": float(lux),
            "status": "recording",
            "note": note,
            "start_ns": int(start_ns),
            "stop_ns": None,
            "bags": [],
            "messages": {},
        }
        self.segments.append(seg)
        reserved = self.ensure_reserve()
        free = self.free_bytes()
        if not reserved or free < MIN_FREE_BYTES:
            # the disk is (still) full: recording now could leave no room to save the manifest. The segment is
            # an error and is not recorded; the next one records once space has come back
            seg["status"] = "error"
            seg["error"] = (
                f"disk full: {free >> 10} KiB free in {self.folder}"
                + ("" if reserved else f", no room for the manifest's reserve ({self.reserve_bytes() >> 10} KiB)")
                + f"; segment not recorded (it needs {MIN_FREE_BYTES >> 20} MiB free to start)"
            )
            seg["stop_ns"] = int(start_ns)
        self.save()
        return seg

    def save(self) -> Path:
        """Write the manifest atomically. On a full disk, give back reserve space (a step at a time) and try
        again; raises MicroexpError (one line naming the file) when it still cannot be written, and the
        previous manifest stays."""
        path = self.folder / MANIFEST
        while True:
            try:
                write_json_atomic(path, self.doc)
                return path
            except OSError as exc:
                if exc.errno not in NO_SPACE or not self.release_reserve(RESERVE_STEP):
                    raise MicroexpError(f"{path}: cannot save the manifest: {exc.strerror or exc}") from None

    @property
    def reserve_path(self) -> Path:
        return self.folder / RESERVE

    def free_bytes(self) -> int:
        """Bytes the file system of the session folder still has for this user."""
        try:
            st = os.statvfs(self.folder)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize

    def reserve_bytes(self) -> int:
        return max(RESERVE_BYTES, 8 * len(json.dumps(self.doc)))

    def ensure_reserve(self) -> bool:
        """Allocate the reserve file to its full size (True when it is complete afterwards)."""
        size = self.reserve_bytes()
        try:
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            if os.fstat(fd).st_size >= size:
                return True
            os.posix_fallocate(fd, 0, size)
            return True
        except OSError as exc:
            if exc.errno in NO_SPACE:
                return False
            try:  # a file system without fallocate
                os.lseek(fd, 0, os.SEEK_END)
                os.write(fd, b"\0" * (size - os.fstat(fd).st_size))
                os.fsync(fd)
                return True
            except OSError:
                return False
        finally:
            os.close(fd)

    def release_reserve(self, nbytes: int | None = None) -> bool:
        """Give back ``nbytes`` of the reserve (all of it when None); True when something was given back."""
        p = self.reserve_path
        try:
            size = p.stat().st_size
        except OSError:
            return False
        if size == 0:
            return False
        try:
            if nbytes is None or nbytes >= size:
                os.unlink(p)
            else:
                os.truncate(p, size - nbytes)
            return True
        except OSError:
            return False

    def drop_reserve(self) -> None:
        """At the end of a session: the reserve is no longer needed."""
        self.release_reserve(None)

    def remove(self) -> None:
        """Remove the manifest and reserve of a session that never recorded (its validation failed), so that the
        same ``--out`` can be used again."""
        for p in (self.folder / MANIFEST, self.reserve_path):
            try:
                os.unlink(p)
            except OSError:
                pass


def load(folder) -> dict:
    path = Path(folder) / MANIFEST
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FormatError(path, "no manifest in this session folder") from None
    except json.JSONDecodeError as exc:
        raise FormatError(path, f"not valid JSON: {exc.msg}", exc.pos) from None
    except UnicodeDecodeError as exc:
        raise FormatError(path, "not valid JSON: bytes that are not UTF-8 text", exc.start) from None
    except OSError as exc:
        raise FormatError(path, f"cannot be read ({exc.strerror})") from None
    validate(doc)
    return doc
