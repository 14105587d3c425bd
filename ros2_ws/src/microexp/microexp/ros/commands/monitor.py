"""`microexp monitor`: the live web page of a session (the monitor node in the pip install; launch files run
``monitor_node``). It serves on 127.0.0.1 by default, for a browser on this machine. ``--host`` names another
address (e.g. ``0.0.0.0`` for the lab network): then a token is required; one is made unless ``--token`` gives
one, and the address with it is printed once. The process runs at a lower priority (``--nice``): it is a display,
the recorder and the inference node come first. Options set node parameters; ``--params-file`` and ``--ros-args``
work as for ``microexp infer``. Runs until Ctrl-C, or ``--duration`` seconds."""

from __future__ import annotations

import os
import secrets
import time

from microexp.errors import ParameterError
from microexp.ros.commands import add_ros_args, ros_argv

TOKEN_ENV = "MICROEXP_MONITOR_TOKEN"  # the node reads its token from here when its parameter is empty

# CLI option -> node parameter (only the options given override the parameter files)
_OPTIONS = {
    "host": "host",
    "port": "port",
    "push_hz": "push_hz",
    "events_topics": "events_topics",
    "image_topics": "image_topics",
    "predictions_topic": "predictions_topic",
    "window_ms": "window_ms",
}


def _topics(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()] or [""]


def add_arguments(parser) -> None:
    parser.add_argument("--host", help="address to serve on (default 127.0.0.1; any other needs a token)")
    parser.add_argument("--port", type=int, help="TCP port (default 8765; 0 = any free port)")
    parser.add_argument(
        "--token", default=None, help=f"the page's token (default: none on 127.0.0.1, else made; or ${TOKEN_ENV})"
    )
    parser.add_argument("--push-hz", type=float, help="snapshots per second to each page (default 5)")
    parser.add_argument(
        "--nice",
        type=int,
        default=10,
        help="raise the process's niceness by this much (default 10: the recorder and inference come first)",
    )
    parser.add_argument("--events-topics", type=_topics, help="EventPacket topics, comma-separated")
    parser.add_argument("--image-topics", type=_topics, help="Image topics (APS, webcam), comma-separated")
    parser.add_argument("--predictions-topic", help="AUPrediction topic (default /inference/au)")
    parser.add_argument("--window-ms", type=float, help="sensor time an event frame shows (default 33)")
    parser.add_argument("--params-file", action="append", default=[], help="ROS 2 parameter file (repeatable)")
    parser.add_argument("--name", default="monitor", help="node name (default monitor)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = Ctrl-C)")
    add_ros_args(parser)


def token_for(host: str | None, given: str | None) -> tuple[str, bool]:
    """``(token, made)``: the given token (or $MICROEXP_MONITOR_TOKEN), else a new one when ``host`` is not a
    loopback address, else none."""
    from microexp.monitor.server import is_loopback

    token = given if given is not None else os.environ.get(TOKEN_ENV, "")
    if token and (len(token) < 8 or not token.isascii() or not token.isprintable() or " " in token):
        raise ParameterError("monitor: --token must be at least 8 printable characters without spaces")
    if token or host is None or is_loopback(host):
        return token, False
    return secrets.token_urlsafe(18), True


def run(args) -> int:
    from microexp.ros import lifecycle
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.monitor_node import MonitorNode
    from microexp.ros.runner import Runner

    if not args.duration >= 0:  # also NaN
        raise ParameterError(f"monitor: --duration {args.duration:g}: give 0 (run until Ctrl-C) or a number of seconds")
    if not 0 <= args.nice <= 19:
        raise ParameterError(f"monitor: --nice {args.nice}: give 0..19")
    token, made = token_for(args.host, args.token)
    if args.nice:
        os.nice(args.nice)
    # in-process, never a ROS parameter: `ros2 param get` must not hand the token to every node of the domain
    os.environ[TOKEN_ENV] = token
    values = {param: getattr(args, opt) for opt, param in _OPTIONS.items() if getattr(args, opt) is not None}
    lifecycle.init(ros_argv(args))
    graph = Runner("single")
    try:
        node = graph.add(
            MonitorNode(name=args.name, parameter_overrides=overrides(args.name, args.params_file, **values))
        )
        graph.start()
        print(f"monitor: {node.url}", flush=True)
        if made:
            print("monitor: the token was made for this run and is shown only here; the page needs it", flush=True)
        started = time.monotonic()
        try:
            while not args.duration or time.monotonic() - started < args.duration:
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        graph.close()
