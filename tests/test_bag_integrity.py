"""Issue 23 in bags, replay and dataset: checksums of the project's sqlite3 bags, obvious damage as an error,
killed .db3 files given directly, gaps in recorded time, segments flagged foreign.

Every fault is checked through the real command in a child process with a timeout: exit status, the one line
that names the file (topic, message index), and that nothing hung.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.cli import microexp, one_line_error
from test_faults import KILL_WRITER, STRING, cdr_string

from microexp.bags.integrity import CHECKSUM_TABLE, EVENT_PACKET
from microexp.bags.reader import Bag
from microexp.bags.types import typestore
from microexp.bags.writer import SegmentWriter
from microexp.playback import Timeline, play

T0 = 1_700_000_000_000_000_000
REAL_BAGS = (
    "codecs_evt3_trigger",
    "codecs_libcaer_rollover",
    "event_camera_py_test_events_1",
    "event_camera_py_test_events_2",
)


def strings_bag(root: Path, name: str, times_ns, storage: str = "sqlite3") -> Path:
    """A closed bag of String messages ``00000000yyy...`` at ``times_ns``, written by the recorder's writer."""
    w = SegmentWriter(root, {"/x": STRING}, storage=storage)
    w.open_segment(name, 0)
    for i, t in enumerate(times_ns):
        w.put("/x", int(t), cdr_string(f"{i:08d}" + "y" * 100))
    w.stop()
    assert not w.errors
    return root / name


def flip_inside_message(db: Path, index: int, width: int = 16) -> None:
    """Invert ``width`` bytes inside the payload of String message ``index`` (a damaged region of the file)."""
    data = bytearray(db.read_bytes())
    at = data.find(f"{index:08d}yyy".encode())
    assert at > 0
    for k in range(20, 20 + width):
        data[at + k] ^= 0xFF
    db.write_bytes(bytes(data))


# ---------------------------------------------------------------------------------------------- 1. checksums


