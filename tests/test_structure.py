"""Project structure rules: only microexp.ros imports rclpy; every node's YAML mirrors its parameter specs."""
import importlib
import re
from pathlib import Path

import pytest
import yaml

from microexp.config import Param, markdown_table, resolve
from microexp.errors import ParameterError

PKG = Path(__file__).resolve().parents[1] / "ros2_ws" / "src" / "microexp"
NODES = {"evk4_node": ("microexp.ros.evk4_node", "evk4"), "webcam_node": ("microexp.ros.webcam_node", "webcam"),
         "davis346_node": ("microexp.ros.davis346_node", "davis346"),
         "recorder_node": ("microexp.ros.recorder_node", "recorder"),
         "protocol_node": ("microexp.ros.protocol_node", "protocol"),
         "synthetic_node": ("microexp.ros.synthetic_node", "synthetic"),
         "replay_node": ("microexp.ros.replay_node", "replay"),
         "inference_node": ("microexp.ros.inference_node", "inference")}


def test_only_ros_package_imports_rclpy():
    offenders = []
    for f in (PKG / "microexp").rglob("*.py"):
        if "ros" in f.relative_to(PKG / "microexp").parts[:1]:
            continue
        if re.search(r"^\s*(import rclpy|from rclpy)", f.read_text(), re.M):
            offenders.append(str(f))
    assert offenders == []


def test_core_imports_without_rclpy(monkeypatch):
    import subprocess
    import sys

    code = ("import sys; sys.modules['rclpy'] = None\n"
            "import microexp.events.codecs, microexp.events.dtype, microexp.bags.reader, microexp.config, microexp.cli\n"
            "print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


@pytest.mark.parametrize("name", sorted(NODES))
def test_config_yaml_mirrors_param_specs(name):
    module, node_name = NODES[name]
    specs = importlib.import_module(module).PARAMS
    doc = yaml.safe_load((PKG / "config" / f"{name}.yaml").read_text())
    params = doc[node_name]["ros__parameters"]
    assert params == {p.name: p.default for p in specs}
    assert all(p.description for p in specs)
    assert markdown_table(specs).count("\n") == len(specs) + 1


def test_param_checks_name_the_parameter():
    spec = [Param("rate", 1.0, "speed", min=0.0, max=10.0), Param("mode", "file", "m", choices=("file", "device"))]
    assert resolve(spec, {"rate": 2}) == {"rate": 2.0, "mode": "file"}
    with pytest.raises(ParameterError, match="rate.*above"):
        resolve(spec, {"rate": 11})
    with pytest.raises(ParameterError, match="mode"):
        resolve(spec, {"mode": "camera"})
    with pytest.raises(ParameterError, match="unknown parameter.*speed"):
        resolve(spec, {"speed": 1})


def test_readme_parameter_tables_are_current():
    from microexp.tools import params_doc

    readme = (PKG.parents[2] / "README.md").read_text()
    block = readme[readme.index(params_doc.BEGIN) + len(params_doc.BEGIN):readme.index(params_doc.END)]
    assert block.strip() == params_doc.tables().strip()


def test_readme_opens_with_demo_and_test():
    readme = (PKG.parents[2] / "README.md").read_text()
    commands = [line.split("#")[0].strip() for line in readme.splitlines() if line.startswith("make ")]
    assert commands[:2] == ["make demo", "make test"]
