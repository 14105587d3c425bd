"""`microexp info PATH`: one JSON object describing a recording, a bag or a checkpoint.

Keys for every recording: format, width, height, events, on_events, t_first_us, t_last_us, frames,
triggers; a bag adds ``topics`` (per topic: type, messages, and for event streams seq_gaps, events ...).
Unreadable input: exit code 2 and a one-line error naming the file (and byte offset where known). Bags are
verified first (MCAP chunk CRCs, SQLite integrity_check): a damaged bag is such an error. A truncated bag
(killed recorder, file cut off) is described as far as it reads, with ``"truncated": true`` and the reason.
RAW files are decoded chunk by chunk (memory bounded by the chunk, whatever the file size). Anything but a
regular file or a folder (a pipe, a device) is refused without reading it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from microexp.errors import FormatError

RAW_MAGIC = b"% "
AEDAT4_MAGIC = b"#!AER-DAT4.0"
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's container


def add_arguments(parser) -> None:
    parser.add_argument(
        "path", help="a Prophesee .raw file, an AEDAT4 file, a rosbag2 folder (or .mcap/.db3) or a .pt checkpoint"
    )
    parser.add_argument(
        "--width", type=int, default=None, help="sensor width for RAW files whose header has no geometry"
    )
    parser.add_argument(
        "--height", type=int, default=None, help="sensor height for RAW files whose header has no geometry"
    )
    parser.add_argument("--indent", type=int, default=None, help="pretty-print the JSON with this indent")


def run(args) -> int:
    info = describe(args.path, width=args.width, height=args.height)
    json.dump(info, sys.stdout, indent=args.indent)
    sys.stdout.write("\n")
    return 0


def describe(path, width: int | None = None, height: int | None = None) -> dict:
    """The info dictionary of ``path`` (see the module docstring)."""
    p = Path(path)
    if not p.exists():
        raise FormatError(p, "does not exist")
    if not p.is_dir() and not p.is_file():
        raise FormatError(p, "not a regular file (a pipe, socket or device?): info reads files and bag folders only")
    if p.is_dir() or p.suffix in (".mcap", ".db3"):
        return describe_bag(p)
    with open(p, "rb") as fh:
        head = fh.read(16)
    if not head:
        raise FormatError(p, "empty file", 0)
    if head.startswith(AEDAT4_MAGIC):
        return describe_aedat4(p)
    if head.startswith(ZIP_MAGIC) or p.suffix in (".pt", ".pth", ".ckpt"):
        from microexp.models.checkpoint import describe_checkpoint

        return describe_checkpoint(p)
    if head.startswith(RAW_MAGIC) or p.suffix == ".raw":
        return describe_raw(p, width, height)
    raise FormatError(
        p, f"unrecognised file (magic {head[:8]!r}): expected a Prophesee RAW, AEDAT4, bag or checkpoint", 0
    )


def _event_summary(events, triggers, frames: int) -> dict:
    import numpy as np

    n = len(events)
    return {
        "events": n,
        "on_events": int(np.count_nonzero(events["p"])) if n else 0,
        "t_first_us": int(events["t"][0]) if n else None,
        "t_last_us": int(events["t"][-1]) if n else None,
        "frames": frames,
        "triggers": len(triggers),
    }


def _summary(p: Path, fmt: str, width, height, **extra) -> dict:
    """The fields every description starts with, counts at zero."""
    return {
        "path": str(p),
        "format": fmt,
        "width": width,
        "height": height,
        "events": 0,
        "on_events": 0,
        "t_first_us": None,
        "t_last_us": None,
        "frames": 0,
        "triggers": 0,
        **extra,
    }


def describe_raw(p: Path, width, height, chunk_bytes: int = 1 << 22) -> dict:
    """Streamed: one chunk of payload (and its decoded events) in memory at a time."""
    import numpy as np

    from microexp.events.raw import iter_raw, read_raw_header

    header = read_raw_header(p, width, height)
    out = _summary(p, f"prophesee-raw-{header.format}", header.width, header.height, rising_triggers=0)
    for events, triggers in iter_raw(p, chunk_bytes=chunk_bytes, width=width, height=height):
        if len(events):
            out["events"] += len(events)
            out["on_events"] += int(np.count_nonzero(events["p"]))
            if out["t_first_us"] is None:
                out["t_first_us"] = int(events["t"][0])
            out["t_last_us"] = int(events["t"][-1])
        if len(triggers):
            out["triggers"] += len(triggers)
            out["rising_triggers"] += int((triggers["value"] == 1).sum())
    if out["width"] is None:  # iter_raw took the caller's size
        out["width"], out["height"] = width, height
    out["header"] = header.fields
    return out


def describe_aedat4(p: Path) -> dict:
    from microexp.events.aedat4 import read_aedat4

    rec = read_aedat4(p)
    out = {"path": str(p), "format": "aedat4", "width": rec.width, "height": rec.height, "camera": rec.camera}
    out.update(_event_summary(rec.events, rec.triggers, len(rec.frames)))
    out["imu_samples"] = len(rec.imu)
    return out


def describe_bag(p: Path) -> dict:
    from microexp.bags.cdr import EVENT_PACKET
    from microexp.bags.events import IMAGE, StreamStats, iter_event_packets
    from microexp.bags.reader import Bag

    with Bag(p) as bag:
        integrity = bag.verify()
        topics = bag.topics()
        out = _summary(p, f"rosbag2-{bag.storage}", None, None)
        out |= {
            "messages": sum(t.messages for t in topics.values()),
            "truncated": bag.truncated,
            "topics": {},
        }
        out["integrity"] = integrity
        if bag.truncated:
            out["truncation"] = bag.truncation + "; counts cover what was flushed before it"
        for name, t in sorted(topics.items()):
            entry: dict = {"type": t.msgtype, "messages": t.messages}
            if t.msgtype == EVENT_PACKET:
                stats = StreamStats()
                for msg, events, triggers in iter_event_packets(bag, name):
                    stats.update(msg, events, triggers)
                d = stats.as_dict()
                entry.update(
                    {
                        k: d[k]
                        for k in (
                            "encoding",
                            "width",
                            "height",
                            "events",
                            "on_events",
                            "triggers",
                            "t_first_us",
                            "t_last_us",
                            "seq_gaps",
                            "seq_missing",
                            "bytes",
                        )
                    }
                )
                if out["width"] is None:
                    out["width"], out["height"] = stats.width, stats.height
                for k in ("events", "on_events", "triggers"):
                    out[k] += d[k]
                if stats.t_first_us is not None:
                    out["t_first_us"] = (
                        stats.t_first_us if out["t_first_us"] is None else min(out["t_first_us"], stats.t_first_us)
                    )
                    out["t_last_us"] = (
                        stats.t_last_us if out["t_last_us"] is None else max(out["t_last_us"], stats.t_last_us)
                    )
            elif t.msgtype == IMAGE:
                out["frames"] += t.messages
            out["topics"][name] = entry
    return out
