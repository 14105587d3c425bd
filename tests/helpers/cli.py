"""Running the `microexp` command line in a child process."""

from __future__ import annotations

import subprocess
import sys


def microexp(*args, timeout=300, check=False, **kw) -> subprocess.CompletedProcess:
    """``python -m microexp.cli ARGS`` with text output captured; ``check``: assert that it exited 0."""
    res = subprocess.run(
        [sys.executable, "-m", "microexp.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw
    )
    if check:
        assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-3000:])
    return res


def microexp_ok(*args, timeout=300, check=True) -> subprocess.CompletedProcess:
    """:func:`microexp` that asserts success unless told ``check=False``."""
    return microexp(*args, timeout=timeout, check=check)
