"""Reading bags back with rosbags alone (not the project's own reader)."""

from __future__ import annotations

from pathlib import Path

from rosbags.highlevel import AnyReader


def read_all(bag_dir) -> dict:
    """Every message of a bag folder with rosbags alone: {topic: [(t_ns, msg)]}."""
    out: dict = {}
    with AnyReader([Path(bag_dir)]) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype)))
    return out
