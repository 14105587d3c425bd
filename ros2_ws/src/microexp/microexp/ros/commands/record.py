"""`microexp record`: a whole recording session in one process — sensors (synthetic rig, files or devices),
the recorder and the protocol (headless when there is no terminal) — the nodes of
:func:`microexp.ros.graph_spec.record_graph`, the graph ``launch/record.launch.py`` runs, composed from the same
node classes with the same parameters. Exits when the protocol is done and prints the session
summary (also written as ``summary.json`` beside the bags)."""

from __future__ import annotations

import json
import sys

from microexp.errors import MicroexpError


def add_arguments(parser) -> None:
    parser.add_argument(
        "--source",
        choices=("synthetic", "file", "device"),
        default="synthetic",
        help="what drives the sensors (default: the synthetic rig)",
    )
    parser.add_argument("--out", required=True, help="session folder to create (must not exist or be empty)")
    parser.add_argument("--subject", default="S01", help="subject pseudonym (never a name)")
    parser.add_argument("--aus", default="all", help="Action Units in order, e.g. AU2,AU12,AU45 (default: all 21)")
    parser.add_argument("--takes", type=int, default=None, help="kept takes of each AU, in a row (default 1)")
    parser.add_argument(
        "--first-trial",
        type=int,
        default=None,
        help="trial number of each AU's first take (default 1; a later session of a subject continues)",
    )
    parser.add_argument("--lux", type=float, default=None, help="measured illuminance written to each segment")
    parser.add_argument(
        "--storage",
        choices=("mcap", "sqlite3"),
        default=None,
        help="bag storage (default mcap). mcap: CRC-checked chunks; a killed "
        "recorder loses at most the last unflushed chunk (about 1 MiB). sqlite3: committed every second; "
        "a killed recorder (SIGKILL, power loss) loses the messages since the last commit and leaves "
        "no metadata.yaml (info reads the bag as truncated); sqlite3 has no checksums",
    )
    parser.add_argument("--params", action="append", default=[], help="ROS 2 parameter file(s) for the nodes")
    parser.add_argument("--time-scale", type=float, default=None, help="scale every protocol phase duration")
    parser.add_argument("--headless", action="store_true", help="run the protocol unattended (default without a tty)")
    parser.add_argument("--davis-file", help="AEDAT4 file (source=file)")
    parser.add_argument("--evk4-file", help="RAW file (source=file)")
    parser.add_argument("--webcam-file", help="video file (source=file)")
    parser.add_argument("--sensors", default="davis346,evk4,webcam", help="which sensors to run")
    parser.add_argument("--seed", type=int, default=None, help="synthetic rig seed")
    from microexp.ros.dds import add_dds_arguments

    add_dds_arguments(parser)


def run(args) -> int:
    summary = session(args)
    print(json.dumps(summary), flush=True)
    if summary.get("errors"):
        # the summary (stdout) lists them all; the one line names the first
        raise MicroexpError(
            f"{args.out}: the session ended with {len(summary['errors'])} error(s), first: {summary['errors'][0]}"
        )
    return 0


def check_input_files(args) -> None:
    """Every input file option given (--davis-file, --evk4-file, --webcam-file) names a regular file."""
    from microexp.errors import input_file

    for opt, what in (("davis_file", "AEDAT4"), ("evk4_file", "RAW"), ("webcam_file", "video")):
        if getattr(args, opt, None):
            input_file(getattr(args, opt), what)


def options(args) -> dict:
    """The recording options (:data:`microexp.ros.graph_spec.RECORD_OPTIONS`) of parsed command-line ``args``;
    None = the graph's default. Without a terminal the protocol runs unattended."""
    headless = bool(args.headless) or not sys.stdin.isatty()
    return {
        "source": args.source,
        "sensors": args.sensors,
        "out": args.out,
        "subject": args.subject,
        "aus": args.aus,
        "takes": args.takes,
        "first_trial": args.first_trial,
        "lux": args.lux,
        "storage": args.storage,
        "headless": headless,
        "time_scale": args.time_scale,
        "seed": args.seed,
        "davis_file": args.davis_file,
        "evk4_file": args.evk4_file,
        "webcam_file": args.webcam_file,
    }


def session(args, add_nodes=None) -> dict:
    """Run one recording session; ``add_nodes(graph)`` may add more nodes (the demo adds live inference), and
    returns node names the protocol waits for (their ``~/take_status`` ready) before it starts.
    Returns the summary (also written as summary.json)."""
    import importlib

    from microexp.ros.compose import overrides
    from microexp.ros.dds import configure
    from microexp.ros.graph_spec import record_graph
    from microexp.ros.runner import Runner

    check_input_files(args)  # before anything is created: a FIFO would block, a missing file fail later
    configure(args)  # domain, discovery range (default: this machine only), Fast DDS profile
    specs = record_graph(options(args))
    graph = Runner()
    nodes = {}
    try:
        ui = None
        for spec in specs:
            cls = getattr(importlib.import_module(spec.module), spec.cls)
            params = dict(spec.params)
            kwargs = {}
            if spec.executable == "protocol_node":
                if add_nodes is not None:
                    params["wait_for"] = list(add_nodes(graph) or []) or [""]
                if not params["headless"]:
                    from microexp.ros.protocol_ui import TerminalUI

                    ui = kwargs["ui"] = TerminalUI()
            nodes[spec.name] = graph.add(
                cls(
                    name=spec.name,
                    parameter_overrides=overrides(spec.name, args.params, defaults=spec.defaults, **params),
                    **kwargs,
                )
            )
        recorder, protocol = nodes["recorder"], nodes["protocol"]
        if ui is not None:
            ui.attach(protocol)
        # the session's own publishers: every node of this graph, all in this process
        recorder.expect_publishers([n.get_fully_qualified_name() for n in graph.nodes], same_process=True)
        graph.start()
        while not protocol.finished.wait(0.1):
            pass
        for n in graph.nodes:
            stop = getattr(n, "stop_publishing", None)
            if stop:
                stop()
        # the protocol ended the session through the recorder's ~/end_session; when it could not, end it here
        summary = recorder.summary or recorder.finish(reason=protocol.error or "protocol finished")
        summary = dict(summary)
        summary["published"] = {
            t: c for n in graph.nodes if isinstance(getattr(n, "published", None), dict) for t, c in n.published.items()
        }
        if protocol.error:
            raise MicroexpError(protocol.error)
        return summary
    except MicroexpError:
        recorder = nodes.get("recorder")
        if recorder is not None and not recorder.manifest.segments:
            recorder.discard()  # nothing was recorded: the same --out can be used again
        raise
    finally:
        graph.close()
