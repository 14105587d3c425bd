"""The monitor page in a real headless browser (Debian's chromium driven by Playwright): on a running synthetic
session (`microexp demo`, as `make demo` runs it) it shows the event frame, the face box where the inference node
put it, the AU bars and the segment; a sensor process killed shows as stopped within 2 s; a wrong or missing token
is refused, by the page and by its websocket."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers.paths import REPO
from helpers.shown import assert_shown

from microexp.monitor.browser import wait_js
from microexp.vision.render_events import Colours

pytestmark = pytest.mark.slow
DAVIS_WIDTH = 346


def start(args: list[str], env=None) -> tuple[subprocess.Popen, list[str]]:
    """``python -m microexp.cli ARGS`` in the background; its stdout lines collect in the returned list."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "microexp.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []

    def read():
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def url_in(lines: list[str], prefix: str, timeout_s: float = 120.0) -> str:
    """The address a command printed after ``prefix``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in list(lines):
            if line.startswith(prefix):
                return line[len(prefix) :].split()[0]
        time.sleep(0.1)
    raise AssertionError(f"no line starting {prefix!r} in {lines[-20:]}")


def green_box(png: bytes, bbox: dict, natural_width: int) -> tuple | None:
    """``(x0, y0, x1, y1)`` in event pixels of the overlay-coloured outline inside ``bbox`` (the frame element's
    box in a screenshot of the viewport, CSS pixels, possibly fractional) of a frame ``natural_width`` event pixels
    wide, or None. Positions are measured from the element's own edges, so a fractional offset costs at most half a
    screen pixel."""
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    x0, y0 = int(np.floor(bbox["x"])), int(np.floor(bbox["y"]))
    x1, y1 = int(np.ceil(bbox["x"] + bbox["width"])), int(np.ceil(bbox["y"] + bbox["height"]))
    ys, xs = np.nonzero((img[y0:y1, x0:x1] == Colours().overlay).all(axis=2))
    if not xs.size:
        return None
    scale = bbox["width"] / natural_width
    left, top = bbox["x"] - x0, bbox["y"] - y0  # the element's edges inside the crop
    return (
        (xs.min() - left) / scale,
        (ys.min() - top) / scale,
        (xs.max() + 1 - left) / scale,
        (ys.max() + 1 - top) / scale,
    )


@pytest.fixture
def au_listener():
    """Every AUPrediction on /inference/au with its reception time (monotonic s), in this test's domain."""
    import rclpy

    from microexp.ros import lifecycle
    from microexp.ros.qos import RELIABLE_QOS
    from microexp.ros.runner import Runner
    from microexp_msgs.msg import AUPrediction

    lifecycle.init()
    runner = Runner("single")
    got: list = []
    node = runner.add(rclpy.create_node("test_monitor_listener"))
    node.create_subscription(
        AUPrediction,
        "/inference/au",
        lambda m: got.append((time.monotonic(), bool(m.face_found), tuple(float(v) for v in m.crop_box), m.state)),
        RELIABLE_QOS,
    )
    runner.start()
    yield got
    runner.close()


