"""rosbag2 bags without ROS: reading (and, later, writing) with the pure-Python `rosbags` library."""
