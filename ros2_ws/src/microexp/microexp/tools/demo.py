"""`microexp demo`: see :mod:`microexp.ros.demo` (the ROS composition lives under microexp.ros)."""
from microexp.ros.demo import add_arguments, run  # noqa: F401