def test_own_sqlite3_bags_carry_a_checksum_per_message_and_third_party_bags_are_unverified(tmp_path, testdata):
    bag = strings_bag(tmp_path, "seg", [T0 + i * 1_000_000 for i in range(500)])
    with sqlite3.connect(bag / "seg.db3") as conn:
        assert conn.execute(f"SELECT count(*) FROM {CHECKSUM_TABLE}").fetchone()[0] == 500
    res = microexp("info", bag, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["integrity"]["checksums"] == "ok"
    for name in REAL_BAGS:  # recorded elsewhere: no checksums (or MCAP chunks with CRC 0); they pass clean
        res = microexp("info", testdata("bags", name), timeout=120)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["integrity"]["checksums"] == "unverified", name


def test_a_flipped_region_in_a_sqlite3_bag_names_the_file_and_the_first_bad_message(tmp_path):
    bag = strings_bag(tmp_path, "seg", [T0 + i * 1_000_000 for i in range(3000)])
    db = bag / "seg.db3"
    flip_inside_message(db, 1234)
    t = time.monotonic()
    line = one_line_error(microexp("info", bag, timeout=120), str(db), "/x message 1234", "checksum")
    assert "damaged" in line and time.monotonic() - t < 120
    with pytest.raises(Exception, match="/x message 1234"):
        with Bag(bag) as b:
            b.verify()


def test_a_damaged_page_of_a_sqlite3_bag_names_the_last_good_message(tmp_path):
    """A whole 4 KiB page inverted (SQLite cannot read through it): the line names where reading stops."""
    bag = strings_bag(tmp_path, "seg", [T0 + i * 1_000_000 for i in range(3000)])
    db = bag / "seg.db3"
    data = bytearray(db.read_bytes())
    at = len(data) // 2 // 4096 * 4096
    data[at : at + 4096] = bytes(b ^ 0x5A for b in data[at : at + 4096])
    db.write_bytes(bytes(data))
    one_line_error(microexp("info", bag, timeout=120), str(db), "damaged sqlite3 bag", "unreadable", "/x message ")


def test_a_sqlite3_bag_killed_mid_write_verifies_as_far_as_it_goes(tmp_path):
    """SIGKILL while writing: what was committed carries its checksums (same transaction), so `info` on the
    .db3 itself (item 3: before, not recovered) and on its folder say truncated, checksums ok, same count."""
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILL_WRITER, "sqlite3", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            written, elapsed = int(line.split()[0]), float(line.split()[1])
            if elapsed > 1.5 and written > 5000:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    db = out / "seg" / "seg.db3"
    assert not (out / "seg" / "metadata.yaml").exists()
    by_file = microexp("info", db, timeout=120)  # first: the hot journal is still there
    assert by_file.returncode == 0, by_file.stderr
    by_folder = microexp("info", db.parent, timeout=120)
    assert by_folder.returncode == 0, by_folder.stderr
    a, b = json.loads(by_file.stdout), json.loads(by_folder.stdout)
    assert a["truncated"] is True and "recovered to its last committed transaction" in a["truncation"]
    assert b["truncated"] is True
    assert a["messages"] == b["messages"] > 0
    assert a["integrity"]["checksums"] == b["integrity"]["checksums"] == "ok"


# ---------------------------------------------------------------------------------------------- 2. obvious damage


def test_a_time_outside_the_recorded_range_in_an_unverified_bag_is_an_error(tmp_path):
    bag = strings_bag(tmp_path, "seg", [T0 + i * 1_000_000 for i in range(300)])
    db = bag / "seg.db3"
    with sqlite3.connect(db) as conn:  # a third-party bag (no checksums) whose time field took a hit
        conn.execute(f"DROP TABLE {CHECKSUM_TABLE}")
        conn.execute("UPDATE messages SET timestamp = timestamp + (1 << 40) WHERE id = 101")
    one_line_error(microexp("info", bag, timeout=120), str(db), "/x message 100", "outside")


def test_a_single_time_out_of_line_is_an_error_but_a_recorded_clock_step_is_not(tmp_path):
    times = [T0 + i * 1_000_000 for i in range(3000)]
    spiked = list(times)
    spiked[1000] -= 5_000_000_000  # one message 5 s back, its neighbours on time
    bag = strings_bag(tmp_path, "spike", spiked, storage="mcap")
    one_line_error(microexp("info", bag, timeout=120), "spike.mcap", "/x message 1000", "damaged timestamp")
    stepped = [t - (36_000 * 10**9 if i >= 1500 else 0) for i, t in enumerate(times)]  # the clock set back 10 h
    res = microexp("info", strings_bag(tmp_path, "step", stepped, storage="mcap"), timeout=120)
    assert res.returncode == 0, res.stderr
    [step] = json.loads(res.stdout)["integrity"]["clock_steps"]
    assert step["index"] == 1500 and step["topic"] == "/x"


def event_packet(n_bytes: int, seq: int) -> bytes:
    st = typestore()
    cls = st.types[EVENT_PACKET]
    hdr = st.types["std_msgs/msg/Header"](
        stamp=st.types["builtin_interfaces/msg/Time"](sec=1, nanosec=seq), frame_id="cam"
    )
    import numpy as np

    msg = cls(
        header=hdr,
        height=260,
        width=346,
        seq=seq,
        time_base=0,
        encoding="libcaer_cmp",
        is_bigendian=False,
        events=np.zeros(n_bytes, dtype=np.uint8),
    )
    return bytes(st.serialize_cdr(msg, EVENT_PACKET))


def test_an_event_packet_whose_length_disagrees_with_its_bytes_is_an_error(tmp_path):
    w = SegmentWriter(tmp_path, {"/ev": EVENT_PACKET}, storage="mcap")
    w.open_segment("seg", 0)
    for i in range(6):
        raw = bytearray(event_packet(64, i))
        if i == 3:  # the events array's length prefix says 164 bytes, 64 follow
            raw[-68:-64] = (164).to_bytes(4, "little")
        w.put("/ev", T0 + i * 1_000_000, bytes(raw))
    w.stop()
    one_line_error(microexp("info", tmp_path / "seg", timeout=120), "seg.mcap", "/ev message 3", "events array")


# ---------------------------------------------------------------------------------------------- 4. gaps


def test_timeline_shortens_gaps_and_plays_on_after_a_step_back():
    tl = Timeline(rate=1.0, max_gap_s=2.0)
    assert tl.due("/x", T0, 100.0) == (100.0, None)
    assert tl.due("/x", T0 + 500_000_000, 100.0)[0] == pytest.approx(100.5)
    at, gap = tl.due("/y", T0 + 500_000_000 + 36_000 * 10**9, 100.0)
    assert at == pytest.approx(102.5) and gap.topic == "/y" and gap.length_s == pytest.approx(36_000)
    assert "+36000.000 s" in gap.line() and "played as 2 s" in gap.line()
    at, gap = tl.due("/x", T0, 101.0)  # the clock set back 10 h: at once, after what is already due
    assert at == pytest.approx(102.5) and gap.length_s < 0 and "went back" in gap.line()
    kept = Timeline(rate=2.0, max_gap_s=2.0, keep_gaps=True)
    kept.due("/x", T0, 0.0)
    at, gap = kept.due("/x", T0 + 10 * 10**9, 0.0)
    assert at == pytest.approx(5.0) and gap.kept


def test_play_yields_each_message_when_due_and_logs_each_gap_once():
    lines: list = []
    msgs = [("/x", T0, "a"), ("/x", T0 + 100_000_000, "b"), ("/x", T0 + 3600 * 10**9, "c"), ("/x", T0, "d")]
    t = time.monotonic()
    out = list(play(msgs, rate=1.0, max_gap_s=0.2, log=lines.append))
    assert [m for _, _, m in out] == ["a", "b", "c", "d"]
    assert 0.25 < time.monotonic() - t < 5 and len(lines) == 2


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize("storage,jump_s", [("sqlite3", 36_000), ("mcap", -36_000)])
def test_replay_of_a_bag_with_a_recorded_clock_jump_takes_seconds_and_says_so_once(tmp_path, storage, jump_s):
    """20 messages 50 ms apart, the recorder's clock set forward (or back) by 10 h after the 10th: before, replay
    waited 10 h in silence; now it takes about 1 s + 2 s (+0 s back), with one line naming the gap."""
    times = [T0 + i * 50_000_000 + (jump_s * 10**9 if i >= 10 else 0) for i in range(20)]
    bag = strings_bag(tmp_path, "seg", times, storage=storage)
    t = time.monotonic()
    res = microexp("replay", bag, timeout=90)
    took = time.monotonic() - t
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if "gap in recorded time" in ln]
    assert len(lines) == 1, res.stderr
    assert "before /x" in lines[0] and f"{jump_s + 0.05:+.3f} s" in lines[0]
    assert "2023-11-14T22:13:20.450" in lines[0]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["messages"] == 20 and len(out["gaps"]) == 1
    assert took < 60  # startup aside: 1 s of messages and a 2 s pause, not 10 h


