"""`microexp demo`: see :mod:`microexp.ros.commands.demo` (the ROS composition lives under microexp.ros)."""
from microexp.ros.commands.demo import add_arguments, run  # noqa: F401
