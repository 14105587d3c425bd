"""DDS settings of every microexp process: domain, discovery range, and the Fast DDS profile.

- Domain: ``ROS_DOMAIN_ID`` (default 0), or ``--domain N`` of the pip commands.
- Discovery range: ``ROS_AUTOMATIC_DISCOVERY_RANGE``. The pip commands default to ``LOCALHOST``: a session
  sees only publishers on its own machine unless the user sets the variable or passes ``--discovery subnet``
  (``off``, ``localhost``, ``subnet``, ``system_default``). The node executables (``ros2 run`` / launch)
  follow the environment as every ROS 2 program does.
- Fast DDS profile: ``config/fastdds_profiles.xml`` of the package (installed by ``make setup``; see the
  file for what it sets) is loaded by every node process through ``FASTDDS_DEFAULT_PROFILES_FILE`` unless
  the user names a profile file of their own (that variable or ``FASTRTPS_DEFAULT_PROFILES_FILE``).
Must run before ``rclpy.init()``: rcl and Fast DDS read these variables when the context and participant
are created.
"""

from __future__ import annotations

import os
from pathlib import Path

from microexp.errors import ParameterError

RANGES = {"off": "OFF", "localhost": "LOCALHOST", "subnet": "SUBNET", "system_default": "SYSTEM_DEFAULT"}
PROFILE_NAME = "fastdds_profiles.xml"


def add_dds_arguments(parser) -> None:
    parser.add_argument(
        "--domain", type=int, default=None, help="DDS domain (ROS_DOMAIN_ID, 0-101; default: the environment's, else 0)"
    )
    parser.add_argument(
        "--discovery",
        choices=sorted(RANGES),
        default=None,
        help="DDS discovery range (default: ROS_AUTOMATIC_DISCOVERY_RANGE, else localhost: only this machine)",
    )


def profile_path() -> Path | None:
    """The package's Fast DDS profile file: the source tree's config folder (editable install), else the
    ament share folder."""
    here = Path(__file__).resolve().parents[2] / "config" / PROFILE_NAME
    if here.is_file():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        shared = Path(get_package_share_directory("microexp")) / "config" / PROFILE_NAME
        return shared if shared.is_file() else None
    except Exception:  # noqa: BLE001 - no ament index: no profile, Fast DDS defaults
        return None


def use_profile(env=None) -> str | None:
    """Point Fast DDS at the package's profile unless a profile file is named already; returns the file used."""
    env = os.environ if env is None else env
    for var in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        if env.get(var):
            return env[var]
    path = profile_path()
    if path is not None:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(path)
        return str(path)
    return None


def configure(args=None, env=None) -> dict:
    """Set domain, discovery range and profile in ``env`` (default ``os.environ``) from ``args.domain`` /
    ``args.discovery`` and the defaults above; returns the settings in effect."""
    env = os.environ if env is None else env
    domain = getattr(args, "domain", None)
    if domain is not None:
        if not 0 <= int(domain) <= 232:
            raise ParameterError(f"--domain {domain}: a DDS domain is 0..232 (0..101 portable)")
        env["ROS_DOMAIN_ID"] = str(int(domain))
    discovery = getattr(args, "discovery", None)
    if discovery is not None:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = RANGES[discovery]
    else:
        env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    profile = use_profile(env)
    return {
        "domain": int(env.get("ROS_DOMAIN_ID") or 0),
        "discovery": env["ROS_AUTOMATIC_DISCOVERY_RANGE"],
        "profile": profile,
    }
