"""The session manifest written beside the bags (no rclpy): subject pseudonym, per-segment AU, trial,
start/stop, status (recording/kept/redone/discarded/error), lux, sensors, software version, sync quality.

It is rewritten atomically (temp file + rename, mode 0600) at every change, so a crash leaves the last
complete state. ``validate`` checks it against ``schemas/manifest.schema.json``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
from importlib import resources
from pathlib import Path

from microexp import __version__
from microexp.errors import FormatError, ParameterError

PSEUDONYM = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MANIFEST = "manifest.json"


def check_pseudonym(subject: str) -> str:
    """Subjects appear only as pseudonyms (letters, digits, _ and -, at most 32): no names with spaces."""
    if not PSEUDONYM.match(subject or ""):
        raise ParameterError(f"subject {subject!r}: use a pseudonym such as S01 (letters, digits, _ or -; "
                             "recordings of faces are biometric data, never store names)")
    return subject


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
        seg = {"id": seg_id, "name": f"seg_{seg_id:04d}_{au}_t{trial}", "subject": check_pseudonym(subject),
               "au": au, "trial": int(trial), "lux": float(lux), "status": "recording", "note": note,
               "start_ns": int(start_ns), "stop_ns": None, "bags": [], "messages": {}}
        self.segments.append(seg)
        self.save()
        return seg

    def save(self) -> Path:
        path = self.folder / MANIFEST
        tmp = path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.doc, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
        return path


def load(folder) -> dict:
    path = Path(folder) / MANIFEST
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FormatError(path, "no manifest in this session folder") from None
    except json.JSONDecodeError as exc:
        raise FormatError(path, f"not valid JSON: {exc.msg}", exc.pos) from None
    validate(doc)
    return doc
