"""The real ROS 2 command line on the project: `ros2 launch microexp record.launch.py` records whole sessions
(read back with rosbags alone), `replay.launch.py` + `inference.launch.py` publish AU predictions, Ctrl-C and
SIGTERM leave closed, readable segments and a manifest that says what happened; `ros2 run / node / param /
service / topic / interface / pkg` on the project's nodes and messages.

The `ros2` command is built by `make ros2-cli` from the upstream jazzy sources in ../shared/ros2-src (cached
outside the tree); without those sources these tests skip. Every command line is run as README.md or docs/ show it,
through bash, with `.venv/bin` first on PATH (as after `. .venv/bin/activate`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.bags import read_all
from helpers.paths import TESTDATA
from helpers.shown import assert_shown
from helpers.wait import wait_until

from microexp.bags.manifest import load as load_manifest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

RECORD = "ros2 launch microexp record.launch.py source:=synthetic subject:=S01 aus:=AU2,AU12,AU45 out:=recordings/S01"
RECORD_FAST = "ros2 launch microexp record.launch.py source:=synthetic subject:=S02 aus:=AU2,AU12 out:=recordings/S02 time_scale:=0.5"
REPLAY = "ros2 launch microexp replay.launch.py bag:=recordings/S01 loop:=true"
INFER = "ros2 launch microexp inference.launch.py events_topic:=/evk4/events"
ECHO = "ros2 topic echo --once /inference/au microexp_msgs/msg/AUPrediction"
ECHO_EVENTS = "ros2 topic echo --once /inference/au_events microexp_msgs/msg/AUEvent"


def sh(line: str, env: dict, cwd: Path, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert res.returncode == 0, f"{line}: exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def start(line: str, env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    """A command in a process group of its own, as a terminal runs it (Ctrl-C signals the whole group)."""
    return subprocess.Popen(
        ["bash", "-c", f"exec {line}"],
        cwd=cwd,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def check_session(out: Path, aus: list[str]) -> dict:
    """A finished session: manifest and summary, and per segment every stream of the rig, contiguous seqs."""
    manifest = load_manifest(out)  # validated against the schema
    assert manifest["finished"] and manifest["end_reason"] == "protocol finished", manifest.get("end_reason")
    assert set(manifest["sensors"]) == {"davis346", "evk4", "webcam"}
    assert set(manifest["sync"]) == {"davis346", "evk4", "webcam"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dropped"] == 0 and summary["errors"] == [] and summary["kept"] == len(aus)
    segs = manifest["segments"]
    assert [s["au"] for s in segs] == aus and all(s["status"] == "kept" for s in segs)
    seqs: dict = {"/davis346/events": [], "/evk4/events": []}
    for seg in segs:
        msgs = read_all(out / seg["name"])
        for topic in (
            "/davis346/events",
            "/evk4/events",
            "/davis346/image_raw",
            "/webcam/image_raw",
            "/recorder/segments",
            "/synthetic/ground_truth",
        ):
            assert msgs.get(topic), f"{topic} missing from {seg['name']}: {sorted(msgs)}"
        markers = [m for _, m in msgs["/recorder/segments"]]
        assert any(m.event == "start" and m.segment_id == seg["id"] and m.au == seg["au"] for m in markers)
        performed = {m.au for _, m in msgs["/synthetic/ground_truth"] if m.au}
        assert performed == {seg["au"]}, f"{seg['name']} holds the ground truth of {performed}"
        phases = [m.phase for _, m in msgs["/synthetic/ground_truth"]]
        assert phases[0] == "neutral" and phases[-1] == "neutral", f"{seg['name']}: clip cut: {phases}"
        for topic in seqs:
            s = [int(m.seq) for _, m in msgs[topic]]
            assert s == list(range(s[0], s[0] + len(s))), f"{seg['name']} {topic}: seq gap"
            seqs[topic] += s
        assert seg["messages"]["/davis346/events"] == len(msgs["/davis346/events"])
    for topic, s in seqs.items():  # nothing published outside the segments, nothing lost between them
        assert s == list(range(len(s))), f"{topic}: seq gap across segments"
    return manifest


def run_record(line: str, env: dict, tmp: Path, timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    assert_shown(line)
    t0 = time.monotonic()
    res = sh(line, env, tmp, timeout=timeout, check=False)
    took = time.monotonic() - t0
    output = res.stdout + res.stderr
    assert res.returncode == 0, f"exit {res.returncode}\n{output[-4000:]}"
    assert "Traceback" not in output, output[-4000:]
    assert "no terminal on stdin: running the protocol unattended" in output
    print(f"{line}: {took:.1f} s")
    return res, took


@pytest.fixture(scope="module")
def recorded(cli_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("launch")
    run_record(RECORD, cli_env, tmp, timeout=420)
    return tmp


def test_record_launch_records_a_whole_session_and_ends_by_itself(recorded):
    check_session(recorded / "recordings" / "S01", ["AU2", "AU12", "AU45"])


@pytest.fixture(scope="module")
def sessions(recorded, cli_env):
    """recordings/S01 and recordings/S02 side by side, each recorded by its line as shown (docs/recording.md)."""
    run_record(RECORD_FAST, cli_env, recorded, timeout=300)
    return recorded


def test_record_launch_with_time_scale_below_one(sessions):
    check_session(sessions / "recordings" / "S02", ["AU2", "AU12"])


def last_json(res: subprocess.CompletedProcess) -> dict:
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_readme_offline_lines_on_the_recorded_sessions(sessions, cli_env):
    """The offline lines of README.md and docs/offline.md, each as shown, on the two sessions above: both dataset lines,
    then the training, checkpoint, export and reconstruction lines with `out/synth/dataset` standing for the
    synthetic dataset (a link to `data/real`: `microexp synth-dataset` itself takes too long for CI)."""
    tmp = sessions

    def run(line: str, timeout: float = 600) -> subprocess.CompletedProcess:
        assert_shown(line)
        t0 = time.monotonic()
        res = sh(line, cli_env, tmp, timeout=timeout)
        assert "Traceback" not in res.stderr, res.stderr[-3000:]
        print(f"{line}: {time.monotonic() - t0:.1f} s")
        return res

    for line, out in (
        ("microexp dataset recordings/S01 recordings/S02 --out data/real", "data/real"),
        ("microexp dataset recordings/S0* --out data/real_baf --noise-filter-us 5000", "data/real_baf"),
    ):
        got = last_json(run(line))
        assert got["out"] == out and got["clips"] == 5 and got["failed"] == [] and got["subjects"] == ["S01", "S02"]
        assert got["by_array"]["davis346"] == 5 and got["by_array"]["evk4"] == 5
    (tmp / "out" / "synth").mkdir(parents=True)
    (tmp / "out" / "synth" / "dataset").symlink_to(tmp / "data" / "real")

    got = last_json(
        run(
            "microexp train --data out/synth/dataset --model snn --modality events --config cpu --final --out runs/snn_events"
        )
    )
    assert got["model"] == "snn" and got["folds"] == 2 and 0.0 <= got["accuracy"] <= 1.0
    for name in ("metrics.json", "results.md", "confusion.png", "per_au_f1.png", "curves.png"):
        assert (tmp / "runs" / "snn_events" / name).is_file(), name
    info = json.loads(run("microexp info runs/snn_events/fold_S01/checkpoint.pt").stdout)
    assert info["architecture"] == "snn" and info["parameters"] > 0, info
    run("microexp export runs/snn_events --out models/au_snn_default.pt")
    assert (tmp / "models" / "au_snn_default.pt").stat().st_size > 0
    assert (tmp / "models" / "MODEL_CARD.md").is_file()

    got = last_json(
        run("microexp train --data out/synth/dataset --model cnn3d --modality rgb --config cpu --out runs/cnn3d_rgb")
    )
    assert got["model"] == "cnn3d" and got["modality"] == "rgb" and got["folds"] == 2

    # one take of each AU: the takes protocol says what it needs, in one line, and exits non-zero
    line = "microexp train --data out/synth/dataset --protocol takes --out runs/snn_takes"
    assert_shown(line)
    res = sh(line, cli_env, tmp, timeout=300, check=False)
    err = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(err) == 1 and "--protocol takes needs two or more takes" in err[0], res.stderr

    got = last_json(run("microexp reconstruct train --data out/synth/dataset --sensor evk4 --out runs/cvae_evk4"))
    assert got["evk4"]["frames"] > 0 and 0.0 <= got["evk4"]["ssim"] <= 1.0
    assert (tmp / "runs" / "cvae_evk4" / "checkpoint.pt").is_file()


def test_inference_launch_on_a_replayed_session_publishes_predictions(recorded, cli_env):
    for line in (REPLAY, INFER, ECHO, ECHO_EVENTS):
        assert_shown(line)
    replay = start(REPLAY, cli_env, recorded, recorded / "replay.log")
    infer = start(INFER, cli_env, recorded, recorded / "infer.log")
    try:
        t0 = time.monotonic()
        res = sh(ECHO, cli_env, recorded, timeout=240)
        print(f"first AUPrediction after {time.monotonic() - t0:.1f} s")
        assert "probabilities:" in res.stdout and "model_id:" in res.stdout and "sensor: evk4" in res.stdout
        assert "state:" in res.stdout
        # a spotted movement of the looped session: the AU event, as any ROS tool sees it
        res = sh(ECHO_EVENTS, cli_env, recorded, timeout=240)
        assert "onset_us:" in res.stdout and "apex_us:" in res.stdout and "au: AU" in res.stdout, res.stdout
        assert "confidence:" in res.stdout and "model_id:" in res.stdout
        # the node owns its subscriptions, reliable as the replay publishes
        # a fresh ros2 process discovers the graph asynchronously: the node may take a moment to appear to it
        info = wait_until(
            lambda: (
                (found := sh("ros2 node info /inference", cli_env, recorded, check=False)).returncode == 0
                and found.stdout
            ),
            60,
            "`ros2 node info /inference` never found the node",
        )
        subs = info[info.index("Subscribers:") : info.index("Publishers:")]
        assert "/evk4/events: event_camera_msgs/msg/EventPacket" in subs, info
        verbose = sh("ros2 topic info --verbose /evk4/events", cli_env, recorded).stdout
        assert "Node name: inference" in verbose and "RELIABLE" in verbose.split("Node name: inference")[1][:900]
        nodes = sh("ros2 node list", cli_env, recorded).stdout.split()
        assert "/inference" in nodes and not any(n.startswith("/_") for n in nodes), nodes
    finally:
        for proc in (infer, replay):
            os.killpg(proc.pid, signal.SIGINT)
        for proc in (infer, replay):
            proc.wait(timeout=60)
    for name in ("infer.log", "replay.log"):
        assert "Traceback" not in (recorded / name).read_text(), (recorded / name).read_text()[-3000:]


def _interrupted_session(cli_env, tmp: Path, send) -> tuple[dict, str, int]:
    line = (
        "ros2 launch microexp record.launch.py source:=synthetic subject:=S03 aus:=AU2,AU12,AU45 "
        "out:=recordings/S03 sensors:=davis346,webcam time_scale:=0.5"
    )
    out = tmp / "recordings" / "S03"
    proc = start(line, cli_env, tmp, tmp / "launch.log")
    try:

        def first_take_recording():
            try:
                segs = json.loads((out / "manifest.json").read_text())["segments"]
            except (OSError, ValueError, KeyError):
                return False
            return segs and segs[0]["status"] == "recording"

        try:
            wait_until(first_take_recording, 180)
        except AssertionError:
            pytest.fail("the first segment never started:\n" + (tmp / "launch.log").read_text()[-3000:])
        time.sleep(3.5)  # stimulus: the signal comes 3.5 s into the first take, while its clip is performed
        import psutil

        nodes = psutil.Process(proc.pid).children(recursive=True)
        send(proc)
        code = proc.wait(timeout=90)
        _, alive = psutil.wait_procs(nodes, timeout=60)  # every node ends, none is left orphaned
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return load_manifest(out), (tmp / "launch.log").read_text(), code


def _check_interrupted(manifest: dict, log: str, out: Path, reason: str) -> None:
    assert "Traceback" not in log, log[-4000:]
    assert manifest["finished"] and reason in manifest["end_reason"], manifest["end_reason"]
    first = manifest["segments"][0]
    assert first["status"] == "error" and reason in first["error"], first
    msgs = read_all(out / first["name"])  # closed: rosbags reads it whole (metadata written)
    assert (out / first["name"] / "metadata.yaml").exists()
    assert msgs["/davis346/image_raw"] and msgs["/recorder/segments"]
    assert (out / "summary.json").exists()


@pytest.mark.parametrize("times", [1, 3])
def test_ctrl_c_closes_the_open_segment_and_says_so(cli_env, tmp_path, times):
    def ctrl_c(proc):
        for _ in range(times):  # a terminal sends SIGINT to the whole process group
            os.killpg(proc.pid, signal.SIGINT)
            time.sleep(0.2)  # stimulus: Ctrl-C pressed again after 0.2 s (not a wait before an assert)

    manifest, log, code = _interrupted_session(cli_env, tmp_path, ctrl_c)
    _check_interrupted(manifest, log, tmp_path / "recordings" / "S03", "SIGINT")


def test_sigterm_closes_the_open_segment_and_says_so(cli_env, tmp_path):
    # as `docker stop` or systemd stop it: SIGTERM to ros2 launch, which then stops its nodes
    manifest, log, code = _interrupted_session(cli_env, tmp_path, lambda proc: proc.send_signal(signal.SIGTERM))
    # ros2 launch cancels itself on SIGTERM without stopping its nodes; they stop when their parent is gone
    _check_interrupted(manifest, log, tmp_path / "recordings" / "S03", "SIGTERM")


def test_a_dead_sensor_node_ends_the_launch_with_the_reason(cli_env, tmp_path):
    def kill_synthetic(proc):
        import psutil

        victims = [
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            if any("synthetic_node" in part for part in p.cmdline())
        ]
        assert victims, "no synthetic_node process under ros2 launch"
        for p in victims:
            p.kill()

    manifest, log, code = _interrupted_session(cli_env, tmp_path, kill_synthetic)
    assert code == 1, log[-3000:]
    _check_interrupted(manifest, log, tmp_path / "recordings" / "S03", "node synthetic exited (exit code -9)")


def test_ros2_run_node_param_service_interface_pkg(cli_env, tmp_path):
    """A recorder started alone with `ros2 run`, inspected and driven with the ros2 command line; SIGINT ends
    its session (summary.json, manifest finished)."""
    execs = sh("ros2 pkg executables microexp", cli_env, tmp_path).stdout.split("\n")
    assert {
        f"microexp {n}"
        for n in (
            "recorder_node",
            "protocol_node",
            "synthetic_node",
            "inference_node",
            "replay_node",
            "davis346_node",
            "evk4_node",
            "webcam_node",
        )
    } <= set(execs)
    shown = sh("ros2 interface show microexp_msgs/msg/AUPrediction", cli_env, tmp_path).stdout
    assert "float32[] probabilities" in shown or "probabilities" in shown
    assert "string reason" in sh("ros2 interface show microexp_msgs/srv/EndSession", cli_env, tmp_path).stdout
    rec = start(
        "ros2 run microexp recorder_node --ros-args -p out:=alone -p subject:=S04",
        cli_env,
        tmp_path,
        tmp_path / "run.log",
    )
    try:
        wait_until(
            lambda: "/recorder" in sh("ros2 node list", cli_env, tmp_path).stdout.split(),
            60,
            "`ros2 node list` never showed /recorder",
            period_s=0.5,
        )
        assert sh("ros2 param get /recorder subject", cli_env, tmp_path).stdout.strip() == "String value is: S04"
        # the recorder's own subscriptions (taken by its reader thread), no hidden helper node
        wait_until(
            lambda: (
                "/recorder/segments: microexp_msgs/msg/SegmentMarker"
                in sh("ros2 node info /recorder", cli_env, tmp_path).stdout.split("Publishers:")[0]
            ),
            30,
            "`ros2 node info /recorder` never listed its /recorder/segments subscription",
            period_s=0.5,
        )
        assert not [n for n in sh("ros2 node list", cli_env, tmp_path).stdout.split() if n.startswith("/_")]
        services = sh("ros2 service list", cli_env, tmp_path).stdout.split()
        assert {"/recorder/start_segment", "/recorder/end_session", "/recorder/take_status"} <= set(services)
        res = sh(
            "ros2 service call /recorder/start_segment microexp_msgs/srv/StartSegment "
            '"{subject: S04, au: AU12, trial: 1}"',
            cli_env,
            tmp_path,
        )
        assert "success=True" in res.stdout, res.stdout
        # the writer thread opened the segment's bag (Ctrl-C then closes a bag that exists)
        wait_until(lambda: any((tmp_path / "alone").glob("seg_0001*/*")), 30, "the segment's bag was never opened")
        os.killpg(rec.pid, signal.SIGINT)
        rec.wait(timeout=60)
    finally:
        if rec.poll() is None:
            os.killpg(rec.pid, signal.SIGKILL)
    log = (tmp_path / "run.log").read_text()
    assert "Traceback" not in log, log
    manifest = load_manifest(tmp_path / "alone")
    assert manifest["finished"] and "SIGINT" in manifest["end_reason"]
    assert manifest["segments"][0]["status"] == "error"
    assert (tmp_path / "alone" / "summary.json").exists()
    read_all(tmp_path / "alone" / manifest["segments"][0]["name"])


def test_record_launch_from_a_real_recording(cli_env, tmp_path):
    """source:=file under launch: the DAVIS346 node plays a real AEDAT4 recording (looped by a parameter file)
    into the protocol's segment."""
    aedat = TESTDATA / "events" / "tonic_sample.aedat4"
    if not aedat.exists():
        pytest.skip(f"test recording {aedat} is absent (set MICROEXP_TESTDATA to the shared data folder)")
    (tmp_path / "loop.yaml").write_text("davis346:\n  ros__parameters:\n    loop: true\n")
    line = (
        f"ros2 launch microexp record.launch.py source:=file davis_file:={aedat} sensors:=davis346 "
        "subject:=S05 aus:=AU12 out:=recordings/S05 time_scale:=0.5 params_file:=loop.yaml"
    )
    res = sh(line, cli_env, tmp_path, timeout=240, check=False)
    assert res.returncode == 0 and "Traceback" not in res.stdout + res.stderr, (res.stdout + res.stderr)[-3000:]
    manifest = load_manifest(tmp_path / "recordings" / "S05")
    assert manifest["end_reason"] == "protocol finished" and manifest["source"] == "file"
    assert list(manifest["sensors"]) == ["davis346"]
    seg = manifest["segments"][0]
    assert seg["status"] == "kept", seg
    assert read_all(tmp_path / "recordings" / "S05" / seg["name"]).get("/davis346/events"), (
        seg,
        (res.stdout + res.stderr)[-3000:],
    )


def test_protocol_with_a_terminal_under_launch_takes_keys(cli_env, tmp_path):
    """protocol_prefix gives the protocol node a terminal (here a pseudo-terminal that types space, as the
    experimenter would in the terminal emulator a real prefix opens): it shows its UI and waits for the key."""
    helper = Path(__file__).parent / "helpers" / "pty_keys.py"
    line = (
        "ros2 launch microexp record.launch.py source:=synthetic sensors:=davis346,webcam subject:=S06 aus:=AU2 "
        f"out:=recordings/S06 time_scale:=0.3 protocol_prefix:='{sys.executable} {helper} SPACE'"
    )
    res = sh(line, cli_env, tmp_path, timeout=240, check=False)
    output = res.stdout + res.stderr
    assert res.returncode == 0 and "Traceback" not in output, output[-3000:]
    assert "no terminal on stdin" not in output and "space start" in output and "session complete" in output
    manifest = load_manifest(tmp_path / "recordings" / "S06")
    assert manifest["end_reason"] == "protocol finished" and manifest["segments"][0]["status"] == "kept"
