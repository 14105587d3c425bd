"""The bag reader on real bags (quirks included) and on broken bag folders: clear errors, never a trace."""

import json
import shutil
import subprocess
import sys

import pytest

from microexp.bags.reader import Bag
from microexp.errors import FormatError

BAGS = {
    "codecs_evt3_trigger": ("sqlite3", 105),
    "codecs_libcaer_rollover": ("sqlite3", 201),
    "event_camera_py_test_events_1": ("sqlite3", 517),
    "event_camera_py_test_events_2": ("mcap", 100),  # metadata names no storage identifier
}


@pytest.mark.parametrize("name", sorted(BAGS))
def test_real_bags_open_with_their_quirks(testdata, name):
    storage, count = BAGS[name]
    with Bag(testdata("bags", name)) as bag:
        assert bag.storage == storage
        topics = bag.topics()
        assert topics["/event_camera/events"].messages == count
        assert topics["/event_camera/events"].msgtype == "event_camera_msgs/msg/EventPacket"
        msgs = [bag.deserialize(raw, mt) for _, mt, _, raw in bag.messages()]
    assert len(msgs) == count
    assert all(m.width > 0 and m.height > 0 for m in msgs)


def _copy(testdata, tmp_path, name="codecs_evt3_trigger"):
    dst = tmp_path / name
    shutil.copytree(testdata("bags", name), dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def test_folder_without_metadata(testdata, tmp_path):
    """A sqlite3 bag folder without metadata.yaml is what a killed recorder leaves: read as truncated (issue 15);
    a folder without metadata and without data files is not a bag."""
    bag = _copy(testdata, tmp_path)
    (bag / "metadata.yaml").unlink()
    with Bag(bag) as b:
        assert b.truncated and "no metadata.yaml" in b.truncation
        assert sum(t.messages for t in b.topics().values()) > 0
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FormatError, match="no metadata.yaml"):
        Bag(empty)


def test_metadata_naming_a_missing_file(testdata, tmp_path):
    bag = _copy(testdata, tmp_path)
    next(bag.glob("*.db3")).unlink()
    with pytest.raises(FormatError, match="missing"):
        Bag(bag)


def test_metadata_not_yaml(tmp_path):
    (tmp_path / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed\n")
    with pytest.raises(FormatError, match="metadata.yaml"):
        Bag(tmp_path)


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"\x00\x01garbage" * 50, "unknown magic")])
def test_data_file_with_wrong_bytes(testdata, tmp_path, content, reason):
    bag = _copy(testdata, tmp_path)
    next(bag.glob("*.db3")).write_bytes(content)
    with pytest.raises(FormatError, match=reason) as exc:
        Bag(bag)
    assert ".db3" in str(exc.value) and "at byte 0" in str(exc.value)


def test_truncated_sqlite_file(testdata, tmp_path):
    bag = _copy(testdata, tmp_path)
    db = next(bag.glob("*.db3"))
    db.write_bytes(db.read_bytes()[:5000])
    with pytest.raises(FormatError) as exc:
        with Bag(bag) as b:
            list(b.messages())
    assert db.name in str(exc.value)


def run_info(path):
    return subprocess.run(
        [sys.executable, "-m", "microexp.cli", "info", str(path)], capture_output=True, text=True, timeout=120
    )


def test_info_cli_bad_input_is_one_line_exit_2(tmp_path):
    (tmp_path / "empty.raw").write_bytes(b"")
    for path in (tmp_path / "nothing-here", tmp_path / "empty.raw", tmp_path):
        res = run_info(path)
        assert res.returncode == 2, res.stderr
        assert res.stdout == ""
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
        assert str(path) in res.stderr


def test_info_cli_on_a_bag_prints_json(testdata):
    res = run_info(testdata("bags", "codecs_evt3_trigger"))
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    for key in (
        "format",
        "width",
        "height",
        "events",
        "on_events",
        "t_first_us",
        "t_last_us",
        "frames",
        "triggers",
        "topics",
    ):
        assert key in info
    topic = info["topics"]["/event_camera/events"]
    assert topic["messages"] == 105 and topic["seq_gaps"] == 0
