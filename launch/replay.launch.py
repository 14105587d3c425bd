"""Replay a bag (or every segment of a session folder) with its original timing.

    ros2 launch microexp replay.launch.py bag:=/data/recordings/S01/seg_0001_AU12_t1 rate:=1.0

(`ros2 bag play` works on these bags too; this node also plays whole session folders.)
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription
from microexp.ros.nodes import BY_NAME

NODE = BY_NAME["replay"]

ARGS = [
    ("bag", "", "bag folder or session folder to replay"),
    ("rate", "1.0", "speed factor (1 = as recorded, 0 = as fast as possible)"),
    ("loop", "false", "start again at the end"),
    ("qos", "reliable", "QoS of the republished topics: reliable or sensor"),
    ("max_gap_s", "2.0", "a step in recorded time longer than this plays as this long (one line each)"),
    ("keep_gaps", "false", "wait out every gap in recorded time instead"),
]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(n, default_value=d, description=desc) for n, d, desc in ARGS]
        + [
            Node(
                package="microexp",
                executable=NODE.executable,
                name=NODE.name,
                output="screen",
                parameters=[
                    {
                        "bag": LaunchConfiguration("bag"),
                        "rate": ParameterValue(LaunchConfiguration("rate"), value_type=float),
                        "loop": ParameterValue(LaunchConfiguration("loop"), value_type=bool),
                        "qos": LaunchConfiguration("qos"),
                        "max_gap_s": ParameterValue(LaunchConfiguration("max_gap_s"), value_type=float),
                        "keep_gaps": ParameterValue(LaunchConfiguration("keep_gaps"), value_type=bool),
                    }
                ],
            )
        ]
    )
