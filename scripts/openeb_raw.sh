#!/usr/bin/env bash
# Compiles microexp's raw-bytes binding for OpenEB (ros2_ws/src/microexp/csrc/openeb_raw.cpp) against an OpenEB
# install, with the pybind11 version OpenEB's own bindings were built with, so that both share pybind11's type
# registry. The module lands beside OpenEB's Python bindings; a stamp keyed by the source, the pybind11 pin, the
# compiler and the Python skips a rebuild with the same inputs.
#
#   scripts/openeb_raw.sh --prefix DIR --site DIR --python EXE [--src FILE] [--pybind11 PIN]
#
#   --prefix DIR    the OpenEB install (include/ and lib/ of metavision_hal)
#   --site DIR      where OpenEB's Python modules are (metavision_hal*.so); the module is written there
#   --python EXE    the Python the module is built for (the one OpenEB's bindings were built for)
#   --src FILE      the C++ source (default: the repository's csrc/openeb_raw.cpp)
#   --pybind11 PIN  e.g. pybind11==2.13.6 (default: the pin in requirements/openeb.txt)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '[openeb-raw] %s\n' "$*" >&2; }
die() { printf 'openeb_raw: %s\n' "$*" >&2; exit 2; }

PREFIX="" SITE="" PYEXE="" SRC="$ROOT/ros2_ws/src/microexp/csrc/openeb_raw.cpp" PIN=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="${2:?--prefix needs a folder}"; shift 2 ;;
    --site) SITE="${2:?--site needs a folder}"; shift 2 ;;
    --python) PYEXE="${2:?--python needs an executable}"; shift 2 ;;
    --src) SRC="${2:?--src needs a file}"; shift 2 ;;
    --pybind11) PIN="${2:?--pybind11 needs a pin}"; shift 2 ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[ -n "$PREFIX" ] && [ -n "$SITE" ] && [ -n "$PYEXE" ] || die "--prefix, --site and --python are required"
[ -f "$PREFIX/include/metavision/hal/facilities/i_events_stream.h" ] \
  || die "$PREFIX is not an OpenEB install (no include/metavision/hal/facilities/i_events_stream.h)"
[ -f "$SRC" ] || die "source $SRC not found"
if [ -z "$PIN" ]; then
  PIN="$(grep -E '^pybind11==' "$ROOT/requirements/openeb.txt" | head -1)"
  [ -n "$PIN" ] || die "requirements/openeb.txt has no 'pybind11==<version>' line"
fi
mkdir -p "$SITE"
ext="$("$PYEXE" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
out="$SITE/microexp_openeb_raw$ext"
key="$( { sha256sum "$SRC" | cut -c1-64; echo "$PIN"; "${CXX:-g++}" --version | head -1; echo "$ext $PREFIX"; } \
  | sha256sum | cut -c1-16)"
stamp="$SITE/microexp_openeb_raw.stamp"
if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$key" ]; then
  log "cached: $out"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
pyinc="$("$PYEXE" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
if ver="$("$PYEXE" -c 'import pybind11; print(pybind11.__version__)' 2>/dev/null)" && [ "pybind11==$ver" = "$PIN" ]; then
  pbinc="$("$PYEXE" -c 'import pybind11; print(pybind11.get_include())')"
else
  PIPPY="$PYEXE"
  "$PIPPY" -m pip --version >/dev/null 2>&1 || PIPPY="$(command -v python3)"
  "$PIPPY" -m pip install -q --disable-pip-version-check --no-deps --target "$tmp/pybind11" "$PIN" >&2
  pbinc="$(find "$tmp/pybind11" -path '*pybind11/include' -type d | head -1)"
  [ -n "$pbinc" ] || die "pybind11's headers not found after installing $PIN"
fi
log "compiling $(basename "$SRC") ($PIN, $ext)"
"${CXX:-g++}" -O2 -std=c++17 -shared -fPIC -fvisibility=hidden -DNDEBUG \
  -I"$pbinc" -I"$pyinc" -I"$PREFIX/include" "$SRC" \
  -L"$PREFIX/lib" -lmetavision_hal -lmetavision_sdk_base -Wl,-rpath,"$PREFIX/lib" \
  -o "$tmp/module$ext"
mv "$tmp/module$ext" "$out"
echo "$key" > "$stamp"
log "built $out"
