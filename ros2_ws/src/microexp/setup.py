"""ament_python package of microexp: the ROS-free core (microexp.events, ...), the nodes (microexp.ros)
and the `microexp` command. Installed by colcon (full ROS) or `pip install -e` (the pip environment)."""

import ast
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "microexp"


def node_entry_points() -> list[str]:
    """One console script per node, for `ros2 run microexp NAME` and the launch files: from the node table
    (TABLE of microexp/ros/nodes/__init__.py, read as a literal: setup.py imports nothing of the package)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), PACKAGE, "ros", "nodes", "__init__.py")
    with open(path) as fh:
        tree = ast.parse(fh.read(), path)
    table = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "TABLE" for t in node.targets)
    )
    return [f"{exe} = {PACKAGE}.ros.nodes.{exe}:main" for _name, exe, _cls in table]


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
    package_data={PACKAGE: ["schemas/*.json", "monitor/page/*"]},
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="microexp maintainers",
    maintainer_email="microexp@example.org",
    description="Event-camera facial micro-expression acquisition and inference",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "microexp = microexp.cli:main",
            *node_entry_points(),
        ],
    },
)
