"""Live Action Unit inference (full ROS 2 install, e.g. the Docker image's `infer` service).

Runs the ``inference_node`` executable (node name ``inference``; ``microexp infer`` runs the same node):
events of ``events_topic`` in, ``/inference/au`` (microexp_msgs/AUPrediction) and ``/inference/diagnostics``
out. Parameters come from ``params_file`` (default: the package's config/inference_node.yaml), then from the
launch arguments below, which override the file (their defaults are the file's). List them with
``ros2 launch microexp inference.launch.py --show-args``; example::

    ros2 launch microexp inference.launch.py events_topic:=/davis346/events frames_topic:=/davis346/image_raw \\
        sensor:=davis346 model:=/opt/microexp/models/au_snn_default.pt

The subscriptions take the QoS their publishers offer (``qos:=auto``): reliable on a replay, best effort on
drivers. On the pip install, ``make ros2-cli`` gives the ``ros2`` command; ``microexp infer --help`` takes the
same settings in one process.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

# (name, default, type of the node parameter or None for launch-only arguments, description)
ARGUMENTS = (
    ("model", "", "str", "SNN checkpoint; empty = the default model in $MICROEXP_MODELS_DIR (au_snn_default.pt)"),
    ("device", "auto", "str", "torch device: auto (cuda when available, else cpu), cuda or cpu"),
    ("events_topic", "/evk4/events", "str", "EventPacket topic to run on (evt3, libcaer or libcaer_cmp payloads)"),
    (
        "frames_topic",
        "",
        "str",
        "sensor_msgs/Image topic for MTCNN face detection (DAVIS346 APS or webcam); empty = fixed ROI only",
    ),
    ("sensor", "evk4", "str", "sensor name written into every AUPrediction"),
    ("roi", "", "str", "fixed crop x,y,width,height in event pixels, used without a face (empty = whole sensor)"),
    ("face_rate_hz", "5.0", "float", "face detections per second at most (0 = no detection)"),
    ("horizon", "10", "int", "windows averaged by the smoothed decision"),
    ("gap_ms", "200.0", "float", "pause in the events (ms) that ends a clip and resets the SNN"),
    ("qos", "auto", "str", "QoS of the subscriptions: auto (as the publishers offer), sensor or reliable"),
    ("params_file", "", None, "ROS 2 parameter file of the node (empty = the package's config/inference_node.yaml)"),
    ("namespace", "", None, "namespace of the node"),
    ("log_level", "info", None, "log level of the node (debug, info, warn, error)"),
)

_TYPES = {"str": str, "float": float, "int": int}


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("microexp"), "config", "inference_node.yaml")
    declared = []
    for name, default, _, description in ARGUMENTS:
        if name == "params_file":
            default = default_params
        declared.append(DeclareLaunchArgument(name, default_value=default, description=description))
    overrides = {
        name: ParameterValue(LaunchConfiguration(name), value_type=_TYPES[kind])
        for name, _, kind, _ in ARGUMENTS
        if kind is not None
    }
    node = Node(
        package="microexp",
        executable="inference_node",
        name="inference",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        ros_arguments=["--log-level", LaunchConfiguration("log_level")],
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription([*declared, node])
