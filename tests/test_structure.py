"""Project structure rules: only microexp.ros imports rclpy; learn does not import infer; nothing outside the
benchmarks imports microexp.bench; no import circle among microexp modules; every node's YAML mirrors its
parameter specs."""

import ast
import importlib
import re
from pathlib import Path

import pytest
import yaml
from helpers.paths import PKG

from microexp.config import Param, markdown_table, resolve
from microexp.errors import ParameterError
from microexp.ros.nodes import BY_EXECUTABLE, NODES


def test_only_ros_package_imports_rclpy():
    offenders = []
    for f in (PKG / "microexp").rglob("*.py"):
        if "ros" in f.relative_to(PKG / "microexp").parts[:1]:
            continue
        if re.search(r"^\s*(import rclpy|from rclpy)", f.read_text(), re.M):
            offenders.append(str(f))
    assert offenders == []


def _module_name(root: Path, f: Path) -> str:
    parts = list(f.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict:
    """Module -> the package's modules it imports, at module level or inside functions (every import statement
    of its source). ``from pkg import name`` goes to ``pkg.name`` when that is a module, else to the submodule
    named by ``pkg``'s ``_SUBMODULE_OF`` table (packages that import their names lazily), else to ``pkg``."""
    files = {_module_name(root, f): f for f in root.rglob("*.py")}
    trees = {m: ast.parse(f.read_text(), str(f)) for m, f in files.items()}
    lazy = {}
    for m, tree in trees.items():
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_SUBMODULE_OF" for t in node.targets):
                lazy[m] = ast.literal_eval(node.value)
    graph = {}
    for m, tree in trees.items():
        package = m if files[m].name == "__init__.py" else m.rpartition(".")[0]
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in files)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                for a in node.names:
                    if f"{base}.{a.name}" in files:
                        deps.add(f"{base}.{a.name}")
                    elif a.name in lazy.get(base, {}):
                        deps.add(f"{base}.{lazy[base][a.name]}")
                    elif base in files:
                        deps.add(base)
        deps.discard(m)
        graph[m] = deps
    return graph


