"""The offline clip dataset on disk: one ``.npy`` per array per clip, plus an index (no torch, no rclpy).

Layout of a dataset folder ``DIR``::

    DIR/index.json                    the index (source of truth; format "microexp-dataset-1")
    DIR/index.csv                     the same, flat: one row per clip x array, for people and spreadsheets
    DIR/clips/<clip id>/<array>.npy   one array per file, memory-mappable (np.load(..., mmap_mode="r"))

Arrays of a clip share one time grid of ``slices`` slices of ``slice_us`` (33 ms) on ROS time, starting at
the clip's first event (see :mod:`microexp.learn.build`), so row k of every array is the same moment:

==================  ==================  =====================================================================
array               dtype, shape        content
==================  ==================  =====================================================================
``davis346``        float32 (T,2,S,S)   Eq. (1) frames of the DAVIS346 events, face crop, area-resampled by
                                        :func:`microexp.vision.crop.crop_resize` (mean count per sensor pixel;
                                        channel 0 = OFF, 1 = ON) — exactly what the live node feeds the SNN
``evk4``            float32 (T,2,S,S)   the same for the EVK4
``davis346_aps``    uint8 (T,S,S)       the DAVIS APS frame nearest each slice centre, face crop
``webcam_rgb``      uint8 (T,3,S,S)     the webcam frame nearest each slice centre, face crop, RGB
``webcam_gray``     uint8 (T,S,S)       the same frame in grayscale (BT.601): the reconstruction target
==================  ==================  =====================================================================

S is 64. A clip holds only the arrays its recording had (e.g. no ``evk4`` for subjects without an EVK4).

The index (``index.json``)::

    format, created, software, slice_us, size, margin, evk4_map, sources (session/bag paths),
    clips: [ {id, subject, au, label, trial, lux, lux_source, session, segment, segment_id, bags,
              slices, t_start_ns, arrays: {name: relative path}, sensors: {name: {...}}, ground_truth,
              activity_peak}, ... ]

``sensors.<name>`` holds the box (``box``, ``box_source``: ``mtcnn`` | ``mapped:<from>`` | ``events`` |
``centre``), detection counts, events, packets and sequence gaps, and the sensor-to-ROS clock offset used.
``ground_truth`` (synthetic recordings only) gives the phases of the movement as slice indices; training
never reads it (the window finder uses event activity), it is there to check things.

Example
-------
>>> ds = ClipDataset("out/synth/dataset")                       # doctest: +SKIP
>>> clip = ds.clips[0]; x = ds.array(clip, "davis346")         # np.memmap (T, 2, 64, 64)
>>> ds.subjects(), ds.select(sensor="evk4")[:1]
"""

from __future__ import annotations

import csv
import datetime as _dt
import errno
import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from microexp.errors import FormatError, ParameterError

FORMAT = "microexp-dataset-1"
INDEX = "index.json"
INDEX_CSV = "index.csv"
EVENT_ARRAYS = ("davis346", "evk4")
ARRAYS = ("davis346", "evk4", "davis346_aps", "webcam_rgb", "webcam_gray")
CSV_FIELDS = ("clip", "subject", "au", "trial", "sensor", "slices", "lux", "segment", "bag", "box_source", "file")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str) -> str:
    """``text`` as a file-name component (letters, digits, ``_ . -``)."""
    return _SAFE.sub("_", str(text)).strip("._") or "clip"


class ClipDataset:
    """A dataset folder: its index and memory-mapped arrays.

    Parameters
    ----------
    root:
        The dataset folder (with ``index.json``).
    """

    def __init__(self, root):
        self.root = Path(root)
        path = self.root / INDEX
        try:
            self.index = json.loads(path.read_text())
        except FileNotFoundError:
            raise FormatError(path, "no dataset index here (build one with `microexp dataset`)") from None
        except json.JSONDecodeError as exc:
            raise FormatError(path, f"not valid JSON: {exc.msg}", exc.pos) from None
        if self.index.get("format") != FORMAT:
            raise FormatError(path, f"format {self.index.get('format')!r} is not {FORMAT!r}")
        self.clips: list[dict] = list(self.index.get("clips", []))
        self.slice_us = int(self.index.get("slice_us", 33_000))
        self.size = int(self.index.get("size", 64))

    def __len__(self) -> int:
        return len(self.clips)

    def subjects(self) -> list[str]:
        """Subjects in the dataset, sorted."""
        return sorted({c["subject"] for c in self.clips})

    def select(
        self, sensor: Optional[str] = None, subjects: Optional[Iterable[str]] = None, arrays: Iterable[str] = ()
    ) -> list[dict]:
        """Clips that have ``sensor``'s events (and every array in ``arrays``), of ``subjects`` if given."""
        wanted = set(subjects) if subjects is not None else None
        need = ([sensor] if sensor else []) + list(arrays)
        return [
            c for c in self.clips if all(a in c["arrays"] for a in need) and (wanted is None or c["subject"] in wanted)
        ]

    def path(self, clip: dict, name: str) -> Path:
        if name not in clip["arrays"]:
            raise ParameterError(f"clip {clip['id']} has no {name!r} array (it has {', '.join(clip['arrays'])})")
        return self.root / clip["arrays"][name]

    def array(self, clip: dict, name: str) -> np.ndarray:
        """The array ``name`` of ``clip``, memory-mapped read-only (FormatError naming the file when it is
        missing or damaged)."""
        path = self.path(clip, name)
        try:
            return np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise FormatError(
                path,
                f"missing (array {name!r} of clip {clip['id']}); rebuild the clip with microexp dataset --overwrite",
            ) from None
        except (ValueError, OSError, EOFError) as exc:
            raise FormatError(
                path,
                f"damaged .npy array ({str(exc).splitlines()[0][:160]}); rebuild the clip "
                "with microexp dataset --overwrite",
            ) from None


