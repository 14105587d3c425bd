#!/usr/bin/env bash
# Smoke test of the lab image (issue 7).
#
# Where a Docker engine answers (`docker info` succeeds):
#   1. builds docker/Dockerfile from the repository root, with the build args of docker/versions.env;
#   2. runs `ros2 launch microexp record.launch.py source:=synthetic` in a container for 10 s (then SIGINT, as
#      Ctrl-C would), its recordings going to a fresh owner-only temporary folder mounted at /data/recordings;
#   3. checks every bag written there with `microexp info` inside the container: each must be readable and hold
#      at least one message.
# Where no engine answers (no docker client, or `docker info` fails) it prints a line starting with
# "SKIPPED: no Docker engine" and exits 0: nothing was built or run, and it says so.
#
# Exit status: 0 passed (or skipped), 1 failed.
# Settings (environment):
#   MICROEXP_SMOKE_IMAGE        image tag to build and run        (default microexp:smoke)
#   MICROEXP_SMOKE_SECONDS      how long to record                (default 10)
#   MICROEXP_SMOKE_LAUNCH_ARGS  arguments of record.launch.py     (default "source:=synthetic")
#   MICROEXP_SMOKE_NO_BUILD=1   run an image built before, do not build
#   MICROEXP_SMOKE_KEEP=1       keep the temporary recordings folder (its path is printed)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
log() { printf '[smoke] %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*"; exit 1; }

if ! command -v docker > /dev/null 2>&1; then
  echo "SKIPPED: no Docker engine (no docker command on PATH); the image was not built and nothing was run"
  exit 0
fi
if ! docker info > /dev/null 2>&1; then
  echo "SKIPPED: no Docker engine (docker info failed); the image was not built and nothing was run"
  exit 0
fi

image="${MICROEXP_SMOKE_IMAGE:-microexp:smoke}"
seconds="${MICROEXP_SMOKE_SECONDS:-10}"
launch_args="${MICROEXP_SMOKE_LAUNCH_ARGS:-source:=synthetic}"

# 1. build ---------------------------------------------------------------------------------------------------
if [ "${MICROEXP_SMOKE_NO_BUILD:-0}" != 1 ]; then
  build_args=()
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in ''|'#'*) continue ;; esac
    build_args+=(--build-arg "$line")
  done < "$here/versions.env"
  log "building $image from $root (docker/Dockerfile, ${#build_args[@]} build args from docker/versions.env)"
  docker build -f "$here/Dockerfile" -t "$image" "${build_args[@]}" "$root" || fail "docker build"
fi

# 2. record --------------------------------------------------------------------------------------------------
recordings="$(mktemp -d "${TMPDIR:-/tmp}/microexp-smoke.XXXXXX")"
chmod 0700 "$recordings"
cleanup() {
  if [ "${MICROEXP_SMOKE_KEEP:-0}" = 1 ]; then
    log "recordings kept in $recordings"
  else
    rm -rf "$recordings"
  fi
}
trap cleanup EXIT

# The container runs as the calling user (so the temporary folder stays owner-only and removable), with no
# network but loopback (DDS discovery stays inside the container), and ROS's log folder in /tmp.
run=(docker run --rm --network none --user "$(id -u):$(id -g)"
     -e ROS_HOME=/tmp/ros -e ROS_LOG_DIR=/tmp/ros/log
     -e ROS_DOMAIN_ID=0 -e ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
     -e MICROEXP_RECORDINGS_DIR=/data/recordings
     -v "$recordings:/data/recordings" -w /data/recordings
     "$image")

log "recording ${seconds}s: ros2 launch microexp record.launch.py $launch_args"
set +e
# shellcheck disable=SC2016  # $1 and $2 expand in the container's shell
"${run[@]}" bash -c 'timeout --signal=INT --kill-after=20 "$1" ros2 launch microexp record.launch.py $2' \
  smoke "$seconds" "$launch_args"
rc=$?
set -e
# 124: stopped by the timeout, as intended; 0: the launch ended by itself (e.g. a short synthetic session).
if [ "$rc" -ne 124 ] && [ "$rc" -ne 0 ]; then
  fail "ros2 launch microexp record.launch.py exited with status $rc"
fi

# 3. check ---------------------------------------------------------------------------------------------------
mapfile -t bags < <(find "$recordings" -name metadata.yaml -printf '%h\n' | sort -u)
if [ "${#bags[@]}" -eq 0 ]; then
  # A bag whose writer was not closed has no metadata.yaml: `microexp info` still reads its storage file.
  mapfile -t bags < <(find "$recordings" -type f \( -name '*.mcap' -o -name '*.db3' \) | sort)
fi
if [ "${#bags[@]}" -eq 0 ]; then
  find "$recordings" -maxdepth 3 | sed 's/^/[smoke]   /'
  fail "no bag was written under the recordings folder"
fi

checked=0
for bag in "${bags[@]}"; do
  inside="/data/recordings/${bag#"$recordings"/}"
  log "microexp info $inside"
  # shellcheck disable=SC2016  # $1 expands in the container's shell
  if ! "${run[@]}" bash -c 'set -euo pipefail
      microexp info "$1" > /tmp/info.json
      python - /tmp/info.json <<"PY"
import json, sys
info = json.load(open(sys.argv[1]))
topics = info.get("topics") or {}
items = topics.values() if isinstance(topics, dict) else topics
messages = sum(int(t.get("messages", 0) or 0) for t in items if isinstance(t, dict))
print(f"[smoke]   {len(topics)} topics, {messages} messages")
sys.exit(0 if messages > 0 else 1)
PY' smoke "$inside"; then
    fail "microexp info did not read $inside, or found no message in it"
  fi
  checked=$((checked + 1))
done
echo "PASSED: image $image recorded ${seconds}s with $launch_args; $checked bag(s) read back by microexp info"
