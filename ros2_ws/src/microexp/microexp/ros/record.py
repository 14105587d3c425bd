"""`microexp record`: a whole recording session in one process — sensors (synthetic rig, files or devices),
the recorder and the protocol (headless when there is no terminal) — composed from the same node classes
and parameter files as ``launch/record.launch.py``. Exits when the protocol is done and prints the session
summary (also written as ``summary.json`` beside the bags)."""
from __future__ import annotations

import json
import sys
import time

from microexp.errors import MicroexpError

SYNTH_CLIP_S = 2.5  # length of a synthetic AU clip, neutral margins included (the paper's average)


def add_arguments(parser) -> None:
    parser.add_argument("--source", choices=("synthetic", "file", "device"), default="synthetic",
                        help="what drives the sensors (default: the synthetic rig)")
    parser.add_argument("--out", required=True, help="session folder to create (must not exist or be empty)")
    parser.add_argument("--subject", default="S01", help="subject pseudonym (never a name)")
    parser.add_argument("--aus", default="all", help="Action Units in order, e.g. AU2,AU12,AU45 (default: all 21)")
    parser.add_argument("--takes", type=int, default=None, help="kept takes of each AU, in a row (default 1)")
    parser.add_argument("--first-trial", type=int, default=None,
                        help="trial number of each AU's first take (default 1; a later session of a subject continues)")
    parser.add_argument("--lux", type=float, default=None, help="measured illuminance written to each segment")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default=None, help="bag storage (default mcap)")
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
    return 0


def session(args, add_nodes=None) -> dict:
    """Run one recording session; ``add_nodes(graph)`` may add more nodes (the demo adds live inference).
    Returns the summary (also written as summary.json)."""
    from microexp.ros.compose import Graph, overrides
    from microexp.ros.dds import configure
    from microexp.ros.protocol_node import ProtocolNode
    from microexp.ros.recorder_node import RecorderNode

    configure(args)  # domain, discovery range (default: this machine only), Fast DDS profile

    sensors = [s.strip() for s in args.sensors.split(",") if s.strip()]
    headless = args.headless or not sys.stdin.isatty()
    graph = Graph()
    try:
        recorder = graph.add(RecorderNode(parameter_overrides=overrides(
            "recorder", args.params, out=args.out, subject=args.subject, storage=args.storage, source=args.source)))
        for node in build_sensors(args, sensors, overrides):
            graph.add(node)
        ui = None
        if not headless:
            from microexp.ros.protocol_ui import TerminalUI

            ui = TerminalUI()
        extra = {}
        synth = next((n for n in graph.nodes if type(n).__name__ == "SyntheticRigNode"), None)
        if args.source == "synthetic":
            # the simulated subject performs a fixed-length clip: the performance window must hold it
            scale = args.time_scale or 1.0
            extra["perform_s"] = max(2.5, (SYNTH_CLIP_S + 0.3) / scale)
        protocol = graph.add(ProtocolNode(ui=ui, before_segment=synth.wait_ready if synth else None,
                                          before_stop=(lambda: synth.wait_idle() and recorder.wait_received(
                                              dict(synth.published))) if synth else None,
                                          parameter_overrides=overrides(
            "protocol", args.params, aus=args.aus, subject=args.subject, lux=args.lux, headless=headless,
            time_scale=args.time_scale, takes=args.takes, first_trial=args.first_trial, **extra)))
        if ui is not None:
            ui.attach(protocol)
        if add_nodes is not None:
            add_nodes(graph)
        # the session's own publishers: every node of this graph, all in this process
        recorder.expect_publishers([n.get_fully_qualified_name() for n in graph.nodes], same_process=True)
        graph.start()
        while not protocol.finished.wait(0.1):
            pass
        time.sleep(0.3)  # the last messages of the graph reach the writer
        sync = {}
        clocks = [c for n in graph.nodes for c in getattr(n, "clocks", {}).values()]
        clocks += [n.clock_sync for n in graph.nodes if getattr(n, "clock_sync", None) is not None
                   and not getattr(n, "clocks", None)]
        for clock in clocks:
            if True:
                est = clock.est
                sync[clock.sensor] = {k: (None if isinstance(v, float) and v != v else v)  # NaN -> null
                                      for k, v in est.state().items()}
        for n in graph.nodes:
            stop = getattr(n, "stop_publishing", None)
            if stop:
                stop()
        summary = recorder.finish(sync=sync)
        summary["published"] = {t: c for n in graph.nodes if isinstance(getattr(n, "published", None), dict)
                                for t, c in n.published.items()}
        if protocol.error:
            raise MicroexpError(protocol.error)
        return summary
    finally:
        graph.close()


def build_sensors(args, sensors: list[str], overrides) -> list:
    nodes = []
    if args.source == "synthetic":
        from microexp.ros.synthetic_node import SyntheticRigNode

        scale = args.time_scale or 1.0
        nodes.append(SyntheticRigNode(parameter_overrides=overrides(
            "synthetic", args.params, sensors=",".join(sensors), subject=args.subject, seed=args.seed,
            qos="reliable", prefetch=args.aus, prefetch_takes=args.takes, prefetch_first_trial=args.first_trial,
            perform_delay_s=3.0 * scale, duration_s=SYNTH_CLIP_S)))
        return nodes
    mode = "file" if args.source == "file" else "device"

    def qos(node_name):  # recording: reliable with a deep history, unless a parameter file says otherwise
        from microexp.config import load_params_file

        return None if any("qos" in load_params_file(f, node_name) for f in args.params or []) else "reliable"

    if "evk4" in sensors and (mode == "device" or args.evk4_file):
        from microexp.ros.evk4_node import Evk4Node

        nodes.append(Evk4Node(parameter_overrides=overrides("evk4", args.params, mode=mode, file=args.evk4_file,
                                                         qos=qos("evk4"))))
    if "davis346" in sensors and (mode == "device" or args.davis_file):
        from microexp.ros.davis346_node import Davis346Node

        nodes.append(Davis346Node(parameter_overrides=overrides("davis346", args.params, mode=mode,
                                                                file=args.davis_file, qos=qos("davis346"))))
    if "webcam" in sensors and (mode == "device" or args.webcam_file):
        from microexp.ros.webcam_node import WebcamNode

        nodes.append(WebcamNode(parameter_overrides=overrides("webcam", args.params, mode=mode, file=args.webcam_file,
                                                            qos=qos("webcam"))))
    return nodes
