"""Record a labelled session: sensors + recorder + protocol.

    ros2 launch microexp record.launch.py source:=synthetic subject:=S01 aus:=AU2,AU12,AU45
    ros2 launch microexp record.launch.py source:=device out:=/data/recordings/S07_2026-11-27

The pip install has no launch: `microexp record ...` composes the same node classes with the same
parameter files in one process.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from ament_index_python.packages import get_package_share_directory

ARGS = [
    ("source", "synthetic", "what drives the sensors: device (cameras), file (recordings) or synthetic (simulated rig)"),
    ("sensors", "davis346,evk4,webcam", "comma-separated sensors to run"),
    ("out", os.path.join(os.environ.get("MICROEXP_RECORDINGS_DIR", "recordings"), "session"),
     "session folder to create (owner-only; one bag per segment inside)"),
    ("subject", "S01", "subject pseudonym (never a name)"),
    ("aus", "all", "Action Units in order, e.g. AU2,AU12,AU45 (all = the 21 of Table 1)"),
    ("lux", "0.0", "measured illuminance of the face (lx), written to each segment"),
    ("storage", "mcap", "bag storage: mcap or sqlite3"),
    ("headless", "false", "run the protocol unattended (no keyboard)"),
    ("time_scale", "1.0", "multiply every protocol phase duration"),
    ("params_file", "", "extra ROS 2 parameter file applied to every node (after the package defaults)"),
    ("davis_file", "", "AEDAT4 file for source:=file"),
    ("evk4_file", "", "RAW file for source:=file"),
    ("webcam_file", "", "video file for source:=file"),
]


def _nodes(context):
    cfg = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGS}
    share = get_package_share_directory("microexp")

    def params(node_file, **values):
        files = [os.path.join(share, "config", node_file)]
        if cfg["params_file"]:
            files.append(cfg["params_file"])
        return files + [values]

    sensors = [s.strip() for s in cfg["sensors"].split(",") if s.strip()]
    nodes = [Node(package="microexp", executable="recorder_node", name="recorder", output="screen",
                  parameters=params("recorder_node.yaml", out=cfg["out"], subject=cfg["subject"],
                                    storage=cfg["storage"], source=cfg["source"]))]
    if cfg["source"] == "synthetic":
        nodes.append(Node(package="microexp", executable="synthetic_node", name="synthetic", output="screen",
                          parameters=params("synthetic_node.yaml", sensors=",".join(sensors), subject=cfg["subject"])))
    else:
        mode = "device" if cfg["source"] == "device" else "file"
        for sensor, exe, file_arg in (("davis346", "davis346_node", "davis_file"), ("evk4", "evk4_node", "evk4_file"),
                                      ("webcam", "webcam_node", "webcam_file")):
            if sensor in sensors and (mode == "device" or cfg[file_arg]):
                nodes.append(Node(package="microexp", executable=exe, name=sensor, output="screen",
                                  parameters=params(f"{exe}.yaml", mode=mode, file=cfg[file_arg])))
    nodes.append(Node(package="microexp", executable="protocol_node", name="protocol", output="screen",
                      emulate_tty=True,
                      parameters=params("protocol_node.yaml", aus=cfg["aus"], subject=cfg["subject"],
                                        lux=float(cfg["lux"]), headless=cfg["headless"].lower() == "true",
                                        time_scale=float(cfg["time_scale"]))))
    return nodes


def generate_launch_description():
    return LaunchDescription([DeclareLaunchArgument(n, default_value=d, description=desc) for n, d, desc in ARGS]
                             + [OpaqueFunction(function=_nodes)])
