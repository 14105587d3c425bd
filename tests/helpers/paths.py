"""Where things are: the repository, the ROS package, the shared test recordings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "ros2_ws" / "src" / "microexp"
TESTDATA = Path(os.environ.get("MICROEXP_TESTDATA", REPO.parent / "shared" / "data"))


def testdata_path(*parts: str) -> Path:
    """Path of a recording under $MICROEXP_TESTDATA, or skip the test saying what is missing."""
    path = TESTDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"test recording {path} is absent (set MICROEXP_TESTDATA to the shared data folder)")
    return path
