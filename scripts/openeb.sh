#!/usr/bin/env bash
# Builds OpenEB (Prophesee's open Metavision SDK: HAL + Python bindings) from a source folder and installs it
# into a cache outside the source tree, keyed by the source's hash, the build recipe (step 3 of this script), the
# pybind11 pin (requirements/openeb.txt) and the Python it is built for. A second run with the same inputs finds the finished install and takes a second.
#
#   scripts/openeb.sh [--src DIR] [--prefix DIR] [--python PYEXE] [--venv DIR] [--apt] [--deps-only] [--jobs N]
#
#   --src DIR      a folder holding openeb-<version>-src.tar.gz, or an unpacked OpenEB tree
#                  (default: $OPENEB_SRC, else ../shared/openeb-src beside the repository)
#   --prefix DIR   install there instead of ${MICROEXP_CACHE:-$HOME/.cache/microexp}/openeb-<key>
#   --python EXE   the Python the bindings are built for (default: the repository's .venv/bin/python)
#   --venv DIR     make metavision_hal importable in that venv (default: the venv of --python, when it is one)
#   --apt          install the missing Debian build packages first (apt-get, needs root)
#   --deps-only    only install the Debian build packages (for a Docker layer of its own), then exit
#   --jobs N       parallel compile jobs (default: the number of cores)
#
# Without --apt the Debian packages must already be there; a missing one is named and the script stops.
# The last line printed is the install prefix. <prefix>/env.sh sets LD_LIBRARY_PATH, PYTHONPATH and
# MV_HAL_PLUGIN_PATH for shells; the libraries carry an RPATH to <prefix>/lib, so Python needs only sys.path.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '[openeb] %s\n' "$*" >&2; }
die() { printf 'openeb: %s\n' "$*" >&2; exit 2; }

# Debian packages the build needs (headers + the shared libraries the install links against).
DEB_PKGS=(build-essential cmake pkg-config libusb-1.0-0-dev libboost-program-options-dev libboost-timer-dev
  libboost-chrono-dev libboost-thread-dev libboost-filesystem-dev libopencv-dev libprotobuf-dev
  protobuf-compiler libhdf5-dev)

SRC="${OPENEB_SRC:-$ROOT/../shared/openeb-src}"
PREFIX=""
PYEXE=""
VENV_DIR=""
APT=0
DEPS_ONLY=0
JOBS="$(nproc 2>/dev/null || echo 2)"
while [ $# -gt 0 ]; do
  case "$1" in
    --src) SRC="${2:?--src needs a folder}"; shift 2 ;;
    --prefix) PREFIX="${2:?--prefix needs a folder}"; shift 2 ;;
    --python) PYEXE="${2:?--python needs an executable}"; shift 2 ;;
    --venv) VENV_DIR="${2:?--venv needs a folder}"; shift 2 ;;
    --apt) APT=1; shift ;;
    --deps-only) DEPS_ONLY=1; APT=1; shift ;;
    --jobs) JOBS="${2:?--jobs needs a number}"; shift 2 ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

missing_debs() {
  local p
  for p in "${DEB_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || printf '%s\n' "$p"
  done
}

# 1. Debian packages ---------------------------------------------------------------------------------------
if command -v dpkg-query >/dev/null; then
  mapfile -t MISSING < <(missing_debs)
  if [ "${#MISSING[@]}" -gt 0 ]; then
    if [ "$APT" = 1 ]; then
      [ "$(id -u)" = 0 ] || die "installing Debian packages needs root: ${MISSING[*]}"
      log "apt-get install ${MISSING[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >&2
      apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >&2
    else
      die "missing Debian packages: ${MISSING[*]} (run with --apt as root, or apt-get install them)"
    fi
  fi
fi
[ "$DEPS_ONLY" = 1 ] && { log "Debian build packages present"; exit 0; }

# 2. inputs: source, Python, pybind11 pin -------------------------------------------------------------------
[ -e "$SRC" ] || die "OpenEB source folder '$SRC' not found (give --src or OPENEB_SRC)"
SRC="$(cd "$SRC" && pwd)"
TARBALL=""
if [ -f "$SRC/CMakeLists.txt" ] && [ -d "$SRC/hal" ]; then
  SRC_TREE="$SRC"
  src_hash="$(cd "$SRC" && find . -type f -not -path './build*' -not -path './.git/*' -print0 | LC_ALL=C sort -z \
    | xargs -0 sha256sum | sha256sum | cut -c1-16)"
