"""ament_python package of microexp: the ROS-free core (microexp.events, ...), the nodes (microexp.ros)
and the `microexp` command. Installed by colcon (full ROS) or `pip install -e` (the pip environment)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "microexp"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob("launch/*.launch.py")),
        ("share/" + PACKAGE + "/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    package_data={PACKAGE: ["schemas/*.json"]},
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="microexp maintainers",
    maintainer_email="microexp@example.org",
    description="Event-camera facial micro-expression acquisition and inference",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "microexp = microexp.cli:main",
            # one executable per node, for `ros2 run microexp NAME` and the launch files
            "davis346_node = microexp.ros.nodes.davis346_node:main",
            "evk4_node = microexp.ros.nodes.evk4_node:main",
            "webcam_node = microexp.ros.nodes.webcam_node:main",
            "synthetic_node = microexp.ros.nodes.synthetic_node:main",
            "recorder_node = microexp.ros.nodes.recorder_node:main",
            "protocol_node = microexp.ros.nodes.protocol_node:main",
            "replay_node = microexp.ros.nodes.replay_node:main",
            "inference_node = microexp.ros.nodes.inference_node:main",
        ],
    },
)
