"""Shared fixtures (plain helper functions live in tests/helpers/). Real recordings come from $MICROEXP_TESTDATA
(default ../shared/data); tests that need them skip with the reason when the folder is absent. DDS tests run on
a domain of their own."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from helpers.paths import testdata_path

# Keep every DDS participant of this test run on localhost and on a domain no other run is likely to share.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))


# The quick tier (`make check`) runs `-m "not slow and not heavy"`. Heavy: needs something that `make test`
# builds or starts outside the venv, taking minutes on a fresh machine: the ros2 CLI (`make ros2-cli`, fixture
# cli_env), OpenEB (`make openeb`, fixture openeb), a Docker engine and image build (marked in the test).
HEAVY_FIXTURES = {
    "cli_env": "the ROS 2 command line (ros2 launch/run/topic, built by `make ros2-cli`)",
    "openeb": "OpenEB (built by `make openeb`)",
    "page": "a headless chromium (Debian's, installed by `make test`)",
}


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "heavy: needs Docker, OpenEB or the ros2 command line (built or started outside the venv); "
        "`make check` leaves these out",
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HEAVY_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.heavy)


@pytest.fixture(scope="module")
def cli_env():
    """The environment of a shell after `. .venv/bin/activate`, with `ros2` built by `make ros2-cli` (from
    $ROS2_SRC, default ../shared/ros2-src; skipped with the reason when that folder is absent)."""
    import subprocess
    import time

    from helpers.paths import REPO

    ros2_src = Path(os.environ.get("ROS2_SRC", REPO.parent / "shared" / "ros2-src"))
    if not ros2_src.is_dir():
        pytest.skip(
            f"{ros2_src} is absent: the ROS 2 command line (launch, ros2cli) cannot be built "
            "(give its folder with ROS2_SRC=DIR)"
        )
    t0 = time.monotonic()
    res = subprocess.run(
        ["make", "ros2-cli", f"ROS2_SRC={ros2_src}"], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    print(f"make ros2-cli: {time.monotonic() - t0:.1f} s")
    env = dict(os.environ)
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(REPO / ".venv")
    env.pop("PYTHONPATH", None)
    yield env
    # the ros2 commands started a daemon for this domain: stop it with the tests
    subprocess.run(["bash", "-c", "ros2 daemon stop"], env=env, capture_output=True, timeout=60)


@pytest.fixture
def page():
    """A page of a headless Chromium (Debian's chromium, driven by Playwright), closed after the test."""
    from microexp.monitor.browser import browser

    with browser() as b:
        p = b.new_page(viewport={"width": 1400, "height": 900})
        yield p


@pytest.fixture
def testdata():
    return testdata_path


@pytest.fixture
def graph():
    """A multi-threaded node runner (microexp.ros.runner), closed after the test."""
    from microexp.ros.runner import Runner

    g = Runner(threads=2)
    yield g
    g.close()


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of :func:`helpers.infer.random_snn`: stands in for the trained default model."""
    from helpers.infer import random_snn

    from microexp.models import save_checkpoint

    path = tmp_path_factory.mktemp("models") / "random_untrained_snn.pt"
    save_checkpoint(path, random_snn(), extra={"note": "random initialisation, scaled: tests only"})
    return path