else
  TARBALL="$(ls "$SRC"/openeb-*-src.tar.gz 2>/dev/null | head -1 || true)"
  [ -n "$TARBALL" ] || die "'$SRC' holds neither an OpenEB tree (CMakeLists.txt + hal/) nor openeb-*-src.tar.gz"
  src_hash="$(sha256sum "$TARBALL" | cut -c1-16)"
fi

if [ -z "$PYEXE" ]; then
  PYEXE="$ROOT/.venv/bin/python"
  [ -x "$PYEXE" ] || die "no --python given and $PYEXE does not exist (run make setup first)"
fi
command -v "$PYEXE" >/dev/null || die "python '$PYEXE' not found"
PYEXE="$(command -v "$PYEXE")"
# The extension modules depend on the interpreter's version and ABI, not on the venv or on numpy (pybind11
# resolves numpy at run time), so the key names the base interpreter; every venv of it shares one build.
py_key="$("$PYEXE" -c 'import sys, sysconfig; print(sys.version.split()[0], sys.base_prefix, sysconfig.get_config_var("EXT_SUFFIX"))')"
py_is_venv="$("$PYEXE" -c 'import sys; print(int(sys.prefix != sys.base_prefix))')"

REQ="$ROOT/requirements/openeb.txt"
[ -f "$REQ" ] || die "$REQ not found (it pins pybind11; copy it along with this script)"
PYBIND11_PIN="$(grep -E '^pybind11==' "$REQ" | head -1)"
[ -n "$PYBIND11_PIN" ] || die "$REQ has no 'pybind11==<version>' line"

# Only the build recipe (between the two "recipe" marker lines of step 3) enters the key: editing the rest of
# this script (options, messages, the venv link) does not force a rebuild.
script_hash="$(sed -n '/^# >>> recipe/,/^# <<< recipe/p' "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
key="$(printf '%s\n' "$src_hash" "$script_hash" "$py_key" "$PYBIND11_PIN" | sha256sum | cut -c1-16)"
CACHE="${MICROEXP_CACHE:-$HOME/.cache/microexp}"
[ -n "$PREFIX" ] || PREFIX="$CACHE/openeb-$key"
mkdir -p "$PREFIX"
PREFIX="$(cd "$PREFIX" && pwd)"
SITE_REL="lib/python3/dist-packages"

# 3. build + install (skipped when the stamp says this exact key is installed) -----------------------------
if [ "$(cat "$PREFIX/.microexp-openeb" 2>/dev/null)" = "$key" ]; then
  log "cached: $PREFIX"