def test_the_page_on_a_running_session_shows_frame_face_box_au_bars_and_segment(page, au_listener, tmp_path):
    """The demo's session (synthetic subject, live inference on the DAVIS346 with MTCNN face boxes) with its
    monitor; the page shows the DAVIS346 event frame, the AU bars while a movement is spotted and the segment of
    the protocol; the face box in a screenshot of the frame lies where the inference node's AUPrediction put it
    (``crop_box``, within one event pixel of a box published in the second before the screenshot)."""
    demo, lines = start(["demo", "--out", str(tmp_path / "demo"), "--monitor-port", "0"])
    try:
        url = url_in(lines, "demo: live monitor on ")
        page.goto(url)
        frame = page.locator('figure[data-topic="/davis346/events"] img')
        seen = {"bars": None, "segment": None, "box": None}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not all(seen.values()):
            assert demo.poll() is None, lines[-30:]
            if seen["bars"] is None and page.locator("#au-bars .bar").count() >= 3:
                seen["bars"] = page.locator("#au-bars .bar").first.get_attribute("data-au")
                if os.environ.get("MICROEXP_MONITOR_SCREENSHOT"):  # docs/images/monitor.png is made this way
                    page.screenshot(path=os.environ["MICROEXP_MONITOR_SCREENSHOT"])
            segment = page.inner_text("#segment")
            if seen["segment"] is None and segment.isdigit():
                seen["segment"] = (int(segment), page.inner_text("#au"))
            # the DAVIS346 frame, shown pixel for pixel (a whole number of screen pixels per event pixel)
            if (
                seen["box"] is None
                and frame.count()
                and frame.evaluate("i => i.complete ? i.naturalWidth : 0") == DAVIS_WIDTH
            ):
                shot_at = time.monotonic()
                shot = page.screenshot()
                box = green_box(shot, frame.bounding_box(), DAVIS_WIDTH)
                published = [b for t, face, b, _ in list(au_listener) if face and shot_at - 1.5 <= t <= shot_at]
                if box is not None and published:
                    err = min(max(abs(a - b) for a, b in zip(box, p)) for p in published)
                    seen["box"] = (box, err)
                    (tmp_path / "page.png").write_bytes(shot)
            time.sleep(0.2)
        assert all(seen.values()), (seen, lines[-20:])
        assert seen["bars"].startswith("AU")
        assert seen["segment"][0] >= 1 and seen["segment"][1] in ("AU2", "AU12", "AU45", "AU61")
        box, err = seen["box"]
        # the node's box rounded to whole event pixels (draw_box) and the element's subpixel position: <= 1 pixel
        assert err <= 1.0, (box, err, sorted({b for _, face, b, _ in au_listener if face})[-20:])
        sensors = page.inner_text("#sensors")
        assert "davis346" in sensors and "evk4" in sensors and "webcam" in sensors
        assert page.inner_text("#subject") == "S05"
        page.screenshot(path=str(tmp_path / "monitor.png"))
    finally:
        stop(demo)


def test_a_sensor_killed_shows_as_stopped_within_2_s(page, testdata):
    """An EVK4 node playing a RAW file in a loop (its own process), the monitor in another; the sensor process is
    killed (SIGKILL: no goodbye) and the page's sensor row and frame say "stopped" within 2 s."""
    raw = testdata("events", "expelliarmus_evt3_sample.raw")
    sensor, _ = start(["play", "--evk4-file", str(raw), "--loop", "--qos", "sensor"])
    monitor, lines = start(["monitor", "--port", "0"])
    try:
        page.goto(url_in(lines, "monitor: "))
        row = page.locator("#sensor-evk4")
        wait_js(page, "document.querySelector('#sensor-evk4')?.dataset.state === 'streaming'", 60)
        assert page.locator('figure[data-topic="/evk4/events"]').count() == 1
        assert sensor.poll() is None
        sensor.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        wait_js(page, "document.querySelector('#sensor-evk4')?.dataset.state === 'stopped'", 10)
        shown = time.monotonic() - killed
        assert shown <= 2.0, shown
        assert row.get_attribute("data-state") == "stopped"
        wait_js(page, "document.querySelector('figure[data-topic=\"/evk4/events\"]').dataset.state === 'stopped'", 2)
    finally:
        stop(sensor, signal.SIGKILL)
        stop(monitor)


# --- the lines README.md and docs/monitor.md show, run as typed ---------------------------------------------------

MONITOR = "microexp monitor"
MONITOR_LAN = "microexp monitor --host 0.0.0.0"
RECORD = "ros2 launch microexp record.launch.py source:=synthetic sensors:=davis346 subject:=S09 aus:=AU12 out:=recordings/S09 time_scale:=0.5 monitor:=true"
DEFAULT_PORT = 8765


def shell(line: str, cwd, env=None) -> tuple[subprocess.Popen, list[str]]:
    """``line`` in bash as a user types it, `.venv/bin` first on PATH; its output lines collect in the list."""
    if env is None:
        env = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}")
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {line}"], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(ln.rstrip("\n") for ln in proc.stdout), daemon=True).start()
    return proc, lines