def import_circles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_learn_does_not_import_infer():
    graph = import_graph(PKG / "microexp")
    offenders = {
        m: sorted(d for d in deps if d == "microexp.infer" or d.startswith("microexp.infer."))
        for m, deps in graph.items()
        if m.startswith("microexp.learn")
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def bench_importers(graph: dict, package: str) -> dict:
    """Module -> the ``{package}.bench`` modules it imports, for every module outside ``{package}.bench`` and
    ``{package}.ros.bench`` (the benchmarks' ROS halves) that imports one."""
    bench = f"{package}.bench"
    allowed = (bench, f"{package}.ros.bench")
    found = {}
    for m, deps in graph.items():
        if any(m == a or m.startswith(a + ".") for a in allowed):
            continue
        hits = sorted(d for d in deps if d == bench or d.startswith(bench + "."))
        if hits:
            found[m] = hits
    return found


# docs/architecture.md, "Floors": a module imports only modules of its own floor or of a lower one
FLOORS = {
    **dict.fromkeys(
        (
            "events",
            "timesync",
            "bags",
            "vision",
            "synth",
            "protocol",
            "aus",
            "config",
            "errors",
            "playback",
            "schemas",
            "scoring",
        ),
        1,
    ),
    "drivers": 2,
    "models": 3,
    **dict.fromkeys(("infer", "learn", "monitor"), 4),
    **dict.fromkeys(("ros", "tools"), 5),
    **dict.fromkeys(("bench", "cli"), 6),
}


def floor_of(module: str) -> int:
    parts = module.split(".")
    return FLOORS[parts[1]] if len(parts) > 1 else 0


def floor_violations(graph: dict) -> list:
    return sorted((m, d) for m, deps in graph.items() for d in deps if floor_of(d) > floor_of(m))


def test_each_floor_imports_only_its_own_and_lower_floors():
    graph = import_graph(PKG / "microexp")
    tops = {m.split(".")[1] for m in graph if m.count(".")}
    assert tops <= set(FLOORS), f"folders without a floor in docs/architecture.md: {sorted(tops - set(FLOORS))}"
    assert floor_violations(graph) == []
    # the check sees a violation: the vision floor importing infer
    assert floor_violations({"microexp.vision.x": {"microexp.infer.live"}}) == [
        ("microexp.vision.x", "microexp.infer.live")
    ]


def test_drivers_import_only_the_event_core():
    """The camera drivers import the event core (floor 1) and each other only: no models, no work, no ROS."""
    graph = import_graph(PKG / "microexp")
    drivers = {m: deps for m, deps in graph.items() if m.startswith("microexp.drivers")}
    assert "microexp.drivers.evk4" in drivers and "microexp.events.evt3_split" in drivers["microexp.drivers.evk4"]
    above = {
        m: sorted(d for d in deps if not d.startswith("microexp.drivers") and floor_of(d) > 1)
        for m, deps in drivers.items()
    }
    assert {m: d for m, d in above.items() if d} == {}


def test_nothing_outside_bench_imports_bench():
    """Benchmarks sit on top: the package's other modules (ROS nodes and commands included) never import
    microexp.bench, at module level or inside functions; shared pieces live on the floor their users share."""
    graph = import_graph(PKG / "microexp")
    assert "microexp.ros.bench.latency" in graph["microexp.bench.latency"]  # function-level imports are seen
    assert bench_importers(graph, "microexp") == {}


def test_bench_import_check_finds_imports_inside_functions(tmp_path):
    pkg = tmp_path / "demo"
    for sub in ("bench", "ros", "ros/bench", "tools"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "bench" / "io.py").write_text("def load():\n    pass\n")
    (pkg / "bench" / "cli.py").write_text("from demo.bench import io\n")
    (pkg / "ros" / "bench" / "load.py").write_text("from demo.bench.io import load\n")  # allowed: a ROS half
    (pkg / "ros" / "node.py").write_text("def f():\n    from ..bench.io import load\n    return load\n")
    (pkg / "tools" / "info.py").write_text("import demo.bench.io\n")
    (pkg / "tools" / "ok.py").write_text("import demo.ros.node\n")
    (pkg / "top.py").write_text("from demo import bench\n")
    graph = import_graph(pkg)
    assert bench_importers(graph, "demo") == {
        "demo.ros.node": ["demo.bench.io"],
        "demo.tools.info": ["demo.bench.io"],
        "demo.top": ["demo.bench"],
    }


def test_no_import_circle_among_microexp_modules():
    """Imports inside functions count: a circle hidden in a function is still a circle."""
    graph = import_graph(PKG / "microexp")
    assert "microexp.models.snn" in graph["microexp.models.registry"]  # function-level imports are seen
    assert "microexp.models.checkpoint" in graph["microexp.learn.export"]  # lazy package names are resolved
    assert import_circles(graph) == []


def test_import_circle_check_finds_a_circle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "demo"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from demo.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n    return g\n")
    (pkg / "c.py").write_text("import demo.a\n\ndef g():\n    pass\n")
    (pkg / "d.py").write_text("from demo import a\n")
    graph = import_graph(pkg)
    assert import_circles(graph) == [["demo.a", "demo.c", "demo.sub.b"]]


def test_core_imports_without_rclpy(monkeypatch):
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['rclpy'] = None\n"
        "import microexp.events.codecs, microexp.events.dtype, microexp.bags.reader, microexp.config, microexp.cli\n"
        "import microexp.drivers.evk4, microexp.drivers.evk4_settings, microexp.drivers.davis\n"
        "print('ok')"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


@pytest.mark.parametrize("name", sorted(BY_EXECUTABLE))
def test_config_yaml_mirrors_param_specs(name):
    node = BY_EXECUTABLE[name]
    specs = importlib.import_module(node.module).PARAMS
    doc = yaml.safe_load((PKG / "config" / node.config).read_text())
    params = doc[node.name]["ros__parameters"]
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


def test_parameter_tables_are_current():
    from microexp.tools import params_doc

    page = (PKG.parents[2] / params_doc.PAGE).read_text()
    block = page[page.index(params_doc.BEGIN) + len(params_doc.BEGIN) : page.index(params_doc.END)]
    assert block.strip() == params_doc.tables().strip()


def test_readme_opens_with_demo_and_test():
    readme = (PKG.parents[2] / "README.md").read_text()
    commands = [line.split("#")[0].strip() for line in readme.splitlines() if line.startswith("make ")]
    assert commands[:2] == ["make demo", "make test"]


def test_node_table_lists_every_node_module_and_each_has_an_executable():
    """Every module of microexp/ros/nodes with a main() (a node executable) is in the node table; every table entry
    names a class of its module, a config file, and a console script of setup.py and of the installed
    package that runs its module's main()."""
    from importlib.metadata import entry_points

    nodes_dir = PKG / "microexp" / "ros" / "nodes"
    node_modules = set()
    for f in nodes_dir.glob("*.py"):
        tree = ast.parse(f.read_text(), str(f))
        if any(isinstance(c, ast.FunctionDef) and c.name == "main" for c in tree.body):
            node_modules.add(f"microexp.ros.nodes.{f.stem}")
    assert node_modules == {n.module for n in NODES}
    setup_py = (PKG / "setup.py").read_text()
    assert "node_entry_points()" in setup_py
    installed = {e.name: e.value for e in entry_points(group="console_scripts") if e.value.startswith("microexp.")}
    for n in NODES:
        module = importlib.import_module(n.module)
        assert isinstance(getattr(module, n.cls), type) and callable(module.main)
        assert (PKG / "config" / n.config).is_file()
        assert installed.get(n.executable) == f"{n.module}:main", n.executable
    import runpy

    import setuptools

    captured = {}
    monkey = pytest.MonkeyPatch()
    monkey.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
    try:
        runpy.run_path(str(PKG / "setup.py"), run_name="__main__")
    finally:
        monkey.undo()
    scripts = captured["entry_points"]["console_scripts"]
    assert sorted(s for s in scripts if not s.startswith("microexp ")) == sorted(n.entry_point for n in NODES)
