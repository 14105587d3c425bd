"""`microexp evaluate` on a recorded synthetic session of a subject the default model never saw: the live path
(over DDS and in this process) against the offline verdicts of the same checkpoint on the same bags, spotting
against the rig's ground truth, no AU event while the face is at rest, and scores of saved events."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from helpers.cli import microexp_ok as microexp
from helpers.paths import REPO
from helpers.shown import assert_shown

pytestmark = [pytest.mark.ros, pytest.mark.slow]
# three movements the default model recognises offline on this subject
AUS = ["AU2", "AU26", "AU51"]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "S09"
    microexp(
        "record",
        "--source",
        "synthetic",
        "--aus",
        ",".join(AUS),
        "--subject",
        "S09",
        "--seed",
        "1",
        "--out",
        out,
        "--sensors",
        "davis346",
        "--time-scale",
        "0.5",
        timeout=300,
    )
    return out


def last_json(res) -> dict:
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def in_process(session, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_ip")
    return out, last_json(microexp("evaluate", session, "--in-process", "--out", out, "--quiet", timeout=600))


def test_live_path_in_process_gives_the_offline_verdicts(in_process):
    out, summary = in_process
    doc = json.loads((out / "evaluate.json").read_text())
    (report,) = doc["sessions"]
    segs = report["per_segment"]
    assert [s["au"] for s in segs] == AUS
    # one AU event per performed movement, judged as the offline evaluation judges the dataset's clip
    assert [s["events"] for s in segs] == [1, 1, 1]
    assert [s["live"] for s in segs] == [s["offline"] for s in segs] == AUS
    assert summary["live_accuracy"] == summary["offline_accuracy"] == 1.0
    assert summary["spotting"] == {"tp": 3.0, "fp": 0.0, "fn": 0.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert summary["au_events_in_rest"] == 0
    assert (out / "S09" / "timeline.png").stat().st_size > 10_000
    events = [json.loads(line) for line in (out / "S09" / "au_events.jsonl").read_text().splitlines()]
    assert [e["au"] for e in events] == AUS and all(e["onset_us"] < e["apex_us"] < e["offset_us"] for e in events)


def test_dds_evaluate_node_names_no_au_at_rest_and_spots_every_movement(session, in_process, tmp_path):
    """The default route: the session replayed over DDS at its recorded rate into the inference node."""
    summary = last_json(microexp("evaluate", session, "--out", tmp_path, "--no-offline", "--quiet", timeout=600))
    assert summary["mode"] == "dds@1"
    assert summary["au_events_in_rest"] == 0
    assert summary["spotting"]["tp"] == 3 and summary["spotting"]["fp"] == 0
    assert summary["live_accuracy"] == in_process[1]["live_accuracy"]
    windows = [json.loads(line) for line in (tmp_path / "S09" / "windows.jsonl").read_text().splitlines()]
    states = {w["state"] for w in windows}
    assert {"rest", "movement"} <= states, states
    # the face detector is warm before the node says ready: the first clip finds the face early
    first_face = next(i for i, w in enumerate(windows) if w["state"] != "no_face")
    assert first_face <= 10, first_face
    lat = summary["latency_apex_to_event_ms"]
    assert 0 < lat["p50_max"] <= lat["p99_max"] < 2000


def test_saved_events_are_scored_and_a_missed_movement_counts(session, in_process, tmp_path):
    out, _ = in_process
    events = (out / "S09" / "au_events.jsonl").read_text().splitlines()
    saved = tmp_path / "two.jsonl"
    saved.write_text("\n".join(events[:2]) + "\n")  # the AU51 event is lost
    summary = last_json(microexp("evaluate", session, "--events", saved, "--out", tmp_path / "o", "--no-offline"))
    assert summary["spotting"]["fn"] == 1 and summary["spotting"]["tp"] == 2
    assert abs(summary["live_accuracy"] - 2 / 3) < 1e-3 and summary["offline_accuracy"] is None


def test_readme_evaluate_line_as_typed(session, tmp_path):
    line = "microexp evaluate recordings/S09 --out out/evaluate"
    assert_shown(line)
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "S09").symlink_to(session)
    env = dict(os.environ)
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    res = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["segments"] == 3 and summary["offline_accuracy"] == 1.0 and summary["au_events_in_rest"] == 0
    assert (tmp_path / "out" / "evaluate" / "S09" / "timeline.png").is_file()
