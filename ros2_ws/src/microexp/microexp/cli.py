"""The `microexp` command: one entry point for every tool of the pip install.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their subcommand runs, so `microexp info` never loads torch or rclpy.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from microexp.errors import MicroexpError

COMMANDS: dict[str, tuple[str, str]] = {
    "info": (
        "microexp.tools.info",
        "print one JSON object describing a RAW/AEDAT4 file, a rosbag2 folder or a checkpoint",
    ),
    "demo": ("microexp.ros.commands.demo", "run the main job on the bundled default input and write its outputs"),
    "bench": ("microexp.bench.cli", "run a benchmark and print one JSON line (binning, evt3, ... or all)"),
    "play": (
        "microexp.ros.commands.play",
        "run sensor nodes on files or the synthetic rig; --count prints what arrived over DDS",
    ),
    "record": (
        "microexp.ros.commands.record",
        "record a labelled session: sensors + recorder + protocol in one process",
    ),
    "replay": ("microexp.ros.commands.replay", "republish a bag or session with its original timing"),
    "infer": ("microexp.ros.commands.infer", "run the live SNN inference node: events in, AU predictions on ~/au"),
    "watch": ("microexp.ros.commands.watch", "live terminal view of an AU topic: top-3 AUs, latency, skipped windows"),
    "monitor": (
        "microexp.ros.commands.monitor",
        "live web page of the session on this machine: event frames, face box, AUs, sensors, protocol, recorder",
    ),
    "evaluate": (
        "microexp.ros.commands.evaluate",
        "score the live AU output on recorded sessions against their truth (spotting, recognition, offline)",
    ),
    "dataset": (
        "microexp.learn.build",
        "turn recording sessions / bags into the 64x64 clip dataset (events, APS, webcam)",
    ),
    "synth-dataset": (
        "microexp.learn.synth_dataset",
        "record the paper's 7x21 layout on the synthetic rig and build its dataset",
    ),
    "train": ("microexp.learn.train", "leave-one-subject-out AU recognition: SNN or 3D-CNN on events or RGB"),
    "export": ("microexp.learn.export", "ship a trained run's final model (float16) with its generated model card"),
    "reconstruct": (
        "microexp.learn.reconstruct",
        "cVAE frame reconstruction from events: train or eval (Table 6, Fig. 5)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="microexp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    from microexp.ros.dds import configure  # no rclpy: environment only

    try:
        configure(None)  # DDS defaults of every command: this machine only, the package's Fast DDS profile
        return int(module.run(args) or 0)
    except MicroexpError as exc:
        print(f"microexp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # SIGINT, or SIGTERM turned into it (microexp.ros.lifecycle): the same exit
        from microexp.ros.lifecycle import reason  # no rclpy: signal bookkeeping only

        print(f"microexp {args.command}: {reason('interrupted')}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except OSError as exc:  # a file or folder the system refused (read-only, full, not a folder ...): one line
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"microexp {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