def end(proc: subprocess.Popen) -> None:
    """Ctrl-C to the command's process group, as a terminal sends it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def default_port():
    """The monitor's default port, skipped when something on this machine already listens on it."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: old closed connections pass
        try:
            s.bind(("0.0.0.0", DEFAULT_PORT))
        except OSError:
            pytest.skip(f"port {DEFAULT_PORT} is in use on this machine: the lines with the default port cannot run")
    return DEFAULT_PORT


def test_microexp_monitor_as_shown_serves_the_page_on_127_0_0_1(page, default_port, tmp_path):
    assert_shown(MONITOR)
    monitor, lines = shell(MONITOR, tmp_path)
    try:
        assert url_in(lines, "monitor: ") == f"http://127.0.0.1:{default_port}/"
        assert page.goto(f"http://127.0.0.1:{default_port}/").status == 200
        wait_js(page, "document.body.dataset.updated !== undefined", 30)
        assert page.inner_text("#link") == "live"
        assert page.inner_text("#au-state") == "no prediction yet"  # nothing runs beside it
    finally:
        end(monitor)
    assert monitor.returncode == 0, lines[-20:]


def test_a_wrong_or_missing_token_is_refused_by_page_and_websocket(page, default_port, tmp_path):
    """`microexp monitor --host 0.0.0.0` makes a token and prints the address with it once: the browser gets 403
    without it or with a wrong one, a websocket opened with a wrong token never connects; with the token the page
    goes live."""
    assert_shown(MONITOR_LAN)
    monitor, lines = shell(MONITOR_LAN, tmp_path)
    try:
        url = url_in(lines, "monitor: ")
        assert url.startswith(f"http://0.0.0.0:{default_port}/?token=")
        token = url.split("?token=", 1)[1]
        base = f"http://127.0.0.1:{default_port}/"
        for bad in (base, base + "?token=wrong-token-123"):
            response = page.goto(bad)
            assert response.status == 403 and "token" in page.inner_text("body")
        response = page.goto(f"{base}?token={token}")
        assert response.status == 200
        wait_js(page, "document.body.dataset.updated !== undefined", 30)
        assert page.inner_text("#link") == "live"
        opened = page.evaluate(
            """([port, bad]) => new Promise((done) => {
                 const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${bad}`);
                 ws.onopen = () => done("open");
                 ws.onerror = () => done("refused");
                 setTimeout(() => done("timeout"), 10000);
               })""",
            [default_port, "wrong-token-123"],
        )
        assert opened == "refused"
    finally:
        end(monitor)
    assert sum(token in line for line in lines) == 1  # printed once


def test_record_launch_with_monitor_true_shows_the_session(page, cli_env, default_port, tmp_path):
    """monitor:=true adds the monitor to the recording graph: the page shows the rig's DAVIS346 streaming, the
    segment of the protocol and the recorder writing; the session ends as it does without it."""
    from microexp.bags.manifest import load as load_manifest

    assert_shown(RECORD)
    launch, lines = shell(RECORD, tmp_path, env=cli_env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if page.goto(f"http://127.0.0.1:{default_port}/").status == 200:
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.5)
        seen: dict = {}
        deadline = time.monotonic() + 180
        while len(seen) < 3 and time.monotonic() < deadline and launch.poll() is None:
            if page.evaluate("document.querySelector('#sensor-davis346')?.dataset.state") == "streaming":
                seen["streaming"] = True
            segment, subject, au = page.evaluate(
                "['segment', 'subject', 'au'].map((id) => document.getElementById(id).textContent)"
            )
            if segment == "1" and au != "-":  # one read of the three: the page may change between two
                seen["segment"] = (subject, au)
            state = page.locator('[data-key="state"]')
            if state.count() and state.inner_text().startswith("recording seg_0001"):
                seen["recording"] = True
            time.sleep(0.2)
        assert seen.get("segment") == ("S09", "AU12") and len(seen) == 3, (seen, lines[-30:])
        code = launch.wait(timeout=300)
    finally:
        end(launch)
    assert code == 0, lines[-30:]
    manifest = load_manifest(tmp_path / "recordings" / "S09")
    assert manifest["end_reason"] == "protocol finished" and manifest["segments"][0]["status"] == "kept"
