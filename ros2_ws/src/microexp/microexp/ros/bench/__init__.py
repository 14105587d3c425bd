"""The ROS halves of `microexp bench` (latency, load, playback/recording/replay throughput): publisher and
subscriber processes and measured graphs, started by the ROS-free drivers in :mod:`microexp.bench`."""
