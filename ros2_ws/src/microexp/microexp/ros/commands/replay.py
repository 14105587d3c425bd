"""`microexp replay BAG`: republish a bag (or every segment bag of a session folder) with its original timing."""

from __future__ import annotations

import json
import time

from microexp.errors import MicroexpError


def add_arguments(parser) -> None:
    parser.add_argument("bag", help="bag folder or session folder")
    parser.add_argument(
        "--rate", type=float, default=1.0, help="speed factor, 0.001..1000 (1 = as recorded, 0 = flat out)"
    )
    parser.add_argument("--loop", action="store_true", help="start again at the end (until Ctrl-C)")
    parser.add_argument("--topics", default="", help="comma-separated topics to replay (default: all)")
    parser.add_argument(
        "--qos", choices=("reliable", "sensor"), default="reliable", help="QoS of the republished topics"
    )
    parser.add_argument(
        "--max-gap",
        type=float,
        default=2.0,
        metavar="S",
        help="play a step forward in recorded time longer than S seconds (between segments, a clock set while "
        "recording) as a pause of S, one line each; a step back plays on at once (default 2)",
    )
    parser.add_argument(
        "--keep-gaps", action="store_true", help="wait out long steps forward in recorded time as recorded"
    )
    parser.add_argument(
        "--wait-subscribers",
        type=float,
        default=0.0,
        help="wait up to this many seconds for a subscriber on every topic before starting",
    )


def run(args) -> int:
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.replay_node import ReplayNode
    from microexp.ros.runner import Runner

    graph = Runner(threads=2)
    try:
        topics = [t for t in args.topics.split(",") if t] or [""]
        node = graph.add(
            ReplayNode(
                parameter_overrides=overrides(
                    "replay",
                    None,
                    bag=str(args.bag),
                    rate=args.rate,
                    loop=args.loop,
                    topics=topics,
                    qos=args.qos,
                    wait_for_subscribers_s=float(args.wait_subscribers),
                    max_gap_s=float(args.max_gap),
                    keep_gaps=bool(args.keep_gaps),
                )
            )
        )
        graph.start()
        while not node.finished.wait(0.1):
            pass
        time.sleep(0.2)
        errs = sorted(abs(e) for e in node.timing_errors_us)
        p99 = errs[int(0.99 * (len(errs) - 1))] / 1000 if errs else None
        print(
            json.dumps(
                {
                    "bag": str(args.bag),
                    "published": node.published,
                    "messages": sum(node.published.values()),
                    "send_error_p99_ms": p99,
                    "skipped": node.skipped,
                    "gaps": [
                        {"topic": g.topic, "length_s": round(g.length_s, 3), "played_s": round(g.played_s, 3)}
                        for g in node.gaps
                    ],
                }
            ),
            flush=True,
        )
        if node.error:
            raise MicroexpError(f"replay stopped after {sum(node.published.values())} messages: {node.error}")
        return 0
    finally:
        graph.close()
