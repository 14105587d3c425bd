"""Record a labelled session: sensors + recorder + protocol, one process per node.

    ros2 launch microexp record.launch.py source:=synthetic subject:=S01 aus:=AU2,AU12,AU45 out:=recordings/S01
    ros2 launch microexp record.launch.py source:=device subject:=S07 out:=/data/recordings/S07 lux:=820

The nodes and their parameters come from :func:`microexp.ros.graph_spec.record_graph`, which ``microexp record``
composes in one process: the two run the same graph. Each node gets the package's ``config/<node>.yaml``, then
``params_file``, then the graph's values. The protocol takes keys where it has a terminal (stdin of this
command) and runs unattended otherwise (it logs so); ``headless:=true`` always runs it unattended. When the
protocol is done it ends the session through the recorder (summary.json, manifest finished) and exits, and the
launch shuts down with exit code 0. Ctrl-C or any node ending stops the launch: the recorder closes the open
segment and records why in the manifest. List the arguments with ``ros2 launch microexp record.launch.py
--show-args``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from microexp.ros.graph_spec import RECORD_OPTIONS, record_graph

LAUNCH_ONLY = (
    ("params_file", "", "extra ROS 2 parameter file applied to every node (after the package defaults)"),
    (
        "protocol_prefix",
        "",
        "launch prefix of the protocol node, e.g. a terminal emulator command that opens "
        "its keyboard UI in a window of its own",
    ),
    ("log_level", "info", "log level of the nodes (debug, info, warn, error)"),
    (
        "render",
        "false",
        "true: also run the renderer node, event frames of the EVK4 (else the DAVIS346) on /renderer/frame "
        "for an image viewer (docs/viewing.md); it is no part of the recording",
    ),
    (
        "monitor",
        "false",
        "true: also run the monitor node, the session's live web page on http://127.0.0.1:8765/ (docs/monitor.md; "
        "at a lower priority, no part of the recording)",
    ),
)


def _default_text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class RecordingFailed(RuntimeError):
    pass


def _fail(reason: str):
    """An action that makes ros2 launch shut down and exit with code 1, logging ``reason`` on one line."""

    def fail(_context):
        raise RecordingFailed(reason)

    return OpaqueFunction(function=fail)


def _on_exit(event, context, name: str, executable: str):
    if context.is_shutdown:  # the launch is already ending: nodes exit as asked
        return None
    if executable == "protocol_node" and event.returncode == 0:
        reason = "the protocol finished"
        return [LogInfo(msg=f"{reason}: shutting the recording down"), EmitEvent(event=Shutdown(reason=reason))]
    what = "the protocol" if executable == "protocol_node" else f"node {name}"
    reason = f"{what} exited (exit code {event.returncode})"
    if executable in ("protocol_node", "recorder_node"):
        return [_fail(reason)]
    # a sensor source died: the recorder ends the session saying so, then the launch ends (exit code 1)
    call = ExecuteProcess(
        cmd=[
            "timeout",
            "20",
            "ros2",
            "service",
            "call",
            "/recorder/end_session",
            "microexp_msgs/srv/EndSession",
            f"{{reason: '{reason}'}}",
        ],
        name="end_session",
        output="log",
    )
    return [
        LogInfo(msg=f"{reason}: ending the session"),
        call,
        RegisterEventHandler(OnProcessExit(target_action=call, on_exit=[_fail(reason)])),
    ]


def _nodes(context):
    values = {o.name: LaunchConfiguration(o.name).perform(context) for o in RECORD_OPTIONS}
    extra = {name: LaunchConfiguration(name).perform(context) for name, _, _ in LAUNCH_ONLY}
    config = os.path.join(get_package_share_directory("microexp"), "config")
    actions = []
    for spec in record_graph(values):
        files = [os.path.join(config, f"{spec.executable}.yaml")] + ([spec.defaults] if spec.defaults else [])
        if extra["params_file"]:
            files.append(extra["params_file"])
        is_protocol = spec.executable == "protocol_node"
        node = Node(
            package="microexp",
            executable=spec.executable,
            name=spec.name,
            output="screen",
            emulate_tty=True,
            parameters=files + [spec.params],
            prefix=(extra["protocol_prefix"] or None) if is_protocol else None,
            ros_arguments=["--log-level", extra["log_level"]],
        )
        actions.append(node)
        # The protocol's end ends the launch; so does any other node's (a dead sensor or recorder leaves
        # nothing worth waiting for): every remaining node gets SIGINT and shuts down cleanly. A node other
        # than the protocol and the recorder first has the recorder end the session saying which one.
        actions.append(
            RegisterEventHandler(
                OnProcessExit(
                    target_action=node,
                    on_exit=lambda event, ctx, name=spec.name, kind=spec.executable: _on_exit(event, ctx, name, kind),
                )
            )
        )
    if extra["render"].lower() == "true":
        actions += _renderer(config, extra, record_graph(values))
    if extra["monitor"].lower() == "true":
        actions.append(_side_node("monitor_node", "monitor", config, extra, {}, prefix="nice -n 10"))
    return actions


def _side_node(executable: str, name: str, config: str, extra: dict, params: dict, prefix=None):
    """A node beside the recording (renderer, monitor): the package's parameters, the extra file, ``params``; its
    end ends nothing."""
    files = [os.path.join(config, f"{executable}.yaml")] + ([extra["params_file"]] if extra["params_file"] else [])
    return Node(
        package="microexp",
        executable=executable,
        name=name,
        output="screen",
        emulate_tty=True,
        parameters=files + [params],
        prefix=prefix,
        ros_arguments=["--log-level", extra["log_level"]],
    )


def _renderer(config: str, extra: dict, specs) -> list:
    """The renderer node on the graph's EVK4 events, else its DAVIS346 events (a sensor node's, or the synthetic
    rig's); its end ends nothing."""
    names = {spec.name for spec in specs}
    for spec in specs:
        if spec.executable == "synthetic_node":
            names.update(str(spec.params.get("sensors", "")).split(","))
    sensor = next((s for s in ("evk4", "davis346") if s in names), None)
    if sensor is None:
        return [LogInfo(msg="render:=true: no event sensor in this graph, no renderer")]
    return [_side_node("renderer_node", "renderer", config, extra, {"events_topic": f"/{sensor}/events"})]


def generate_launch_description():
    args = [
        DeclareLaunchArgument(o.name, default_value=_default_text(o.default), description=o.description)
        for o in RECORD_OPTIONS
    ]
    args += [DeclareLaunchArgument(n, default_value=d, description=desc) for n, d, desc in LAUNCH_ONLY]
    return LaunchDescription(args + [OpaqueFunction(function=_nodes)])
