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


def one_line_error(res: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """The CLI's fault contract: exit status ``code``, one line on stderr (ROS log lines aside) that holds every
    one of ``needles``, no traceback. Returns that line."""
    assert res.returncode == code, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("microexp ")]
    assert len(lines) == 1, res.stderr[-3000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]
