"""microexp: event-camera facial micro-expression acquisition and inference.

The core subpackages (events, bags, timesync, synth, vision, models, learn) never import rclpy;
only :mod:`microexp.ros` does.
"""

__version__ = "0.1.0"


def _numba_cache_dir() -> None:
    """numba's compiled-function caches (``cache=True``) go to the user's cache folder, never into the package:
    $NUMBA_CACHE_DIR when set, else ~/.cache/microexp/numba ($MICROEXP_CACHE/numba). Set before numba loads."""
    import os
    import sys

    if not os.environ.get("NUMBA_CACHE_DIR"):
        base = os.environ.get("MICROEXP_CACHE") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "microexp"
        )
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(base, "numba")
    if "numba" in sys.modules:  # loaded before microexp: its configuration has read the environment already
        sys.modules["numba"].config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]


_numba_cache_dir()
