"""Images without ROS: conversions to and from sensor_msgs/Image fields, face detection and cropping."""
