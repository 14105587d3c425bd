"""Every command README.md and the pages of docs/ show in a bash block is run by a test exactly as a user types it
(a placeholder such as REC.raw given a real file), or is listed here with the reason it cannot be (a camera, the
rig's own DDS domain, hours of CPU). The lines that no other test runs are run here, in bash, with `.venv/bin`
first on PATH (as after `. .venv/bin/activate`), from a folder beside `../shared` as the pages assume."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from helpers.paths import REPO, TESTDATA

README = (REPO / "README.md").read_text()
DOCS = sorted((REPO / "docs").glob("*.md"))
SHOWN = README + "".join(page.read_text() for page in DOCS)  # what a user reads: README.md and docs/

# Lines that no test runs as shown, and why. Each reason names what runs instead.
NOT_RUN = {
    "make test": "CI's own command: .ci/run runs it on a fresh clone",
    "make bench": "every benchmark in turn, `offline` included: hours of CPU; test_bench.py runs their parts",
    "microexp play --evk4-file REC.raw --davis-file REC.aedat4 --webcam-file face.avi --rate 1": (
        "placeholders for the user's files; the nodes behind each option play such files in test_sensor_nodes.py"
    ),
    "microexp record --source device --subject S07 --out /data/recordings/S07 --lux 820": "needs the cameras",
    "ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET microexp record --source device --out /data/recordings/S07 --domain 42": (
        "needs the cameras, and the rig's domain 42 across the lab network"
    ),
    "microexp record --source synthetic --aus AU12 --out recordings/S01 --domain 42": (
        "domain 42 is the rig's: tests keep to a domain of their own (--domain: test_loss_and_neighbours.py)"
    ),
    "microexp infer --events-topic /davis346/events --frames-topic /davis346/image_raw --sensor davis346": (
        "runs until Ctrl-C on a live rig; `microexp infer` on a replay: test_infer_commands.py"
    ),
    "docker compose -f docker/compose.yaml -f docker/compose.gpu.yaml up -d infer": (
        "needs an NVIDIA GPU (the NVIDIA Container Toolkit); docker/smoke.sh runs `up -d infer` without the GPU file"
    ),
    "microexp synth-dataset --out out/synth": (
        "147 takes through DDS: too long for CI; one subject, two takes through the same path: test_learn.py"
    ),
    "microexp synth-dataset --out out/synth --takes 2": "as above, twice the takes",
    "microexp bench offline": "every Table 5 / 6 run: hours of CPU (make bench); the figures are in docs/offline.md",
}


def bash_commands(text: str) -> list[str]:
    """The command lines of the bash blocks of a markdown text, trailing comments removed."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def readme_commands() -> list[str]:
    """The command lines of README.md's bash blocks, trailing comments removed."""
    return bash_commands(README)


def docs_commands() -> list[str]:
    """The command lines of the bash blocks of every page of docs/."""
    return [line for page in DOCS for line in bash_commands(page.read_text())]


def not_run_by_any_test(lines: list[str]) -> list[str]:
    """The lines that no test file (nor docker/smoke.sh, which test_docker.py runs) holds, and NOT_RUN does not list."""
    here = Path(__file__).read_text()
    run_here = here[here.index("# --- run here") :]
    others = [p.read_text() for p in Path(__file__).parent.rglob("*.py") if p.name != Path(__file__).name]
    # a long line written as adjacent string literals over several lines ("... AU12 "\n    "out:=...") counts whole
    others = [re.sub(r'"\s*\n\s*"', "", text) for text in others]
    others.append((REPO / "docker" / "smoke.sh").read_text())  # run by test_docker.py; it runs `docker compose` lines
    return [
        line
        for line in lines
        if line not in NOT_RUN and line not in run_here and not any(line in text for text in others)
    ]


def test_every_readme_command_is_run_by_a_test_or_says_why():
    missing = not_run_by_any_test(readme_commands())
    stale = [line for line in NOT_RUN if line not in readme_commands() + docs_commands()]
    assert not missing, "README commands that no test runs and NOT_RUN does not explain:\n" + "\n".join(missing)
    assert not stale, "NOT_RUN lists lines README.md and docs/ no longer show:\n" + "\n".join(stale)


def test_every_docs_command_is_run_by_a_test_or_says_why():
    missing = not_run_by_any_test(docs_commands())
    assert not missing, "docs/ commands that no test runs and NOT_RUN does not explain:\n" + "\n".join(missing)


# --- run here: the lines below are run exactly as shown -------------------------------------------------------------