else
  t0=$(date +%s)
  WORK="$PREFIX.build"
  # pybind11 comes from PyPI through pip (the target Python's, else python3's)
  { "$PYEXE" -m pip --version || python3 -m pip --version; } >/dev/null 2>&1 \
    || die "neither $PYEXE nor python3 has pip, which fetches $PYBIND11_PIN (install python3-pip)"
  rm -rf "$WORK" "${PREFIX:?}"/*
  mkdir -p "$WORK"
  if [ -n "$TARBALL" ]; then
    log "unpacking $(basename "$TARBALL")"
    tar -xzf "$TARBALL" -C "$WORK"
    SRC_TREE="$(find "$WORK" -mindepth 1 -maxdepth 1 -type d | head -1)"
  fi
# >>> recipe (hashed into the cache key)
  log "pybind11 ($PYBIND11_PIN) into $WORK/pybind11"
  PIPPY="$PYEXE"
  "$PIPPY" -m pip --version >/dev/null 2>&1 || PIPPY="$(command -v python3)"
  "$PIPPY" -m pip install -q --disable-pip-version-check --no-deps --target "$WORK/pybind11" "$PYBIND11_PIN" >&2
  PYBIND11_DIR="$(find "$WORK/pybind11" -name pybind11Config.cmake -printf '%h\n' | head -1)"
  [ -n "$PYBIND11_DIR" ] || die "pybind11's CMake config not found after installing $PYBIND11_PIN"
  log "configure ($PYEXE, $py_key)"
  cmake -S "$SRC_TREE" -B "$WORK/build" -Wno-dev \
    -DCMAKE_BUILD_TYPE=Release -DCOMPILE_PYTHON3_BINDINGS=ON -DBUILD_TESTING=OFF -DBUILD_SAMPLES=OFF \
    -DUDEV_RULES_SYSTEM_INSTALL=OFF -DLFS_DOWNLOAD_COMPILATION_RESOURCES=OFF -DLFS_DOWNLOAD_VALIDATION_RESOURCES=OFF \
    "-DMETAVISION_SELECTED_MODULES=base;core;stream;core_ml" \
    -DPython3_EXECUTABLE="$PYEXE" -DPYTHON3_SITE_PACKAGES="$PREFIX/$SITE_REL" \
    -Dpybind11_DIR="$PYBIND11_DIR" \
    -DCMAKE_INSTALL_PREFIX="$PREFIX" -DCMAKE_INSTALL_RPATH="$PREFIX/lib" > "$WORK/configure.log" 2>&1 \
    || { tail -30 "$WORK/configure.log" >&2; die "cmake configure failed (log: $WORK/configure.log)"; }
  log "compile with -j$JOBS (a cold build takes 10-25 min on 2 cores)"
  cmake --build "$WORK/build" -j"$JOBS" > "$WORK/build.log" 2>&1 \
    || { tail -30 "$WORK/build.log" >&2; die "compile failed (log: $WORK/build.log)"; }
  cmake --install "$WORK/build" > "$WORK/install.log" 2>&1 \
    || { tail -30 "$WORK/install.log" >&2; die "install failed (log: $WORK/install.log)"; }
# <<< recipe
  cat > "$PREFIX/env.sh" <<EOF
# Written by microexp's scripts/openeb.sh: source it to use this OpenEB install from a shell.
export LD_LIBRARY_PATH="$PREFIX/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PYTHONPATH="$PREFIX/$SITE_REL\${PYTHONPATH:+:\$PYTHONPATH}"
export MV_HAL_PLUGIN_PATH="$PREFIX/lib/metavision/hal/plugins"
export PATH="$PREFIX/bin:\$PATH"
EOF
  # the build folder is about 180 MB; the install is what is kept
  rm -rf "$WORK"
  PYTHONPATH="$PREFIX/$SITE_REL" "$PYEXE" -c 'import metavision_hal' \
    || die "the install at $PREFIX does not import (metavision_hal) under $PYEXE"
  echo "$key" > "$PREFIX/.microexp-openeb"
  log "built and installed in $(( $(date +%s) - t0 )) s: $PREFIX"
fi

# 3b. microexp's raw-bytes binding (scripts/openeb_raw.sh; its own stamp, so a change to it leaves OpenEB built)
bash "$ROOT/scripts/openeb_raw.sh" --prefix "$PREFIX" --site "$PREFIX/$SITE_REL" --python "$PYEXE" --pybind11 "$PYBIND11_PIN" \
  || die "microexp's OpenEB raw binding did not build (scripts/openeb_raw.sh)"

# 4. make it importable from the venv -------------------------------------------------------------------
if [ -z "$VENV_DIR" ] && [ "$py_is_venv" = 1 ]; then
  VENV_DIR="$("$PYEXE" -c 'import sys; print(sys.prefix)')"
fi
if [ -n "$VENV_DIR" ]; then
  VPY="$VENV_DIR/bin/python"
  [ -x "$VPY" ] || die "--venv '$VENV_DIR' has no bin/python"
  SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  # A .pth line adds the bindings to sys.path; it sorts before ros_wheels_bootstrapper.pth, so the
  # LD_LIBRARY_PATH it prepends (for child processes such as OpenEB's own tools) is seen when that
  # bootstrapper re-executes Python. The libraries themselves are found through their RPATH.
  cat > "$SITE/_microexp_openeb.py" <<PYEOF
# Written by microexp's scripts/openeb.sh: makes the OpenEB install $PREFIX importable.
import os, sys
_prefix = "$PREFIX"
_sp = os.path.join(_prefix, "$SITE_REL")
if os.path.isdir(_sp) and _sp not in sys.path:
    sys.path.append(_sp)
    _cur = [c for c in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if c]
    if os.path.join(_prefix, "lib") not in _cur:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([os.path.join(_prefix, "lib")] + _cur)
    os.environ.setdefault("MV_HAL_PLUGIN_PATH", os.path.join(_prefix, "lib", "metavision", "hal", "plugins"))
    os.environ["MICROEXP_OPENEB_PREFIX"] = _prefix
PYEOF
  echo "import _microexp_openeb" > "$SITE/_microexp_openeb.pth"
  "$VPY" -c 'import metavision_hal' || die "metavision_hal does not import in $VENV_DIR"
  log "metavision_hal importable in $VENV_DIR"
fi
echo "$PREFIX"