@pytest.mark.ros
@pytest.mark.slow
def test_replay_keep_gaps_waits_out_a_gap_and_max_gap_sets_its_length(tmp_path):
    times = [T0 + i * 10_000_000 for i in range(5)] + [T0 + 6 * 10**9 + i * 10_000_000 for i in range(5)]
    bag = strings_bag(tmp_path, "seg", times, storage="mcap")
    runs = {}
    for args in (("--max-gap", "0.5"), ("--keep-gaps",)):
        t = time.monotonic()
        res = microexp("replay", bag, *args, timeout=90)
        runs[args[0]] = time.monotonic() - t
        assert res.returncode == 0, res.stderr[-2000:]
        assert sum("gap in recorded time" in ln for ln in res.stderr.splitlines()) == 1
    assert runs["--keep-gaps"] - runs["--max-gap"] > 4.5, runs  # 6 s waited out against 0.5 s


@pytest.mark.ros
def test_replay_publishes_nothing_of_a_damaged_sqlite3_bag(tmp_path):
    bag = strings_bag(tmp_path, "seg", [T0 + i * 1_000_000 for i in range(3000)])
    flip_inside_message(bag / "seg.db3", 1234)
    res = microexp("replay", bag, "--rate", "0", timeout=120)
    one_line_error(res, str(bag / "seg.db3"), "/x message 1234", "checksum")
    assert res.stdout == ""  # stopped before the first message went out


