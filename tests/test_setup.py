"""scripts/setup.sh refuses a first install that cannot fit, with one line, before pip writes anything."""

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_setup_stops_with_one_line_when_the_disk_is_too_full(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    shutil.copytree(REPO / "requirements", tmp_path / "requirements")
    env = {**os.environ, "HOME": str(tmp_path), "MICROEXP_SETUP_NEED_GIB": "1000000"}
    proc = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "setup.sh")], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("setup: only ") and "GiB free" in lines[0] and str(tmp_path / ".venv") in lines[0]
    assert "needs about 1000000 GiB" in lines[0]
    # pip never ran: the venv has no torch and no stamp
    assert not (tmp_path / ".venv" / ".stamp-env").exists()
    assert not list((tmp_path / ".venv" / "lib").glob("python3.11/site-packages/torch"))
