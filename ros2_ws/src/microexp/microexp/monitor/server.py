"""The monitor's web server (aiohttp, in a thread of its own): one page, its script and style, the frames, and a
websocket that pushes :meth:`MonitorState.snapshot` to the page.

Routes, and nothing else (no directory listing, no file access; the page's three files are read into memory at
start):

- ``GET /``, ``/monitor.js``, ``/monitor.css``: the page;
- ``GET /frame?topic=T``: the frame of topic ``T`` now, PNG (event frames) or JPEG (images);
- ``GET /ws``: the websocket; the server sends one JSON snapshot every ``1 / push_hz`` s. A client that reads
  slowly gets the newest snapshot when it is ready for one: nothing queues up for it.

With a ``token`` the page, the frames and the websocket need ``?token=...`` (the page passes its own on), else
403; the script and the style (code, no data) do not. A server on a loopback
address answers only requests whose Host header names a loopback host (a web page elsewhere cannot reach it by
rebinding a name of its own to 127.0.0.1); a server on any other address requires a token.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import ipaddress
import json
import threading
from importlib import resources
from typing import Optional

import cv2
import numpy as np
from aiohttp import WSMsgType, web

from microexp.errors import MicroexpError
from microexp.monitor.state import MonitorState

PAGE_FILES = {"/": ("index.html", "text/html"), "/monitor.js": ("monitor.js", "text/javascript"),
              "/monitor.css": ("monitor.css", "text/css")}  # fmt: skip
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'",
}


def is_loopback(host: str) -> bool:
    """True for an address or name of this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def page_files() -> dict[str, bytes]:
    """The page's files (package data of microexp.monitor/page)."""
    root = resources.files("microexp.monitor") / "page"
    return {route: (root / name).read_bytes() for route, (name, _) in PAGE_FILES.items()}


def encode(image: np.ndarray, kind: str) -> tuple[bytes, str]:
    """An RGB image as PNG (event frames: exact colours) or JPEG (camera images), and its content type."""
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    if kind == "events":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        return buf.tobytes(), "image/png"
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buf.tobytes(), "image/jpeg"


class MonitorServer:
    """Serves ``state`` on ``host``:``port`` (0 = a free port) from a thread: :meth:`start` returns once it listens
    (or raises :class:`MicroexpError` with one line: port taken, address not available, token missing);
    :meth:`stop` closes every connection and ends the thread."""

    def __init__(
        self, state: MonitorState, host: str = "127.0.0.1", port: int = 8765, token: str = "", push_hz: float = 10.0
    ):
        if not is_loopback(host) and not token:
            raise MicroexpError(f"monitor: serving on {host} (not this machine only) requires a token")
        if not 0 <= int(port) <= 65535:
            raise MicroexpError(f"monitor: port {port} is not a TCP port (0..65535)")
        if not 0.1 <= float(push_hz) <= 60.0:
            raise MicroexpError(f"monitor: push rate {push_hz} Hz is outside 0.1..60")
        self.state = state
        self.host, self.port, self.token = host, int(port), token
        self.period_s = 1.0 / float(push_hz)
        self.files = page_files()
        self._frames: dict = {}  # topic -> (key, bytes, content type): one encoding per frame for every client
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._runner: Optional[web.AppRunner] = None
        self._thread: Optional[threading.Thread] = None
        self._sockets: set = set()
        self.clients = 0  #: websockets open now
        self.served = {"pages": 0, "frames": 0, "snapshots": 0, "refused": 0}

    @property
    def url(self) -> str:
        """The page's address (with the token when there is one)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    # -- requests ---------------------------------------------------------------------------------------------------
    def _allowed(self, request: web.Request) -> bool:
        if self.token and request.path not in ("/monitor.js", "/monitor.css"):  # code only: no data, no token
            given = request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return False
        if is_loopback(self.host):
            host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
            return host in LOOPBACK_NAMES or is_loopback(host)
        return True

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        if not self._allowed(request):
            self.served["refused"] += 1
            return web.Response(status=403, text="forbidden: this monitor needs its token (?token=...)\n")
        response = await handler(request)
        response.headers.update(HEADERS)
        return response

    async def _page(self, request: web.Request) -> web.Response:
        name, ctype = PAGE_FILES[request.path]
        self.served["pages"] += 1
        return web.Response(body=self.files[request.path], content_type=ctype, charset="utf-8")

    async def _frame(self, request: web.Request) -> web.Response:
        topic = request.query.get("topic", "")
        loop = asyncio.get_running_loop()
        got = await loop.run_in_executor(None, self._encoded, topic)
        if got is None:
            raise web.HTTPNotFound(text=f"no frame of {topic!r}\n")
        self.served["frames"] += 1
        return web.Response(body=got[0], content_type=got[1])

    def _encoded(self, topic: str) -> Optional[tuple[bytes, str]]:
        """The encoded frame of ``topic`` (an image: encoded once per new image)."""
        s = self.state.streams.get(topic)
        if s is None:
            return None
        if s.kind == "image":
            cached = self._frames.get(topic)
            if cached is not None and cached[0] == s.seq:
                return cached[1:]
        got = self.state.frame(topic)
        if got is None:
            return None
        body, ctype = encode(got[0], s.kind)
        self._frames[topic] = (got[1], body, ctype)
        return body, ctype

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=4096)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.clients += 1
        reader = asyncio.create_task(self._drain(ws))
        try:
            while not ws.closed:
                snapshot = self.state.snapshot()
                await ws.send_str(json.dumps(snapshot, separators=(",", ":")))
                self.served["snapshots"] += 1
                await asyncio.sleep(self.period_s)
        except (ConnectionResetError, RuntimeError):  # the page went away while a snapshot was sent
            pass
        finally:
            reader.cancel()
            self._sockets.discard(ws)
            self.clients -= 1
        return ws

    @staticmethod
    async def _drain(ws: web.WebSocketResponse) -> None:
        """Read what the page sends (nothing but close and pings are expected) so that a close is seen."""
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break

    # -- the thread ---------------------------------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=4096)
        for route in PAGE_FILES:
            app.router.add_get(route, self._page)
        app.router.add_get("/frame", self._frame)
        app.router.add_get("/ws", self._ws)
        return app

    async def _listen(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)  # SO_REUSEADDR: a listener still fails
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]

    def start(self) -> "MonitorServer":
        started = threading.Event()
        failure: list = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except OSError as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="monitor_server", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise MicroexpError(self._bind_error(failure[0])) from None
        return self

    def _bind_error(self, exc: OSError) -> str:
        where = f"{self.host}:{self.port}"
        if exc.errno == errno.EADDRINUSE:
            return f"monitor: port {self.port} on {self.host} is taken (another monitor?): choose another with --port"
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
            return f"monitor: cannot listen on {where}: {exc.strerror}"
        return f"monitor: cannot listen on {where}: {exc.strerror or exc}"

    async def _shutdown(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10.0)
