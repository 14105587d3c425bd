"""The quick tier, `make check`: its marker selection (tests/conftest.py marks what needs Docker, OpenEB or the ros2
command line as `heavy`) leaves those tests and the slow ones out and keeps the quick ones; `make test` selects
everything. Only pytest's collection runs here, never the tier itself."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers.paths import REPO

MAKEFILE = (REPO / "Makefile").read_text()
FILES = ["tests/test_docker.py", "tests/test_evk4_device.py", "tests/test_launch.py", "tests/test_frames.py"]


def check_markers() -> str:
    m = re.search(r"^CHECK_MARKERS\s*:?=\s*(.+)$", MAKEFILE, flags=re.M)
    assert m, "the Makefile defines no CHECK_MARKERS"
    return m.group(1).strip()


def collected(*args: str) -> set[str]:
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *args, *FILES],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return {line.strip() for line in res.stdout.splitlines() if "::" in line}


def test_make_check_is_lint_and_the_quick_selection_and_make_test_is_everything():
    check = re.search(r"^check:(.*)\n((?:\t.*\n)+)", MAKEFILE, flags=re.M)
    assert check, "the Makefile has no check target"
    assert check.group(1).split() == ["setup", "lint"]
    assert '-m pytest tests -m "$(CHECK_MARKERS)"' in check.group(2)
    assert re.search(r"^\.PHONY:.*\bcheck\b", MAKEFILE, flags=re.M)
    test = re.search(r"^test:.*\n((?:\t.*\n)+)", MAKEFILE, flags=re.M)
    assert test and "-m pytest tests;" in test.group(1) and " -m " not in test.group(1).split("pytest tests")[1]
    assert check_markers() == "not slow and not heavy"


def test_the_quick_selection_leaves_out_docker_openeb_and_launch_and_keeps_quick_tests():
    everything = collected()
    quick = collected("-m", check_markers())
    assert quick < everything
    left_out = everything - quick
    # Docker: the image build and run; OpenEB: every test that needs the built HAL; ros2 launch: the whole file
    assert "tests/test_docker.py::test_smoke_builds_and_runs_the_deployment" in left_out
    assert any(t.startswith("tests/test_evk4_device.py::test_make_openeb_is_cached") for t in left_out)
    assert any(t.startswith("tests/test_evk4_device.py::test_device_path_on_a_raw_file") for t in left_out)
    assert not [t for t in quick if t.startswith("tests/test_launch.py::")]
    # quick ones stay: static Docker checks, the engine-less dockerd/smoke test, bias files, event frames
    for kept in (
        "tests/test_docker.py::test_without_an_engine_smoke_fails_and_dockerd_start_says_why",
        "tests/test_docker.py::test_compose_validates_against_the_compose_schema",
        "tests/test_evk4_device.py::test_bias_file_parses_and_is_checked_against_the_imx636_table",
        "tests/test_frames.py::test_channels_are_polarities_and_counts_add_up",
    ):
        assert kept in quick, kept
    # heavy alone (no slow test needs it) still finds the OpenEB tests: the mark comes from the fixture
    heavy = collected("-m", "heavy")
    assert "tests/test_evk4_device.py::test_make_openeb_is_cached" in heavy
    assert all(not t.startswith("tests/test_frames.py::") for t in heavy)
