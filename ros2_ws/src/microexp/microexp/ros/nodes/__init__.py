"""The node modules of microexp (one ROS 2 node class each) and the table that lists them.

:data:`TABLE` is the one list of nodes: setup.py makes its console scripts from it (it reads the literal
without importing the package), the parameter documentation, the recording graph, the launch files and the
tests read :data:`NODES`. Each row is (node name, executable, class); the module is
``microexp.ros.nodes.<executable>`` and the parameter file ``config/<executable>.yaml``. This module imports
no rclpy: the launch process and setup.py read it.
"""

from __future__ import annotations

from dataclasses import dataclass

# (node name, executable = module name, node class). setup.py parses this literal: keep it plain tuples.
TABLE = (
    ("davis346", "davis346_node", "Davis346Node"),
    ("evk4", "evk4_node", "Evk4Node"),
    ("webcam", "webcam_node", "WebcamNode"),
    ("synthetic", "synthetic_node", "SyntheticRigNode"),
    ("recorder", "recorder_node", "RecorderNode"),
    ("protocol", "protocol_node", "ProtocolNode"),
    ("replay", "replay_node", "ReplayNode"),
    ("inference", "inference_node", "InferenceNode"),
    ("renderer", "renderer_node", "RendererNode"),
    ("monitor", "monitor_node", "MonitorNode"),
)
PACKAGE = __name__


@dataclass(frozen=True)
class NodeEntry:
    """One node: ``ros2 run microexp EXECUTABLE`` runs class ``cls`` of ``module`` under the name ``name``,
    with the parameters of ``config/CONFIG``."""

    name: str
    executable: str
    cls: str

    @property
    def module(self) -> str:
        return f"{PACKAGE}.{self.executable}"

    @property
    def config(self) -> str:
        return f"{self.executable}.yaml"

    @property
    def entry_point(self) -> str:
        """The console-script line of setup.py."""
        return f"{self.executable} = {self.module}:main"


NODES = tuple(NodeEntry(*row) for row in TABLE)
BY_NAME = {n.name: n for n in NODES}
BY_EXECUTABLE = {n.executable: n for n in NODES}