# ---------------------------------------------------------------------------------------------- 5. foreign


def davis_session(root: Path, testdata, foreign_segment: int) -> Path:
    """A session of two kept segments of real DAVIS346 packets (event_camera_py test_events_2 on
    /davis346/events), written with the project's writer and manifest; one is flagged foreign."""
    from microexp.bags.manifest import Manifest

    with Bag(testdata("bags", "event_camera_py_test_events_2")) as src:
        packets = [(t, raw) for _, _, t, raw in src.messages()]
    m = Manifest(root, "S01", "mcap")
    w = SegmentWriter(root, {"/davis346/events": EVENT_PACKET}, storage="mcap")
    for k, au in enumerate(("AU2", "AU4"), start=1):
        seg = m.add_segment("S01", au, 1, 300.0, packets[0][0])
        w.open_segment(seg["name"], 0)
        for t, raw in packets:
            w.put("/davis346/events", t, raw)
        w.close_segment()
        seg.update(status="kept", stop_ns=packets[-1][0], bags=[seg["name"]])
        if k == foreign_segment:
            seg["foreign_publishers"] = [
                {"topic": "/davis346/events", "node": "/intruder", "gid": "01ab", "foreign": "not in the session"}
            ]
    w.stop()
    m.save()
    return root


@pytest.mark.slow
def test_dataset_skips_a_segment_flagged_foreign_unless_allowed(tmp_path, testdata):
    session = davis_session(tmp_path / "S01_session", testdata, foreign_segment=2)
    args = ("--quiet", "--no-webcam", "--sensors", "davis346", "--max-slices", "4")
    res = microexp("dataset", session, "--out", tmp_path / "ds", *args, timeout=600)
    assert res.returncode == 1, res.stderr[-3000:]
    skipped = [ln for ln in res.stderr.splitlines() if ln.startswith("skipped")]
    assert len(skipped) == 1 and "seg_0002_AU4_t1" in skipped[0] and "foreign" in skipped[0]
    assert "/intruder" in skipped[0] and "--allow-foreign" in skipped[0] and "Traceback" not in res.stderr
    index = json.loads((tmp_path / "ds" / "index.json").read_text())
    assert [c["segment"] for c in index["clips"]] == ["seg_0001_AU2_t1"]
    assert "foreign" in index["skipped"][0]["error"]

    res = microexp("dataset", session, "--out", tmp_path / "ds2", "--allow-foreign", *args, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["foreign"] == 1
    clips = {c["segment"]: c for c in json.loads((tmp_path / "ds2" / "index.json").read_text())["clips"]}
    assert set(clips) == {"seg_0001_AU2_t1", "seg_0002_AU4_t1"}
    assert clips["seg_0002_AU4_t1"]["foreign"][0]["node"] == "/intruder" and "foreign" not in clips["seg_0001_AU2_t1"]


@pytest.mark.slow
def test_dataset_skips_a_damaged_sqlite3_bag_naming_the_message(tmp_path):
    bag = strings_bag(tmp_path / "bags", "seg", [T0 + i * 1_000_000 for i in range(3000)])
    flip_inside_message(bag / "seg.db3", 1234)
    res = microexp("dataset", bag, "--out", tmp_path / "ds", "--quiet", timeout=300)
    assert res.returncode == 1, res.stderr[-3000:]
    skipped = [ln for ln in res.stderr.splitlines() if ln.startswith("skipped")]
    assert len(skipped) == 1 and "seg.db3" in skipped[0] and "/x message 1234" in skipped[0], res.stderr
