#!/usr/bin/env bash
# Entry point of the microexp image (ENTRYPOINT), also installed as /opt/venv/bin/microexp and /opt/venv/bin/ros2
# (symbolic links: the name it is called by chooses what it runs).
#
#   entrypoint.sh CMD [ARGS]   source ROS 2 and the workspace, prepare the recordings folder, exec CMD
#   microexp ARGS              the same environment, then the workspace's `microexp` command (works in
#                              `docker compose exec`, which bypasses the entry point)
#   ros2 ARGS                  the same environment, then ros2cli under the venv's Python, so that `ros2 launch`
#                              and the nodes it starts see the pinned packages (torch, numpy 2, ...)
#
# Privacy: recordings show faces, which is biometric data. umask 077 makes every file written in the container
# owner-only (0600 files, 0700 folders), and the recordings folder is kept at 0700.
#
# Overridable for tests and other layouts: MICROEXP_ROS_SETUP, MICROEXP_WS_SETUP, MICROEXP_BIN, MICROEXP_ROS2_BIN,
# MICROEXP_RECORDINGS_DIR (empty: no recordings folder handling).
set -eo pipefail
umask 077

ros_distro="${ROS_DISTRO:-jazzy}"
ros_setup="${MICROEXP_ROS_SETUP:-/opt/ros/${ros_distro}/setup.bash}"
ws_setup="${MICROEXP_WS_SETUP:-/opt/microexp/ws/install/setup.bash}"
venv_bin="${VIRTUAL_ENV:-/opt/venv}/bin"

load_environment() {
  # Once per process tree: nested calls (entry point -> ros2 -> ...) inherit the sourced environment.
  if [ -z "${MICROEXP_ENV_LOADED:-}" ]; then
    # ROS's setup scripts are written neither for `set -u` (they read unset variables) nor for `set -e`.
    set +eu
    if [ -f "$ros_setup" ]; then
      # shellcheck source=/dev/null
      . "$ros_setup"
    else
      echo "microexp entrypoint: warning: $ros_setup not found; ROS 2 is not set up" >&2
    fi
    if [ -f "$ws_setup" ]; then
      # shellcheck source=/dev/null
      . "$ws_setup"
    else
      echo "microexp entrypoint: warning: $ws_setup not found; the microexp workspace is not set up" >&2
    fi
    set -e
    export MICROEXP_ENV_LOADED=1
  fi
  # ROS's setup puts /opt/ros/<distro>/bin first; the venv's wrappers (ros2, microexp) must stay ahead of it.
  export PATH="${venv_bin}:${PATH}"
}

prepare_recordings() {
  local dir="${MICROEXP_RECORDINGS_DIR:-}"
  [ -n "$dir" ] || return 0
  if [ ! -d "$dir" ]; then
    # umask 077 (above) makes every folder this creates 0700, parents included.
    mkdir -p "$dir" 2>/dev/null \
      || { echo "microexp entrypoint: warning: cannot create the recordings folder $dir" >&2; return 0; }
  fi
  if [ -O "$dir" ]; then
    chmod 0700 "$dir"
  else
    echo "microexp entrypoint: warning: $dir belongs to UID $(stat -c %u "$dir"), not to this user (UID $(id -u));" \
         "recordings may not be writable. On the host: chown $(id -u):$(id -g) and chmod 0700 that folder." >&2
  fi
  if [ ! -w "$dir" ]; then
    echo "microexp entrypoint: warning: the recordings folder $dir is not writable by UID $(id -u)" >&2
  fi
}

case "$(basename -- "$0")" in
  microexp)
    load_environment
    exec "${MICROEXP_BIN:-/opt/microexp/ws/install/microexp/lib/microexp/microexp}" "$@"
    ;;
  ros2)
    load_environment
    exec "${venv_bin}/python" "${MICROEXP_ROS2_BIN:-/opt/ros/${ros_distro}/bin/ros2}" "$@"
    ;;
  *)
    load_environment
    prepare_recordings
    if [ "$#" -eq 0 ]; then
      set -- bash
    fi
    exec "$@"
    ;;
esac