# ---------------------------------------------------------------------------------------------- writing


def empty_index(**fields) -> dict:
    from microexp import __version__

    doc = {
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": {"microexp": __version__},
        "sources": [],
        "clips": [],
    }
    doc.update(fields)
    return doc


def load_or_create_index(root: Path, **fields) -> dict:
    path = Path(root) / INDEX
    if path.exists():
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise FormatError(path, f"format {doc.get('format')!r} is not {FORMAT!r}")
        doc.setdefault("noise_filter_us", 0)  # indexes written before the filter existed
        doc.setdefault("face_box", "mtcnn")  # ... and before landmark boxes
        for key in ("slice_us", "size", "noise_filter_us", "face_box"):
            if key in fields and doc.get(key) != fields[key]:
                raise ParameterError(
                    f"{path}: the dataset was built with {key}={doc.get(key)}, not {fields[key]}; "
                    "build into a new folder"
                )
        return doc
    return empty_index(**fields)


def save_array(root: Path, clip_id: str, name: str, array: np.ndarray) -> str:
    """Write one array of a clip (atomically); returns its path relative to ``root``."""
    rel = Path("clips") / clip_id / f"{name}.npy"
    path = Path(root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.ascontiguousarray(array)
    with _written(path, "wb", needed=array.nbytes) as fh:
        _write_npy(fh, array)
    return rel.as_posix()


def _write_npy(fh, array: np.ndarray) -> None:
    np.save(fh, array)


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


@contextmanager
def _written(path: Path, mode: str, needed: int = 0, **open_kw):
    """Open ``path``'s ``.tmp`` sibling for writing; on success it replaces ``path``. A write that fails
    removes the partial ``.tmp`` and raises an OSError naming ``path``: ``disk full (...)`` for ENOSPC or
    EDQUOT, and for numpy's short write ('81920 requested and 4064 written', which carries no errno) when
    the folder then has less than ``needed`` bytes free."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, mode, **open_kw) as fh:
            yield fh
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        detail = exc.strerror or str(exc)
        if exc.errno in _NO_SPACE or (exc.errno is None and _free_bytes(path.parent) < needed):
            raise OSError(errno.ENOSPC, f"disk full ({detail})", str(path)) from None
        if exc.errno is None:  # a short write with room to spare: name the file all the same
            raise OSError(errno.EIO, f"write failed ({detail})", str(path)) from None
        raise
    os.replace(tmp, path)


def save_index(root: Path, doc: dict) -> None:
    """Write ``index.json`` (atomically) and its flat ``index.csv``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    doc["clips"].sort(key=lambda c: (c["subject"], c.get("label", 0), c.get("trial", 0), c["id"]))
    text = json.dumps(doc, indent=1) + "\n"
    with _written(root / INDEX, "w", needed=len(text)) as fh:
        fh.write(text)
    with _written(root / INDEX_CSV, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for c in doc["clips"]:
            for name, rel in c["arrays"].items():
                sensor = name.split("_")[0]
                info = c.get("sensors", {}).get(sensor, {})
                w.writerow(
                    {
                        "clip": c["id"],
                        "subject": c["subject"],
                        "au": c["au"],
                        "trial": c["trial"],
                        "sensor": name,
                        "slices": c["slices"],
                        "lux": round(float(c["lux"]), 1),
                        "segment": c["segment"],
                        "bag": ";".join(c["bags"]),
                        "box_source": info.get("box_source", ""),
                        "file": rel,
                    }
                )
