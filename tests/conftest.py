"""Shared fixtures. Real recordings come from $MICROEXP_TESTDATA (default ../shared/data); tests that need
them skip with the reason when the folder is absent. DDS tests run on a domain of their own."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTDATA = Path(os.environ.get("MICROEXP_TESTDATA", REPO.parent / "shared" / "data"))

# Keep every DDS participant of this test run on localhost and on a domain no other run is likely to share.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))


def testdata_path(*parts: str) -> Path:
    """Path of a recording under $MICROEXP_TESTDATA, or skip the test saying what is missing."""
    path = TESTDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"test recording {path} is absent (set MICROEXP_TESTDATA to the shared data folder)")
    return path


@pytest.fixture
def testdata():
    return testdata_path
