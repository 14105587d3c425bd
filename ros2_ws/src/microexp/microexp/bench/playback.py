"""`microexp bench playback`: see :mod:`microexp.bench.io`."""
from microexp.bench.io import add_arguments, run_playback as _run  # noqa: F401


def run(args) -> dict:
    return _run(args)
