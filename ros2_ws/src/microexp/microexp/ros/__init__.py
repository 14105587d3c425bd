"""The ROS 2 nodes of microexp: the only package that imports rclpy. Nodes are thin wiring of parameters,
topics and timers around the ROS-free core."""
