"""numba's compiled-kernel caches go to the user's cache folder ($NUMBA_CACHE_DIR, else
~/.cache/microexp/numba), never into the package tree."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "ros2_ws" / "src" / "microexp" / "microexp"
CODE = (
    "import microexp.events.codecs as c, microexp.events.dtype as d\n"
    "ev = d.make_events([1, 2], [3, 4], [10, 20], [1, 0])\n"
    "payload, tb = c.make_encoder('libcaer', 346, 260).encode(ev)\n"
    "c.make_decoder('libcaer', 346, 260).decode(bytes(payload), int(tb))\n"
)


def _cache_files(folder: Path) -> set:
    return {p for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc")}


@pytest.mark.parametrize("own_dir", [False, True])
def test_numba_caches_go_to_the_users_cache_folder(tmp_path, own_dir):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "MICROEXP_CACHE", "XDG_CACHE_HOME")}
    env["HOME"] = str(tmp_path / "home")
    expected = tmp_path / "home" / ".cache" / "microexp" / "numba"
    if own_dir:
        expected = tmp_path / "numba"
        env["NUMBA_CACHE_DIR"] = str(expected)
    before = _cache_files(PKG)
    res = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert _cache_files(expected), f"no numba cache in {expected}"
    assert _cache_files(PKG) == before, "numba wrote caches into the package tree"
