"""`microexp bench replay`: see :mod:`microexp.bench.io`."""

from microexp.bench.io import add_arguments  # noqa: F401
from microexp.bench.io import run_replay as _run


def run(args) -> dict:
    return _run(args)
