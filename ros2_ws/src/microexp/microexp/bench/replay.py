"""`microexp bench replay`: see :mod:`microexp.bench.io`."""
from microexp.bench.io import add_arguments, run_replay as _run  # noqa: F401


def run(args) -> dict:
    return _run(args)
