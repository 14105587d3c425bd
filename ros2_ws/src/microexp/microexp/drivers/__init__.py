"""Camera drivers without ROS: the EVK4 through OpenEB (:mod:`microexp.drivers.evk4`, its bias files and
settings in :mod:`microexp.drivers.evk4_settings`) and the DAVIS346 through dv-processing
(:mod:`microexp.drivers.davis`). They import the event core (``microexp.events``), never rclpy or ``microexp.ros``.
"""
