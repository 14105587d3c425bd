#!/usr/bin/env bash
# Builds the ROS 2 Jazzy command line (`ros2 launch / run / topic / node / param / service / interface / pkg`)
# for the pip install: launch, launch_ros, ros2cli and rosidl_runtime_py are pure Python and installed with the
# venv's pip into a prefix of their own; composition_interfaces (imported by launch_ros) is built with the venv's
# colcon exactly like ros2_ws. The sources are the upstream jazzy archives of $ROS2_SRC (default
# ../shared/ros2-src, see its README). The prefix lies outside the source tree and is named by a hash of its
# inputs, so a second run with the same inputs takes a second:
#   ${MICROEXP_CACHE:-~/.cache/microexp}/ros2-cli-<hash>/   bin/ros2, lib/python3.11/site-packages, env.sh, ...
# Afterwards `.venv/bin/ros2` (a wrapper sourcing <prefix>/env.sh) makes `ros2` work after `. .venv/bin/activate`.
#
# Usage: scripts/ros2_cli.sh [--src DIR] [--prefix DIR] [--venv DIR] [--print-prefix]
#   --src DIR      folder with launch.tar.gz, launch_ros.tar.gz, ros2cli.tar.gz, rosidl_runtime_py.tar.gz,
#                  rcl_interfaces.tar.gz (or the unpacked folders of the same names)
#   --prefix DIR   install here instead of the hashed cache folder (e.g. /opt/ros2-cli in an image)
#   --venv DIR     the Python environment to build for (default: .venv of this checkout)
#   --print-prefix only print the prefix the inputs hash to (nothing is built)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="${ROS2_SRC:-$ROOT/../shared/ros2-src}"
VENV="$ROOT/.venv"
PREFIX=""
PRINT=0
while [ $# -gt 0 ]; do
  case "$1" in
    --src) SRC="$2"; shift 2 ;;
    --prefix) PREFIX="$2"; shift 2 ;;
    --venv) VENV="$2"; shift 2 ;;
    --print-prefix) PRINT=1; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ros2_cli.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
log() { printf '[ros2-cli] %s\n' "$*"; }
ARCHIVES=(launch launch_ros ros2cli rosidl_runtime_py rcl_interfaces)

if [ ! -d "$SRC" ]; then
  echo "ros2_cli.sh: $SRC does not exist: give the folder of the ROS 2 launch/ros2cli sources with --src DIR or ROS2_SRC=DIR" >&2
  exit 2
fi
SRC="$(cd "$SRC" && pwd)"
for a in "${ARCHIVES[@]}"; do
  if [ ! -f "$SRC/$a.tar.gz" ] && [ ! -d "$SRC/$a" ]; then
    echo "ros2_cli.sh: $SRC has neither $a.tar.gz nor $a/ (expected: ${ARCHIVES[*]})" >&2
    exit 2
  fi
done
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
  echo "ros2_cli.sh: $PY is missing: run \`make setup\` first (or give --venv DIR)" >&2
  exit 2
fi
VENV="$(cd "$VENV" && pwd)"

# The inputs: the sources, this script, the pinned requirements (the wheels composition_interfaces is built
# against) and the venv it is built for (the entry points' interpreter).
inputs_hash() {
  {
    for a in "${ARCHIVES[@]}"; do
      if [ -f "$SRC/$a.tar.gz" ]; then sha256sum < "$SRC/$a.tar.gz"
      else (cd "$SRC/$a" && find . -type f ! -path '*/.git/*' -print0 | sort -z | xargs -0 sha256sum); fi
    done
    cat "$0" "$ROOT"/requirements/ros.txt "$ROOT"/requirements/ros2cli.txt "$ROOT"/requirements/constraints.txt
    echo "$VENV"
  } | sha256sum | cut -c1-16
}
HASH="$(inputs_hash)"
CACHE="${MICROEXP_CACHE:-$HOME/.cache/microexp}"
[ -n "$PREFIX" ] || PREFIX="$CACHE/ros2-cli-$HASH"
if [ "$PRINT" = 1 ]; then echo "$PREFIX"; exit 0; fi

write_pointers() {
  # .venv/ros2-cli -> the prefix; .venv/bin/ros2 sources its env.sh (so an activated venv has `ros2`)
  ln -sfn "$PREFIX" "$VENV/ros2-cli"
  cat > "$VENV/bin/ros2" <<EOF
#!/usr/bin/env bash
# Written by microexp's scripts/ros2_cli.sh: the ROS 2 command line built into $PREFIX.
. "$PREFIX/env.sh"
exec "$PREFIX/bin/ros2" "\$@"
EOF
  chmod 755 "$VENV/bin/ros2"
}

