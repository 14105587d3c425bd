"""Which bags of a path to play (no rclpy): a bag itself, or the segment bags of a session folder.

A session folder's segment bags are taken in name order; a segment whose manifest status is ``error``, and a
bag folder without metadata.yaml (its recorder was killed), are skipped, each with one line saying so. Given
directly, a killed segment's folder is a bag like any other (read as ``truncated``, as `microexp info` does).
"""

from __future__ import annotations

import json
from pathlib import Path

from microexp.errors import FormatError

DATA_SUFFIXES = (".mcap", ".db3")


def is_bag(p: Path) -> bool:
    """A bag folder (metadata.yaml, or the data files of a recording that never closed) or a .mcap/.db3 file."""
    if p.is_file():
        return p.suffix in DATA_SUFFIXES
    return p.is_dir() and ((p / "metadata.yaml").exists() or any(p.glob("*.mcap")) or any(p.glob("*.db3")))


def playable_bags(path) -> tuple[list[Path], list[str]]:
    """``(bags to play, one line per bag skipped)`` for a bag or a session folder."""
    p = Path(path)
    if not p.exists():
        raise FormatError(p, "does not exist")
    if is_bag(p):
        return [p], []
    if not p.is_dir():
        raise FormatError(p, "neither a bag (folder, .mcap or .db3) nor a session folder")
    status: dict[str, tuple[str, str]] = {}
    manifest = p / "manifest.json"
    if manifest.exists():
        try:
            doc = json.loads(manifest.read_text())
            for seg in doc.get("segments", []):
                for b in seg.get("bags", []) or [seg.get("name")]:
                    status[str(b)] = (str(seg.get("status", "")), str(seg.get("error", "")))
        except (ValueError, AttributeError, TypeError):
            raise FormatError(manifest, "not a valid session manifest (JSON)") from None
    bags, skipped = [], []
    for d in sorted(c for c in p.iterdir() if c.is_dir()):
        if not is_bag(d):
            continue
        st, why = status.get(d.name, ("", ""))
        if st == "error":
            skipped.append(f"skipped {d}: segment status error ({why or 'no reason recorded'})")
        elif not (d / "metadata.yaml").exists():
            skipped.append(
                f"skipped {d}: no metadata.yaml (the recorder was killed); give this folder to replay "
                "directly to play what it holds"
            )
        else:
            bags.append(d)
    if not bags:
        raise FormatError(
            p,
            "neither a bag nor a session folder with playable bags"
            + (f" ({len(skipped)} skipped: killed or error segments)" if skipped else ""),
        )
    return bags, skipped
