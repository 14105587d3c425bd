#!/usr/bin/env bash
# Creates .venv (Python 3.11) with the pinned ROS 2 Jazzy wheels and every other pinned dependency,
# builds ros2_ws with colcon, and installs the `microexp` command. Idempotent: each step keeps a stamp
# (a hash of its inputs) and is skipped when the stamp matches, so a second run takes seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${MICROEXP_PYTHON:-python3.11}"
WS="$ROOT/ros2_ws"
log() { printf '[setup] %s\n' "$*"; }

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# 1. the virtual environment and its packages --------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PY" >/dev/null || { echo "setup: $PY not found; Python 3.11 is required (set MICROEXP_PYTHON)" >&2; exit 2; }
  log "creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
env_stamp="$(hash_of "$ROOT"/requirements/*.txt "$ROOT/scripts/setup.sh")"
# Free space that a first install needs: torch's CUDA build and its libraries make the venv about 6.5 GiB.
NEED_GIB="${MICROEXP_SETUP_NEED_GIB:-7}"
free_gib() { df -Pk "$1" | awk 'NR == 2 { printf "%.1f", $4 / 1048576 }'; }
if [ "$(cat "$VENV/.stamp-env" 2>/dev/null)" != "$env_stamp" ]; then
  if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    free="$(free_gib "$VENV")"
    if awk -v f="$free" -v n="$NEED_GIB" 'BEGIN { exit !(f < n) }'; then
      echo "setup: only $free GiB free on the filesystem of $VENV; installing its packages needs about $NEED_GIB GiB" \
           "(torch's CUDA build): free some space and run make setup again" >&2
      exit 1
    fi
  fi
  log "installing pinned packages (first run: a few minutes; torch is a large wheel)"
  "${PIP[@]}" install -q -r "$ROOT/requirements/ros.txt" -r "$ROOT/requirements/core.txt" \
      -c "$ROOT/requirements/constraints.txt"
  "${PIP[@]}" install -q --no-deps -r "$ROOT/requirements/nodeps.txt"
  # The message wheels' exported CMake targets name include folders of the machine they were built on;
  # point them at this venv's Python and numpy headers instead.
  py_inc="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  np_inc="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
  { grep -rl "/opt/python/cp311-cp311" "$VENV/share" --include='*.cmake' 2>/dev/null || true; } | while read -r f; do
    sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#${py_inc}#g" \
           -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${np_inc}#g" "$f"
  done
  echo "$env_stamp" > "$VENV/.stamp-env"
else
  log "packages up to date"
fi

# 2. the colcon workspace ------------------------------------------------------------------------------
ws_stamp="$(cd "$WS/src" && find . -path ./microexp/microexp -prune -o -type f \( -name '*.msg' -o -name '*.srv' \
  -o -name CMakeLists.txt -o -name package.xml -o -name '*.xml' -o -name setup.py -o -name setup.cfg -o -name '*.yaml' \) -print \
  | sort | xargs cat | sha256sum | cut -c1-16)-$env_stamp"
if [ "$(cat "$WS/install/.stamp-ws" 2>/dev/null)" != "$ws_stamp" ] || [ ! -d "$WS/install/microexp_msgs" ]; then
  log "building ros2_ws with colcon"
  rm -rf "$WS/build" "$WS/install" "$WS/log"
  (
    cd "$WS"
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    export PYTHONWARNINGS=ignore::DeprecationWarning
    "$VENV/bin/colcon" --log-base log build --symlink-install --event-handlers console_cohesion- status- \
      --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF -Wno-dev > "$WS/colcon-build.log" 2>&1 \
      || { tail -40 "$WS/colcon-build.log" >&2; echo "setup: colcon build failed (full log: $WS/colcon-build.log)" >&2; exit 1; }
  )
  echo "$ws_stamp" > "$WS/install/.stamp-ws"
else
  log "ros2_ws up to date"
fi

# 3. make the workspace visible to every Python process of the venv ---------------------------------------
# A .pth line runs before ros_wheels_bootstrapper.pth (alphabetical order): it adds the built interface
# packages to sys.path, LD_LIBRARY_PATH and AMENT_PREFIX_PATH; the bootstrapper then re-executes Python
# with that LD_LIBRARY_PATH, as it does for the wheels' own libraries.
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat > "$SITE/_microexp_ws.py" <<PYEOF
# Written by microexp's scripts/setup.sh: makes ros2_ws/install usable from this venv.
import os, sys
_ws = "$WS/install"
_pkgs = ["event_camera_msgs", "microexp_msgs", "microexp"]
for _p in _pkgs[:2]:
    _sp = os.path.join(_ws, _p, "lib", "python3.11", "site-packages")
    if os.path.isdir(_sp) and _sp not in sys.path:
        sys.path.append(_sp)
def _prepend(var, items):
    cur = [c for c in os.environ.get(var, "").split(os.pathsep) if c]
    new = [i for i in items if i not in cur]
    if new:
        os.environ[var] = os.pathsep.join(new + cur)
_prepend("LD_LIBRARY_PATH", [os.path.join(_ws, p, "lib") for p in _pkgs[:2]])
_prepend("AMENT_PREFIX_PATH", [os.path.join(_ws, p) for p in _pkgs] + [sys.prefix])
PYEOF
echo "import _microexp_ws" > "$SITE/_microexp_ws.pth"

# 4. the microexp package itself, editable, with its console script -------------------------------------
# reinstalled when what setup.py reads changes (its entry points come from the node table), so that the
# console scripts of an existing venv follow moved modules
pkg_stamp="$(cat "$WS/src/microexp/setup.py" "$WS/src/microexp/setup.cfg" "$WS/src/microexp/microexp/ros/nodes/__init__.py" \
  2>/dev/null | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/microexp" ] || [ "$(cat "$VENV/.stamp-microexp-pkg" 2>/dev/null)" != "$pkg_stamp" ]; then
  log "installing the microexp command"
  "${PIP[@]}" install -q --no-deps --no-build-isolation -e "$WS/src/microexp"
  echo "$pkg_stamp" > "$VENV/.stamp-microexp-pkg"
fi
log "ready: . .venv/bin/activate   (or run .venv/bin/microexp)"
