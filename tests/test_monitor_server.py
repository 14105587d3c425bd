"""The monitor's web server over real HTTP and websockets on 127.0.0.1 (no ROS, no browser): the routes it has
and the ones it has not, the token, the Host check, a port taken, and `microexp monitor`'s own lines."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import subprocess
import sys

import aiohttp
import numpy as np
import pytest
from helpers.cli import microexp, one_line_error

from microexp.errors import MicroexpError
from microexp.events.dtype import EVENT_DTYPE
from microexp.monitor.server import MonitorServer
from microexp.monitor.state import MonitorState

TOKEN = "s3cret-token-for-tests"


def get(server: MonitorServer, path: str, host: str | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {"Host": host} if host else {}
    conn.request("GET", path, headers=headers)
    res = conn.getresponse()
    body = res.read()
    conn.close()
    return res.status, dict(res.getheaders()), body


async def ws_first(url: str):
    """The first message of the websocket at ``url``, or the HTTP status that refused it."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
                msg = await ws.receive(timeout=10)
                return json.loads(msg.data)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


@pytest.fixture
def state():
    st = MonitorState()
    ev = np.zeros(3, dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = [1, 2, 3], [4, 5, 6], [10, 20, 30], 1
    st.events("/davis346/events", ev, 346, 260)
    return st


def test_the_page_its_files_frames_and_snapshots_and_nothing_else(state):
    server = MonitorServer(state, port=0).start()
    try:
        status, headers, body = get(server, "/")
        assert status == 200 and b"<title>microexp monitor</title>" in body
        assert headers["Cache-Control"] == "no-store" and "default-src 'self'" in headers["Content-Security-Policy"]
        assert b"http://" not in body and b"https://" not in body  # nothing fetched from elsewhere
        for path in ("/monitor.js", "/monitor.css"):
            status, _, body = get(server, path)
            # the one absolute URL is the SVG namespace, a name that is never fetched
            assert status == 200 and re.findall(rb"https?://[^\s\"'`]*", body) in ([], [b"http://www.w3.org/2000/svg"])
        status, headers, body = get(server, "/frame?topic=/davis346/events")
        assert status == 200 and headers["Content-Type"] == "image/png" and body[:4] == b"\x89PNG"
        assert get(server, "/frame?topic=/nothing")[0] == 404
        # no listing, no files: only the routes above exist
        for path in ("/page/", "/page/index.html", "/static/", "/../../etc/passwd", "/monitor", "/index.html"):
            assert get(server, path)[0] == 404, path
        snap = asyncio.run(ws_first(f"ws://127.0.0.1:{server.port}/ws"))
        assert snap["frames"] == {"/davis346/events": {"kind": "events", "seq": 1}}
        assert snap["sensors"]["davis346"]["state"] == "streaming"
    finally:
        server.stop()


def test_token_is_required_by_page_frames_and_websocket(state):
    server = MonitorServer(state, port=0, token=TOKEN).start()
    try:
        assert server.url.endswith(f"/?token={TOKEN}")
        for path in ("/", "/?token=wrong", "/frame?topic=/davis346/events", "/frame?topic=/davis346/events&token=x"):
            status, _, body = get(server, path)
            assert status == 403 and b"token" in body, path
        assert get(server, f"/?token={TOKEN}")[0] == 200
        assert get(server, f"/frame?topic=/davis346/events&token={TOKEN}")[0] == 200
        assert get(server, "/monitor.js")[0] == 200  # code only: no data behind it
        base = f"ws://127.0.0.1:{server.port}/ws"
        assert asyncio.run(ws_first(base)) == 403
        assert asyncio.run(ws_first(base + "?token=" + TOKEN[:-1])) == 403
        assert "sensors" in asyncio.run(ws_first(base + "?token=" + TOKEN))
        assert server.served["refused"] >= 6
    finally:
        server.stop()


def test_a_loopback_server_answers_loopback_host_names_only(state):
    """A page elsewhere that rebinds its own name to 127.0.0.1 sends its own name as Host: refused."""
    server = MonitorServer(state, port=0).start()
    try:
        assert get(server, "/", host="evil.example:80")[0] == 403
        for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "localhost"):
            assert get(server, "/", host=host)[0] == 200, host
    finally:
        server.stop()


def test_other_addresses_need_a_token_and_bad_settings_are_one_line(state):
    with pytest.raises(MicroexpError, match="0.0.0.0 .*requires a token"):
        MonitorServer(state, host="0.0.0.0", port=0)
    with pytest.raises(MicroexpError, match="port 70000"):
        MonitorServer(state, port=70000)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MicroexpError, match=f"port {port} on 127.0.0.1 is taken"):
            MonitorServer(state, port=port).start()


@pytest.mark.slow
def test_microexp_monitor_port_taken_and_token_made_once(tmp_path):
    """`microexp monitor` with its port taken: exit 2 and one line naming the port. With --host 0.0.0.0 it makes a
    token and prints the address with it once; the page refuses requests without it."""
    import time

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = microexp("monitor", "--port", port, "--duration", 1, timeout=120)
    assert one_line_error(res) == (
        f"microexp monitor: error: monitor: port {port} on 127.0.0.1 is taken (another monitor?): "
        "choose another with --port"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "microexp.cli", "monitor", "--host", "0.0.0.0", "--port", "0", "--duration", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("monitor: http://0.0.0.0:") and "?token=" in line
        url_port = int(line.split(":")[3].split("/")[0])
        token = line.split("?token=", 1)[1]
        assert len(token) >= 20
        conn_ok = None
        deadline = time.monotonic() + 10
        while conn_ok is None and time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", url_port, timeout=5)
                c.request("GET", "/")
                conn_ok = c.getresponse().status
            except OSError:
                time.sleep(0.2)
        assert conn_ok == 403
        c = http.client.HTTPConnection("127.0.0.1", url_port, timeout=5)
        c.request("GET", f"/?token={token}")
        assert c.getresponse().status == 200
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        assert token not in out + err  # shown once: only in the first line
    finally:
        if proc.poll() is None:
            proc.kill()
