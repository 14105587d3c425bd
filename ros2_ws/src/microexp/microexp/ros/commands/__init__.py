"""The ROS side of the `microexp` subcommands (play, record, replay, infer, watch, demo): each module exposes
``add_arguments(parser)`` and ``run(args) -> int`` for :mod:`microexp.cli`."""
