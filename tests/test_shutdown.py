"""One signal policy (microexp.ros.lifecycle): SIGTERM ends a command or a node executable exactly as SIGINT does
(the same closing of segments, the same exit code), within a bounded time, with the signal as the end reason and
no internal error; rclpy's context stays up until the nodes are destroyed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.wait import wait_until

pytestmark = pytest.mark.ros


def _segments(out: Path) -> list[dict]:
    try:
        return json.loads((out / "manifest.json").read_text())["segments"]
    except (OSError, ValueError, KeyError):
        return []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_record_with_the_same_closing_and_exit_code(tmp_path, sig):
    out = tmp_path / "S05"
    cmd = [sys.executable, "-m", "microexp.cli", "record", "--source", "synthetic", "--aus", "AU2,AU12"]
    cmd += ["--sensors", "davis346", "--subject", "S05", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(
            lambda: any(s["status"] == "recording" for s in _segments(out)) or proc.poll() is not None,
            180,
            "the first segment never started",
        )
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(3.0)  # stimulus: the take is being performed when the signal arrives
        proc.send_signal(sig)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        stop_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    name = signal.Signals(sig).name
    assert proc.returncode == 130, (proc.returncode, err[-3000:])
    assert stop_s < 30, stop_s
    assert "Traceback" not in err and "RCLError" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("microexp record")]
    assert lines and name in lines[-1], err[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["finished"] and name in manifest["end_reason"], manifest["end_reason"]
    first = manifest["segments"][0]
    assert first["status"] == "error" and name in first["error"], first
    assert (out / first["name"] / "metadata.yaml").exists(), "the open segment was closed"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_a_node_executable_cleanly_mid_playback(testdata, sig):
    """A sensor node publishing a file (as `ros2 run` or `ros2 launch` starts it): the signal ends it with exit 0,
    its source thread stopped before its publishers are destroyed, nothing printed as an error."""
    from microexp.ros.bench.load import node_cmd

    raw = testdata("events", "expelliarmus_evt3_sample.raw")
    cmd = node_cmd("evk4_node", "evk4", {"file": str(raw), "rate": 1.0, "loop": True, "wait_for_subscribers_s": 0.0})
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        import threading

        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        time.sleep(3.0)  # stimulus: the node plays (in a loop, at 1x) for a while; the signal arrives mid-playback
        assert proc.poll() is None, "".join(lines)[-3000:]
        proc.send_signal(sig)
        code = proc.wait(timeout=30)
        reader.join(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = "".join(lines)
    assert code == 0, log[-3000:]
    assert "Traceback" not in log and "ERROR" not in log and "failed" not in log, log[-3000:]
    assert "playback finished" in log, log[-3000:]  # the source thread ended before the node was destroyed


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_replay_while_it_waits_out_a_recorded_gap(tmp_path, sig):
    """`microexp replay --keep-gaps` of a bag whose recorder clock jumped 10 h: it waits the gap out, and a signal
    ends the wait at once (what Docker and systemd send is SIGTERM), exit 130 for both signals."""
    from test_bag_integrity import T0, strings_bag

    times = [T0 + i * 50_000_000 + (36_000 * 10**9 if i >= 5 else 0) for i in range(10)]
    bag = strings_bag(tmp_path, "seg", times, storage="mcap")
    cmd = [sys.executable, "-m", "microexp.cli", "replay", str(bag), "--keep-gaps"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    import threading

    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("gap in recorded time" in ln for ln in lines), 60, "replay never reached the gap")
        proc.send_signal(sig)
        t0 = time.monotonic()
        code = proc.wait(timeout=30)
        stop_s = time.monotonic() - t0
        reader.join(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = "".join(lines)
    assert code == 130 and stop_s < 10, (code, stop_s, err[-2000:])
    assert "Traceback" not in err, err[-3000:]