@pytest.fixture(scope="module")
def user_shell(tmp_path_factory):
    """A working folder beside a `../shared` link to the test data, and the environment of an activated venv."""
    root = tmp_path_factory.mktemp("readme")
    (root / "shared").mkdir()
    if TESTDATA.is_dir():
        (root / "shared" / "data").symlink_to(TESTDATA.resolve())
    work = root / "work"
    work.mkdir()
    env = dict(os.environ)
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(REPO / ".venv")
    env.pop("PYTHONPATH", None)
    return work, env


def run(line: str, shell, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    work, env = shell
    assert line in SHOWN, f"neither README.md nor docs/ shows {line!r}"
    t0 = time.monotonic()
    res = subprocess.run(
        ["bash", "-c", line],
        cwd=cwd or work,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{line}: exit {res.returncode}\n{out[-4000:]}"
    assert "Traceback" not in out and "never retrieved" not in out, out[-4000:]
    print(f"{line}: {time.monotonic() - t0:.1f} s")
    return res


def last_json(res: subprocess.CompletedProcess) -> dict:
    return json.loads(res.stdout.strip().splitlines()[-1])


def need_testdata() -> None:
    if not TESTDATA.is_dir():
        pytest.skip(f"{TESTDATA} is absent: the README's lines on ../shared/data cannot run")


@pytest.mark.ros
def test_readme_info_lines(user_shell):
    need_testdata()
    raw = last_json(run("microexp info ../shared/data/events/expelliarmus_evt3_sample.raw", user_shell))
    assert raw["format"] == "prophesee-raw-evt3" and raw["events"] > 0 and (raw["width"], raw["height"]) == (1280, 720)
    bag = last_json(run("microexp info ../shared/data/bags/event_camera_py_test_events_2", user_shell))
    assert bag["topics"] and sum(t["messages"] for t in bag["topics"].values()) > 0


@pytest.mark.ros
@pytest.mark.slow
def test_readme_play_lines_count_what_arrived(user_shell):
    synth = last_json(run("microexp play --synthetic --aus AU12,AU45 --count", user_shell, timeout=180))
    for topic in ("/davis346/events", "/evk4/events", "/webcam/image_raw"):
        assert synth[topic]["received"] > 0 and synth[topic]["lost"] == 0, (topic, synth[topic])
    need_testdata()
    raw = last_json(
        run("microexp play --count --evk4-file ../shared/data/events/expelliarmus_evt3_sample.raw --rate 1", user_shell)
    )
    info = last_json(run("microexp info ../shared/data/events/expelliarmus_evt3_sample.raw", user_shell))
    assert raw["/evk4/events"]["events"] == info["events"] and raw["/evk4/events"]["seq_gaps"] == 0


@pytest.mark.ros
@pytest.mark.slow
def test_readme_record_then_replay(user_shell):
    work, _ = user_shell
    summary = last_json(
        run("microexp record --source synthetic --aus AU2,AU12,AU45 --subject S01 --out recordings/S01", user_shell)
    )
    assert summary["kept"] == 3 and summary["lost"] == 0 and summary["errors"] == []
    assert summary["end_reason"] == "protocol finished"
    replay = last_json(run("microexp replay recordings/S01 --rate 1", user_shell))
    written = summary["topics"]
    for topic in ("/davis346/events", "/evk4/events", "/webcam/image_raw"):
        assert replay["published"][topic] == written[topic]["written"], topic
    assert replay["skipped"] == []


@pytest.mark.ros
@pytest.mark.slow
def test_make_demo(user_shell):
    """`make demo` from the repository root, as the README's first line: its outputs land in out/demo."""
    res = run("make demo", user_shell, timeout=900, cwd=REPO)
    demo = json.loads((REPO / "out" / "demo" / "demo.json").read_text())
    assert [s["true_au"] for s in demo["segments"]] == ["AU2", "AU12", "AU45", "AU61"], res.stdout[-2000:]
    assert demo["predictions"] > 0 and demo["dropped"] == 0
    assert all(s["windows"] > 0 for s in demo["segments"]), demo["segments"]
    for name in ("predictions.jsonl", "au_events.jsonl", "timeline.png", "event_frames.png"):
        assert (REPO / "out" / "demo" / name).stat().st_size > 0, name
    # per segment the live verdict beside the offline one, printed and in demo.json; nothing named at rest
    for s in demo["segments"]:
        assert f"demo: {s['segment']}: true {s['true_au']}, live " in res.stdout, res.stdout[-2000:]
        assert s["offline_au"] is not None and s["movement_windows"] < s["windows"]
    assert demo["au_events_in_rest"] == 0 and demo["spotting"]["tp"] >= 3, demo
    # the monitor page's address (8765, or a free port when that one is taken)
    assert re.search(r"^demo: live monitor on http://127\.0\.0\.1:\d+/ ", res.stdout, re.M), res.stdout[-2000:]
    assert demo["offline_correct"] is not None and demo["live_correct"] >= demo["offline_correct"] - 1, demo
