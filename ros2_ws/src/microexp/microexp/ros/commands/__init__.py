"""The ROS side of the `microexp` subcommands (play, record, replay, infer, watch, monitor, demo): each module
exposes ``add_arguments(parser)`` and ``run(args) -> int`` for :mod:`microexp.cli`."""

import argparse


def add_ros_args(parser) -> None:
    """``--ros-args ...``: everything after it goes to ROS, as ``ros2 run`` passes it (see :func:`ros_argv`)."""
    parser.add_argument(
        "--ros-args",
        dest="ros_args",
        nargs=argparse.REMAINDER,
        default=[],
        help="everything after it goes to ROS (remappings, --params-file, --log-level)",
    )


def ros_argv(args) -> list | None:
    """The argv that hands ``--ros-args ...`` to rclpy (None when none were given)."""
    return ["microexp", "--ros-args", *args.ros_args] if args.ros_args else None