# The two PyPI packages the command line needs beyond the wheels live in the venv: a venv made anew at the
# same path (a fresh clone where an old one was) finds the prefix cached but lacks them.
install_deps() {
  "$PY" -c "import osrf_pycommon, psutil" 2>/dev/null && return 0
  "$PY" -m pip --disable-pip-version-check install -q -r "$ROOT/requirements/ros2cli.txt" \
    -c "$ROOT/requirements/constraints.txt"
}

if [ "$(cat "$PREFIX/.stamp" 2>/dev/null)" = "$HASH" ] && [ -x "$PREFIX/bin/ros2" ]; then
  install_deps
  write_pointers
  log "up to date: $PREFIX"
  exit 0
fi

t0=$(date +%s)
log "building into $PREFIX (first run about a minute)"
install_deps
rm -rf "$PREFIX"
mkdir -p "$PREFIX"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
for a in "${ARCHIVES[@]}"; do
  if [ -f "$SRC/$a.tar.gz" ]; then tar -xzf "$SRC/$a.tar.gz" -C "$WORK"; else cp -r "$SRC/$a" "$WORK/$a"; fi
done

# 1. the pure-Python packages
PKGS=(launch/launch launch/launch_xml launch/launch_yaml launch_ros/launch_ros launch_ros/ros2launch
      rosidl_runtime_py ros2cli/ros2cli ros2cli/ros2run ros2cli/ros2topic ros2cli/ros2node ros2cli/ros2param
      ros2cli/ros2service ros2cli/ros2interface ros2cli/ros2pkg)
(
  cd "$WORK"
  PYTHONWARNINGS=ignore "$PY" -m pip --disable-pip-version-check install -q --no-deps --no-build-isolation \
    --no-compile --prefix "$PREFIX" "${PKGS[@]/#/./}" > "$WORK/pip.log" 2>&1 \
    || { tail -30 "$WORK/pip.log" >&2; echo "ros2_cli.sh: pip install of the launch/ros2cli packages failed" >&2; exit 1; }
)

# 2. composition_interfaces, like ros2_ws (scripts/setup.sh): the venv's colcon and cmake arguments
(
  mkdir -p "$WORK/ws/src"
  mv "$WORK/rcl_interfaces/composition_interfaces" "$WORK/ws/src/"
  cd "$WORK/ws"
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
  export PYTHONWARNINGS=ignore::DeprecationWarning
  "$VENV/bin/colcon" --log-base log build --install-base "$PREFIX/ws" --merge-install \
    --event-handlers console_cohesion- status- \
    --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF -Wno-dev > "$WORK/colcon.log" 2>&1 \
    || { tail -40 "$WORK/colcon.log" >&2; echo "ros2_cli.sh: colcon build of composition_interfaces failed" >&2; exit 1; }
)

# 3. the environment of the prefix
cat > "$PREFIX/env.sh" <<EOF
# Environment of the ROS 2 command line in $PREFIX (written by microexp's scripts/ros2_cli.sh).
# Source it after activating $VENV, or call $VENV/bin/ros2, which sources it.
_p="$PREFIX"
export ROS2_CLI_PREFIX="\$_p"
export PATH="\$_p/bin\${PATH:+:\$PATH}"
export PYTHONPATH="\$_p/lib/python3.11/site-packages:\$_p/ws/lib/python3.11/site-packages\${PYTHONPATH:+:\$PYTHONPATH}"
export AMENT_PREFIX_PATH="\$_p:\$_p/ws\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export LD_LIBRARY_PATH="\$_p/ws/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
unset _p
EOF
echo "$HASH" > "$PREFIX/.stamp"
write_pointers
# check that the command runs: its extensions load and launch_ros imports (composition_interfaces included)
if ! out="$( . "$PREFIX/env.sh" && "$PY" -c 'import launch_ros, composition_interfaces.srv' 2>&1 && "$VENV/bin/ros2" launch --help 2>&1)"; then
  echo "$out" | tail -20 >&2
  echo "ros2_cli.sh: the built ros2 command does not run" >&2
  rm -f "$PREFIX/.stamp"
  exit 1
fi
log "built in $(( $(date +%s) - t0 )) s: $PREFIX (ros2 = $VENV/bin/ros2)"
