"""microexp: event-camera facial micro-expression acquisition and inference.

The core subpackages (events, bags, timesync, synth, vision, models, learn) never import rclpy;
only :mod:`microexp.ros` does.
"""

__version__ = "0.1.0"
