"""The recording session without ROS (microexp.bags.recording): segments, loss per segment, markers, summary."""

from __future__ import annotations

import json

import numpy as np

from microexp.bags.cdr import EVENT_PACKET, event_packet_cdr
from microexp.bags.reader import Bag
from microexp.bags.recording import RecordingSession


def _packet(seq: int) -> bytes:
    return event_packet_cdr(seq * 1_000_000, "evk4", 1280, 720, seq, [np.zeros(4, np.uint16)])


def test_a_session_records_segments_counts_loss_and_ends_with_a_summary(tmp_path):
    clock = iter(range(1_000_000_000, 10**12, 1_000_000))
    markers, lines = [], []
    session = RecordingSession(
        tmp_path / "S01",
        {"/evk4/events": EVENT_PACKET},
        "S01",
        tail_quiet_s=0.0,
        tail_max_s=1.0,
        now_ns=lambda: next(clock),
        log=lambda level, text: lines.append((level, text)),
        on_marker=lambda event, seg, message: markers.append((event, seg["id"])),
    )
    seg = session.start_segment("S01", "AU12", 1, 300.0)
    for seq in (0, 1, 2, 5, 6):  # 3 and 4 never arrived
        session.put("/evk4/events", next(clock), _packet(seq))
    closed = session.stop_segment("kept")
    assert closed is seg and seg["status"] == "kept"
    loss = seg["loss"]["/evk4/events"]
    assert loss["received"] == 5 and loss["seq_missing"] == 2 and loss["lost"] == 2
    assert [ln for ln in lines if ln[0] == "warning" and "seq jumped to 5" in ln[1]]
    second = session.start_segment("S01", "AU12", 2, 300.0)
    session.put("/evk4/events", next(clock), _packet(7))
    summary = session.finish("interrupted (SIGINT)")
    assert second["status"] == "error" and "SIGINT" in second["error"]  # a take still open is incomplete
    assert markers == [("start", 1), ("stop", 1), ("start", 2), ("stop", 2)]
    assert summary["segments"] == 2 and summary["kept"] == 1 and summary["lost"] == 2
    assert summary["topics"]["/evk4/events"]["received"] == 6
    manifest = json.loads((tmp_path / "S01" / "manifest.json").read_text())
    assert manifest["end_reason"] == "interrupted (SIGINT)" and manifest["finished"]
    assert json.loads((tmp_path / "S01" / "summary.json").read_text())["lost"] == 2
    with Bag(tmp_path / "S01" / seg["name"]) as bag:
        assert sum(1 for _ in bag.messages(["/evk4/events"])) == 5
    assert session.finish("again") is summary  # once


def test_redo_marks_the_take_and_records_it_again(tmp_path):
    session = RecordingSession(tmp_path / "S02", {"/evk4/events": EVENT_PACKET}, "S02", tail_quiet_s=0.0)
    first = session.start_segment("S02", "AU4", 1, 0.0)
    old, new = session.redo_segment("blinked")
    assert old is first and old["status"] == "redone" and "blinked" in old["note"]
    assert new["trial"] == 2 and session.current is new
    labelled = session.label(new["id"], au="AU6")
    assert labelled["au"] == "AU6"
    session.finish("protocol finished")
