#!/usr/bin/env bash
# Entry point of the microexp image (ENTRYPOINT), also installed as /opt/microexp/bin/{microexp,ros2,record-session}
# (symbolic links: the name it is called by chooses what it runs). Same file on both build routes (Dockerfile).
#
#   entrypoint.sh CMD [ARGS]      set up ROS 2 and the workspace, check the recordings folder, exec CMD
#   microexp ARGS                 the same environment, then the workspace's `microexp` command (also works in
#                                 `docker compose exec`, which bypasses the entry point)
#   ros2 ARGS                     the same environment, then ros2cli under the venv's Python
#   record-session [KEY:=VALUE]   record one session into its own folder (launch-style arguments, see below)
#
# record-session: source:=device|file|synthetic (default device), out:=DIR (default: a new folder
# $MICROEXP_RECORDINGS_DIR/session-<UTC date>-<time>), and the other arguments of launch/record.launch.py
# (subject, aus, lux, storage, headless, time_scale, params_file, sensors, davis_file, evk4_file, webcam_file).
# MICROEXP_RECORD_WITH chooses the runner: cli (default, `microexp record` composes the same nodes in one process)
# or launch (`ros2 launch microexp record.launch.py`).
#
# Privacy: recordings show faces, which is biometric data. umask 077 makes every file written in the container
# owner-only (0600 files, 0700 folders).
#
# Any UID: compose runs the services as the host user's UID, which need not exist in the image. HOME, numba's
# cache and ROS's logs then go to a folder of that UID under /tmp when HOME is not writable.
#
# Overridable for tests and other layouts: MICROEXP_ROS_SETUP, MICROEXP_WS_SETUP (empty: nothing to source),
# MICROEXP_CLI (the real microexp command), MICROEXP_ROS2_BIN, MICROEXP_RECORDINGS_DIR (empty: no folder check).
set -eo pipefail
umask 077

ros_distro="${ROS_DISTRO:-jazzy}"
venv_bin="${VIRTUAL_ENV:-/opt/venv}/bin"

load_environment() {
  # Once per process tree: nested calls (entry point -> microexp -> ...) inherit the environment.
  if [ -z "${MICROEXP_ENV_LOADED:-}" ]; then
    # ROS's setup scripts are written neither for `set -u` nor for `set -e`.
    set +eu
    local f
    for f in "${MICROEXP_ROS_SETUP:-}" "${MICROEXP_WS_SETUP:-}"; do
      [ -n "$f" ] || continue
      if [ -f "$f" ]; then
        # shellcheck source=/dev/null
        . "$f"
      else
        echo "microexp entrypoint: warning: $f not found; not sourced" >&2
      fi
    done
    set -e
    if [ -z "${HOME:-}" ] || [ ! -w "${HOME}" ]; then
      export HOME="/tmp/microexp-home-$(id -u)"
      mkdir -p "$HOME"
    fi
    # numba caches compiled functions next to their module unless told otherwise: the image's site-packages are
    # not writable by the run-time UID.
    export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-${HOME}/.cache/numba}"
    export MPLCONFIGDIR="${MPLCONFIGDIR:-${HOME}/.cache/matplotlib}"
    mkdir -p "$NUMBA_CACHE_DIR" "$MPLCONFIGDIR" 2>/dev/null || true
    export MICROEXP_ENV_LOADED=1
  fi
  # ROS's setup puts /opt/ros/<distro>/bin first; the image's wrappers (ros2, microexp) must stay ahead of it.
  export PATH="/opt/microexp/bin:${venv_bin}:${PATH}"
}

# Says what the recordings folder allows; never fails (a read-only mount is normal for `infer`).
check_recordings() {
  local dir="${MICROEXP_RECORDINGS_DIR:-}"
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  if [ ! -w "$dir" ]; then
    return 0
  fi
  if [ ! -O "$dir" ]; then
    echo "microexp entrypoint: warning: $dir belongs to UID $(stat -c %u "$dir"), not to this user (UID $(id -u))" >&2
  elif [ "$(stat -c %a "$dir")" != 700 ]; then
    echo "microexp entrypoint: warning: $dir is mode $(stat -c %a "$dir"), not 0700 (owner-only): recordings show" \
         "faces; on the host: chmod 0700 that folder" >&2
  fi
}

record_session() {
  local source=device out="" arg key value runner="${MICROEXP_RECORD_WITH:-cli}"
  local -a cli_args=() launch_args=()
  for arg in "$@"; do
    if [[ "$arg" != *:=* ]]; then
      echo "record-session: error: argument '$arg' is not KEY:=VALUE" >&2
      return 2
    fi
    key="${arg%%:=*}"
    value="${arg#*:=}"
    case "$key" in
      source) source="$value" ;;
      out) out="$value" ;;
      headless) [ "$value" = true ] && cli_args+=(--headless); launch_args+=("$arg") ;;
      time_scale|params_file|davis_file|evk4_file|webcam_file)
        if [ "$key" = params_file ]; then cli_args+=(--params "$value"); else cli_args+=("--${key//_/-}" "$value"); fi
        launch_args+=("$arg") ;;
      subject|aus|lux|storage|sensors|takes|seed) cli_args+=("--$key" "$value"); launch_args+=("$arg") ;;
      *) echo "record-session: error: unknown argument '$key' (see launch/record.launch.py)" >&2; return 2 ;;
    esac
  done
  if [ -z "$out" ]; then
    out="${MICROEXP_RECORDINGS_DIR:-/data/recordings}/session-$(date -u +%Y%m%d-%H%M%S)"
    # two sessions started within the same second: number the second one
    local n=2 base="$out"
    while [ -e "$out" ]; do out="${base}-$n"; n=$((n + 1)); done
  fi
  echo "record-session: source $source, session folder $out" >&2
  case "$runner" in
    cli) exec "${MICROEXP_CLI:-/usr/local/lib/microexp-cli}" record --source "$source" --out "$out" "${cli_args[@]}" ;;
    launch) exec "${venv_bin}/python" "${MICROEXP_ROS2_BIN:-/opt/ros/${ros_distro}/bin/ros2}" launch microexp \
              record.launch.py "source:=$source" "out:=$out" "${launch_args[@]}" ;;
    *) echo "record-session: error: MICROEXP_RECORD_WITH must be cli or launch, not '$runner'" >&2; return 2 ;;
  esac
}

case "$(basename -- "$0")" in
  microexp)
    load_environment
    exec "${MICROEXP_CLI:-/usr/local/lib/microexp-cli}" "$@"
    ;;
  ros2)
    load_environment
    ros2_bin="${MICROEXP_ROS2_BIN:-/opt/ros/${ros_distro}/bin/ros2}"
    if [ ! -f "$ros2_bin" ]; then
      echo "ros2: this image has no ros2 command ($ros2_bin is absent); use microexp record/replay/infer/watch" >&2
      exit 127
    fi
    exec "${venv_bin}/python" "$ros2_bin" "$@"
    ;;
  record-session)
    load_environment
    check_recordings
    record_session "$@"
    ;;
  *)
    load_environment
    check_recordings
    if [ "$#" -eq 0 ]; then
      set -- bash
    fi
    exec "$@"
    ;;
esac
