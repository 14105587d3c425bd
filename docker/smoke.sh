#!/usr/bin/env bash
# Smoke test of the image and of docker/compose.yaml, built and run on this machine from nothing but the
# repository, the Debian mirror of this machine's apt, PyPI and ../shared (the OpenEB source archive).
#
#   bash docker/smoke.sh          (needs a Docker engine: bash docker/dockerd.sh start; root for debootstrap)
#
#   1. base image: docker/base.sh (debootstrap + docker import; skipped when its content-hash tag exists);
#   2. OpenEB and ROS 2 source images from ../shared/openeb-src and ../shared/ros2-src (tagged by the archives'
#      hash; skipped when they exist);
#   3. the image: docker/Dockerfile, pip route (ROS 2 wheels as `make setup`), OpenEB from that archive, the CA of
#      this machine's pip passed as the build secret `ca`;
#   4. GPU check: torch in the image, the nvidia runtime of the engine; a CPU fallback is reported loudly;
#   5. with Compose, as a host user that owns a fresh 0700 recordings folder (root runs it as UID 4242: the image's
#      user is 1000, so the any-UID path is what runs): records two synthetic sessions in a row (`record`, each
#      into its own timestamped folder), starts `infer` and `watch`, replays the first session in a third
#      container, counts AU predictions in a fourth (`microexp watch --count`), checks that `watch` printed them,
#      that the `monitor` service serves its page on the host's 127.0.0.1 and its websocket shows the replay,
#      that every service's health check reached healthy, that every file is owned by the host user with modes
#      0700/0600, and that `docker kill` of `record` mid-segment leaves a bag that `microexp info` reads.
#
# Prints `[smoke] ...` progress lines, then one JSON line of figures (seconds, image size), then PASSED or
# `FAILED: reason`. Exit status 0 passed, 1 failed (no engine included: nothing is skipped silently).
# Settings (environment): MICROEXP_SMOKE_IMAGE (default microexp:smoke), MICROEXP_SHARED (default ../shared),
# MICROEXP_SMOKE_KEEP=1 keeps the recordings folder, MICROEXP_CA_BUNDLE (default: the cert of `pip config`),
# MICROEXP_SMOKE_PREDICTIONS (default 3), MICROEXP_SMOKE_BUILD_LOG (keep the build log there), ROS_DOMAIN_ID (default 42), MICROEXP_DOCKER (the docker client),
# MICROEXP_SMOKE_PRUNE_CACHE=1 (after the build, remove the engine's build cache that the build did not use: CI sets it).
# Untagged microexp images that earlier builds left are always removed (they hold GBs each).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
shared="${MICROEXP_SHARED:-$root/../shared}"
image="${MICROEXP_SMOKE_IMAGE:-microexp:smoke}"
n_pred="${MICROEXP_SMOKE_PREDICTIONS:-3}"
t0=$SECONDS
log() { printf '[smoke] %s (%ds)\n' "$*" $((SECONDS - t0)); }
fail() { printf 'FAILED: %s\n' "$*"; exit 1; }
docker_cli() { "${MICROEXP_DOCKER:-$(command -v /usr/bin/docker || command -v docker)}" "$@"; }

# --- the engine and the tools ----------------------------------------------------------------------------------
command -v /usr/bin/docker > /dev/null || command -v docker > /dev/null \
  || fail "no docker client on PATH (bash docker/dockerd.sh start installs docker.io)"
docker_cli info > /dev/null 2>&1 || fail "no Docker engine answers (start one: bash docker/dockerd.sh start)"
if docker_cli compose version > /dev/null 2>&1; then
  compose_cmd=(docker_cli compose)
elif command -v docker-compose > /dev/null; then
  compose_cmd=(docker-compose)
else
  fail "neither 'docker compose' nor docker-compose is installed (bash docker/dockerd.sh start installs it)"
fi
archive="$(ls "$shared"/openeb-src/openeb-*-src.tar.gz 2>/dev/null | head -n 1 || true)"
[ -n "$archive" ] || fail "no OpenEB source archive in $shared/openeb-src"
openeb_version="$(basename "$archive" | sed -E 's/^openeb-(.*)-src\.tar\.gz$/\1/')"
ca="${MICROEXP_CA_BUNDLE:-${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}}"

# --- 1-3. build --------------------------------------------------------------------------------------------------
log "base image"
base_tag="$(bash "$here/base.sh")" || fail "docker/base.sh failed"
src_tag="microexp-openeb-src:${openeb_version}-$(sha256sum "$archive" | cut -c1-12)"
if ! docker_cli image inspect "$src_tag" > /dev/null 2>&1; then
  log "OpenEB source image $src_tag"
  printf 'FROM scratch\nCOPY %s /\n' "$(basename "$archive")" \
    | DOCKER_BUILDKIT=1 docker_cli build -q -t "$src_tag" -f- "$(dirname "$archive")" > /dev/null \
    || fail "could not make the OpenEB source image"
fi
# The ROS 2 launch/ros2cli sources (scripts/ros2_cli.sh builds `ros2` from them), tagged by their hash.
ros2_dir="$shared/ros2-src"
if ! ls "$ros2_dir"/*.tar.gz > /dev/null 2>&1; then
  log "no $ros2_dir: the image gets no ros2 command"
  ros2_dir="$(mktemp -d)"; echo "no ROS 2 sources" > "$ros2_dir/NONE.tar.gz.txt"
fi
ros2_tag="microexp-ros2-src:$(cat "$ros2_dir"/*.tar.gz* | sha256sum | cut -c1-12)"
if ! docker_cli image inspect "$ros2_tag" > /dev/null 2>&1; then
  (cd "$ros2_dir" && printf 'FROM scratch\nCOPY %s /\n' "$(ls ./*.tar.gz* | tr '\n' ' ')") \
    | DOCKER_BUILDKIT=1 docker_cli build -q -t "$ros2_tag" -f- "$ros2_dir" > /dev/null \
    || fail "could not make the ROS 2 source image"
fi
secret=()
if [ -n "$ca" ] && [ -s "$ca" ]; then secret=(--secret "id=ca,src=$ca"); fi
# Images that earlier builds left untagged (same label, no tag) hold GBs each: remove them before and after.
prune_old_images() {
  docker_cli image prune -f --filter "label=org.opencontainers.image.title=microexp" 2> /dev/null \
    | sed -n 's/^Total reclaimed space: \(.*\)/[smoke] removed untagged microexp images: \1/p' | grep -v ': 0B$' || true
}
prune_old_images
docker_root="$(docker_cli info -f '{{.DockerRootDir}}' 2> /dev/null || echo /var/lib/docker)"
free_gib="$(df -Pk "$docker_root" 2> /dev/null | awk 'NR == 2 { printf "%d", $4 / 1048576 }')"
if [ -n "$free_gib" ] && [ "$free_gib" -lt 12 ]; then
  log "warning: $free_gib GiB free under $docker_root; a build without cache needs about 12 GiB"
fi
log "building $image (pip route, OpenEB $openeb_version; first build: tens of minutes)"
build_start=$SECONDS
build_log="${MICROEXP_SMOKE_BUILD_LOG:-$(mktemp "${TMPDIR:-/tmp}/microexp-smoke-build.XXXXXX")}"
if ! DOCKER_BUILDKIT=1 docker_cli build --progress=plain --network host -f "$root/docker/Dockerfile" \
      --build-arg ROS_ROUTE=pip --build-arg "BASE_IMAGE_PIP=$base_tag" \
      --build-arg OPENEB_SOURCE=archive --build-arg "OPENEB_ARCHIVE_IMAGE=$src_tag" --build-arg "ROS2_SRC_IMAGE=$ros2_tag" \
      --build-arg "OPENEB_VERSION=$openeb_version" "${secret[@]}" -t "$image" "$root" > "$build_log" 2>&1; then
  tail -n 30 "$build_log"
  fail "docker build failed (log $build_log)"
fi
build_s=$((SECONDS - build_start))
cached_steps="$(grep -c ' CACHED$' "$build_log" || true)"
[ -n "${MICROEXP_SMOKE_BUILD_LOG:-}" ] || rm -f "$build_log"
size="$(docker_cli image inspect -f '{{.Size}}' "$image")"
log "built in ${build_s}s ($cached_steps cached steps), image size $((size / 1000000)) MB"
prune_old_images
if [ "${MICROEXP_SMOKE_PRUNE_CACHE:-0}" = 1 ]; then
  # Build cache that this build did not use (earlier builds' layers, GBs each); every project's, hence opt-in.
  docker_cli builder prune -f --filter "until=$((build_s + 300))s" 2> /dev/null \
    | sed -n 's/^Total reclaimed space: \(.*\)/[smoke] removed build cache this build did not use: \1/p' || true
fi

# --- 4. GPU check --------------------------------------------------------------------------------------------------
compose_files=(-f "$root/docker/compose.yaml")
gpu_args=()
if docker_cli info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia; then
  compose_files+=(-f "$root/docker/compose.gpu.yaml")
  gpu_args=(--gpus 1)
fi
gpu_line="$(docker_cli run --rm "${gpu_args[@]}" --entrypoint /opt/microexp/docker/entrypoint.sh "$image" python3 -c '
import torch
cuda = torch.version.cuda
if torch.cuda.is_available():
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__} CUDA {cuda}")
else:
    print(f"CPU FALLBACK: torch {torch.__version__} (CUDA {cuda} build) sees no usable GPU")
' 2>&1 | tail -n 1)"
if [[ "$gpu_line" == GPU:* ]]; then
  log "$gpu_line"
else
  host_gpu="no NVIDIA GPU on this host"
  if command -v nvidia-smi > /dev/null; then
    host_gpu="host driver $(nvidia-smi --query-gpu=driver_version,name,compute_cap --format=csv,noheader 2>/dev/null | head -n 1)"
  fi
  [ "${#gpu_args[@]}" -gt 0 ] || host_gpu="$host_gpu; the engine has no nvidia runtime (NVIDIA Container Toolkit)"
  printf '\n[smoke] !!!!! %s\n[smoke] !!!!! %s: inference runs on the CPU (docker/README.md, "GPU")\n\n' "$gpu_line" "$host_gpu"
fi

# EVK4 device_read=raw in the image: a RAW file written here, opened through OpenEB as a device, read back through
# microexp's binding byte for byte.
raw_line="$(docker_cli run --rm --entrypoint /opt/microexp/docker/entrypoint.sh "$image" python3 -c '
import os, tempfile
import numpy as np
from microexp.events.dtype import EVENT_DTYPE
from microexp.events.evt3 import Evt3Encoder
from microexp.drivers.evk4 import OpenEBDevice
ev = np.zeros(50000, EVENT_DTYPE)
ev["x"], ev["y"], ev["p"], ev["t"] = np.arange(50000) % 1280, np.arange(50000) % 720, 1, np.arange(50000) * 20
payload, _ = Evt3Encoder(1280, 720, vectors="sensor").encode(ev)
path = os.path.join(tempfile.mkdtemp(), "smoke.raw")
with open(path, "wb") as f:
    f.write(b"% camera_integrator_name Prophesee\n% evt 3.0\n% format EVT3;height=720;width=1280\n% geometry 1280x720\n% end\n" + payload)
dev = OpenEBDevice(raw_file=path)
dev.open()
read, why = dev.choose_read("raw")
dev.start(raw=True)
got = b""
while (pieces := dev.read(1.0)) is not None:
    got += b"".join(bytes(p) for p in pieces)
print("RAW OK" if got == payload else f"RAW MISMATCH {len(got)} of {len(payload)} bytes")
' 2>&1 | tail -n 1)" || true  # a failing check prints its last line below instead of ending the script silently
[ "$raw_line" = "RAW OK" ] || fail "evk4 device_read=raw in the image: $raw_line"
log "evk4 device_read=raw: OpenEB device bytes equal the file's payload"

# --- 5. compose ------------------------------------------------------------------------------------------------------
uid="$(id -u)"; gid="$(id -g)"
if [ "$uid" -eq 0 ]; then uid=4242; gid=4242; fi
work="$(mktemp -d "${TMPDIR:-/tmp}/microexp-smoke.XXXXXX")"
rec="$work/recordings"
mkdir -p "$rec" "$work/usb"
chown "$uid:$gid" "$rec" 2>/dev/null || true
chmod 0700 "$rec" "$work"
project="microexp-smoke-$$"
export COMPOSE_PROJECT_NAME="$project" MICROEXP_IMAGE="$image" MICROEXP_RECORDINGS_HOST_DIR="$rec" \
  MICROEXP_RECORDINGS_VOLUME="$project-recordings" MICROEXP_UID="$uid" MICROEXP_GID="$gid" \
  MICROEXP_USB_BUS="$work/usb" MICROEXP_WEBCAM_DEVICE=/dev/null MICROEXP_HEALTH_INTERVAL=2s \
  ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-42}" ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
compose() { "${compose_cmd[@]}" "${compose_files[@]}" "$@"; }
cleanup() {
  compose down --volumes --remove-orphans -t 5 > /dev/null 2>&1 || true
  for c in $(docker_cli ps -aq --filter "label=com.docker.compose.project=$project"); do docker_cli rm -f "$c" > /dev/null 2>&1 || true; done
  if [ "${MICROEXP_SMOKE_KEEP:-}" = 1 ]; then echo "[smoke] kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

health() { docker_cli inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1" 2>/dev/null || echo gone; }
# wait_healthy CONTAINER SECONDS: true once its health check passed (also after it exited, from the health log)
wait_healthy() {
  local c="$1" limit="$2" start=$SECONDS
  while [ $((SECONDS - start)) -lt "$limit" ]; do
    [ "$(health "$c")" = healthy ] && return 0
    if docker_cli inspect -f '{{range .State.Health.Log}}{{.ExitCode}} {{end}}' "$c" 2>/dev/null | grep -qw 0; then return 0; fi
    [ "$(docker_cli inspect -f '{{.State.Running}}' "$c" 2>/dev/null)" = true ] || return 1
    sleep 1
  done
  return 1
}
wait_exit() {  # CONTAINER SECONDS -> prints the exit code
  local c="$1" limit="$2" start=$SECONDS
  while [ "$(docker_cli inspect -f '{{.State.Running}}' "$c" 2>/dev/null)" = true ]; do
    [ $((SECONDS - start)) -lt "$limit" ] || { echo timeout; return 0; }
    sleep 1
  done
  docker_cli inspect -f '{{.State.ExitCode}}' "$c"
}
last_health() { docker_cli inspect -f '{{range .State.Health.Log}}{{.Output}}{{end}}' "$1" 2>/dev/null | tail -n 2; }
# the session folders in the recordings folder, oldest first
sessions() { find "$rec" -mindepth 1 -maxdepth 1 -type d -name 'session-*' -printf '%f\n' | sort; }
# The README's `docker compose ...` lines, run exactly as typed (Compose v2 only: they say `docker compose`), from
# the repository root, in a pseudo-terminal (record and watch ask for one), in the background; the environment
# exported above plays the part of docker/.env. typed_start LOG "LINE" sets typed_pid; oneoff SERVICE -> the
# container that line started; typed_stop SERVICE sends Ctrl-C to that container and sets typed_code, the line's
# exit code (both in this shell: `wait` needs the line to be its child).
typed_start() { (cd "$root" && exec script -qfec "$2" /dev/null) < /dev/null > "$1" 2>&1 & typed_pid=$!; }
oneoff() {
  docker_cli ps -q --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1" \
    --filter "label=com.docker.compose.oneoff=True" | head -n 1
}
wait_oneoff() {  # SERVICE SECONDS -> the container, once it exists
  local start=$SECONDS c=""
  while [ -z "$c" ] && [ $((SECONDS - start)) -lt "$2" ]; do c="$(oneoff "$1")"; [ -n "$c" ] || sleep 1; done
  echo "$c"
}
typed_stop() {
  local c
  c="$(oneoff "$1")"
  [ -z "$c" ] || docker_cli kill -s INT "$c" > /dev/null 2>&1 || true
  typed_code=0
  wait "$typed_pid" || typed_code=$?
}
typed_v2=0
[ "${compose_cmd[*]}" = "docker_cli compose" ] && typed_v2=1

record_args=(source:=synthetic subject:=S01 aus:=AU2,AU12 time_scale:=0.3 headless:=true)
for n in 1 2; do
  log "record: session $n"
  c="$project-record-$n"
  compose run -d --name "$c" record record-session "${record_args[@]}" > /dev/null
  wait_healthy "$c" 120 || { docker_cli logs --tail 20 "$c"; fail "record (session $n) never reported healthy: $(last_health "$c")"; }
  code="$(wait_exit "$c" 600)"
  [ "$code" = 0 ] || { docker_cli logs --tail 30 "$c"; fail "record (session $n) exited with $code"; }
  [ "$(sessions | wc -l)" -eq "$n" ] || fail "expected $n session folders in $rec, found: $(sessions | tr '\n' ' ')"
done
s1="$(sessions | sed -n 1p)"; s2="$(sessions | sed -n 2p)"
log "sessions $s1 and $s2 recorded"
for s in "$s1" "$s2"; do [ -f "$rec/$s/manifest.json" ] || fail "$s has no manifest.json"; done
bad="$(find "$rec" \( -type d ! -perm 0700 \) -o \( -type f ! -perm 0600 \) -o ! -uid "$uid" | head -n 3)"
[ -z "$bad" ] || fail "not owner-only or not owned by UID $uid: $bad"

log "infer and watch"
compose up -d infer watch > "$work/up.log" 2>&1 || { cat "$work/up.log"; fail "compose up infer watch failed"; }
infer_c="$(compose ps -q infer)"; watch_c="$(compose ps -q watch)"
wait_healthy "$infer_c" 180 || { docker_cli logs --tail 20 "$infer_c"; fail "infer never reported healthy: $(last_health "$infer_c")"; }
wait_healthy "$watch_c" 120 || { docker_cli logs --tail 20 "$watch_c"; fail "watch never reported healthy: $(last_health "$watch_c")"; }
counter="$project-count"
# One-off containers come from the `record` service: Compose v1 links a one-off container to the running
# containers of its own service, which host networking refuses ("can't be used with links").
compose run -d --name "$counter" record microexp watch --count "$n_pred" --plain --timeout 300 > /dev/null
typed_watch=""
if [ "$typed_v2" = 1 ]; then
  log "as typed: docker compose -f docker/compose.yaml run --rm watch"
  typed_start "$work/typed_watch.log" "docker compose -f docker/compose.yaml run --rm watch"
  typed_watch="$typed_pid"
  tw_c="$(wait_oneoff watch 60)"
  [ -n "$tw_c" ] || { cat "$work/typed_watch.log"; fail "docker compose -f docker/compose.yaml run --rm watch started no container"; }
  wait_healthy "$tw_c" 120 || { tail -n 20 "$work/typed_watch.log"; fail "the watch of 'docker compose -f docker/compose.yaml run --rm watch' never reported healthy"; }
fi
monitor_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export MICROEXP_MONITOR_PORT="$monitor_port"
if [ "$typed_v2" = 1 ]; then
  log "as typed: docker compose -f docker/compose.yaml up -d monitor"
  typed_start "$work/typed_monitor.log" "docker compose -f docker/compose.yaml up -d monitor"
  wait "$typed_pid" || { cat "$work/typed_monitor.log"; fail "'docker compose -f docker/compose.yaml up -d monitor' failed"; }
else
  compose up -d monitor > "$work/up_monitor.log" 2>&1 || { cat "$work/up_monitor.log"; fail "compose up monitor failed"; }
fi
monitor_c="$(compose ps -q monitor)"
wait_healthy "$monitor_c" 120 || { docker_cli logs --tail 20 "$monitor_c"; fail "monitor never reported healthy: $(last_health "$monitor_c")"; }
page="$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
  "http://127.0.0.1:$monitor_port/" 2>&1)" || fail "the monitor page on the host's 127.0.0.1:$monitor_port did not load: $page"
[[ "$page" == *"<title>microexp monitor</title>"* ]] || fail "127.0.0.1:$monitor_port served no monitor page"
# the page's websocket, read inside the container while the session replays: the EVK4 streaming and a prediction
docker_cli exec "$monitor_c" /opt/microexp/docker/entrypoint.sh python3 -c '
import asyncio, json, sys, aiohttp
async def main(url):
    seen = set()
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        async for msg in ws:
            snap = json.loads(msg.data)
            if snap["sensors"].get("evk4", {}).get("state") == "streaming": seen.add("evk4 streaming")
            if snap["prediction"] is not None: seen.add("prediction")
            if "/evk4/events" in snap["frames"]: seen.add("event frame")
            if len(seen) == 3: break
    print(", ".join(sorted(seen)))
asyncio.run(asyncio.wait_for(main(sys.argv[1]), 180))
' "ws://127.0.0.1:$monitor_port/ws" > "$work/monitor_ws.log" 2>&1 &
monitor_ws=$!
sleep 5
log "replaying $s1 in its own container"
compose run --rm -T record microexp replay "/data/recordings/$s1" --topics /evk4/events --wait-subscribers 30 \
  > "$work/replay.log" 2>&1 \
  || { tail -n 20 "$work/replay.log"; fail "replay of $s1 failed"; }
wait "$monitor_ws" || { tail -c 2000 "$work/monitor_ws.log"; fail "the monitor page's websocket did not show the replayed EVK4 and a prediction"; }
log "monitor on the host's 127.0.0.1:$monitor_port: page served; its websocket showed $(tail -n 1 "$work/monitor_ws.log")"
code="$(wait_exit "$counter" 120)"
[ "$code" = 0 ] || { docker_cli logs --tail 20 "$counter"; fail "the counting container got fewer than $n_pred AU predictions (exit $code)"; }
# one block per prediction, headed by the topic name (microexp watch --plain)
counted="$(docker_cli logs "$counter" 2>&1 | grep -c -E '^/[^ ]+/au ' || true)"
[ "$counted" -ge "$n_pred" ] || { docker_cli logs --tail 20 "$counter"; fail "the counting container printed $counted predictions, not $n_pred"; }
watch_lines="$(docker_cli logs "$watch_c" 2>&1 | grep -c -E 'AU[0-9]+' || true)"
[ "$watch_lines" -gt 0 ] || { docker_cli logs --tail 20 "$watch_c"; fail "the watch service printed no AU"; }
log "AU predictions: the counting container printed $counted; the watch service printed $watch_lines lines naming an AU"
typed_watch_lines=""
if [ -n "$typed_watch" ]; then
  typed_pid="$typed_watch"
  typed_stop watch
  code="$typed_code"
  typed_watch_lines="$(grep -c -E 'AU[0-9]+' "$work/typed_watch.log" || true)"
  [ "$typed_watch_lines" -gt 0 ] || { tail -c 2000 "$work/typed_watch.log"; fail "'docker compose -f docker/compose.yaml run --rm watch' showed no AU (exit $code)"; }
  [ "$code" = 0 ] || [ "$code" = 130 ] || { tail -c 2000 "$work/typed_watch.log"; fail "'docker compose -f docker/compose.yaml run --rm watch' exited $code on Ctrl-C"; }
  log "as typed: docker compose -f docker/compose.yaml run --rm watch showed $typed_watch_lines lines naming an AU; Ctrl-C: exit $code"
fi
[ "$(health "$infer_c")" = healthy ] || fail "infer is $(health "$infer_c") after the replay"
compose stop -t 10 infer watch monitor > /dev/null 2>&1 || true

log "record, killed mid-segment"
c="$project-record-kill"
compose run -d --name "$c" record record-session source:=synthetic subject:=S02 aus:=AU2,AU12 time_scale:=1.0 headless:=true > /dev/null
wait_healthy "$c" 120 || fail "record (kill) never reported healthy: $(last_health "$c")"
s3=""; bag=""
for _ in $(seq 1 120); do
  s3="$(sessions | sed -n 3p)"
  if [ -n "$s3" ]; then
    bag="$(find "$rec/$s3" -mindepth 1 -maxdepth 1 -type d | sort | head -n 1)"
    if [ -n "$bag" ] && [ -n "$(find "$bag" -type f \( -name '*.mcap' -o -name '*.db3' \) -size +8k)" ]; then break; fi
  fi
  sleep 1
done
[ -n "$bag" ] || fail "record (kill) wrote no segment folder"
sleep 2
docker_cli kill "$c" > /dev/null || fail "record had already exited before docker kill"
log "killed $c while writing $(basename "$bag")"
info="$(compose run --rm -T record microexp info "/data/recordings/$s3/$(basename "$bag")" 2> "$work/info.err")" \
  || { cat "$work/info.err"; fail "microexp info cannot read the bag of the killed recorder"; }
msgs="$(python3 -c 'import json, sys; d = json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d["messages"], d["truncated"])' <<<"$info" 2>/dev/null || echo "? ?")"
read -r msgs truncated <<<"$msgs"
[[ "$msgs" =~ ^[0-9]+$ ]] && [ "$msgs" -gt 0 ] || fail "microexp info of the killed recorder's bag: no messages ($info)"
log "microexp info read $(basename "$bag"): $msgs messages (truncated: $truncated)"

typed_record=""
if [ "$typed_v2" = 1 ]; then
  # the lab's line: the cameras (here none: an empty USB folder, /dev/null as the webcam), a new session folder,
  # the protocol's terminal UI; Ctrl-C ends the session
  log "as typed: docker compose -f docker/compose.yaml run --rm record"
  before="$(sessions | wc -l)"
  typed_start "$work/typed_record.log" "docker compose -f docker/compose.yaml run --rm record"
  tr_c="$(wait_oneoff record 60)"
  [ -n "$tr_c" ] || { cat "$work/typed_record.log"; fail "docker compose -f docker/compose.yaml run --rm record started no container"; }
  wait_healthy "$tr_c" 120 || { tail -c 2000 "$work/typed_record.log"; fail "the recorder of 'docker compose -f docker/compose.yaml run --rm record' never reported healthy"; }
  sleep 5
  typed_stop record
  code="$typed_code"
  s4="$(sessions | tail -n 1)"
  [ "$(sessions | wc -l)" -eq $((before + 1)) ] || fail "'docker compose -f docker/compose.yaml run --rm record' made no new session folder"
  reason="$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["finished"], "not finished"; print(d["end_reason"])' \
    "$rec/$s4/manifest.json" 2> "$work/typed_manifest.err")" \
    || { cat "$work/typed_manifest.err"; tail -c 2000 "$work/typed_record.log"; fail "$s4/manifest.json: the session of 'docker compose ... run --rm record' did not end on Ctrl-C"; }
  [ "$code" = 0 ] || [ "$code" = 130 ] || { tail -c 2000 "$work/typed_record.log"; fail "'docker compose -f docker/compose.yaml run --rm record' exited $code on Ctrl-C"; }
  typed_record="$s4"
  log "as typed: docker compose -f docker/compose.yaml run --rm record wrote $s4, ended on Ctrl-C (exit $code, end_reason: $reason)"
fi

printf '{"build_s": %d, "cached_steps": %d, "image_bytes": %s, "sessions": 2, "predictions_counted": %d, "killed_bag_messages": "%s", "total_s": %d, "gpu": "%s", "compose": "%s", "typed_watch_au_lines": "%s", "typed_record_session": "%s", "monitor_ws": "%s"}\n' \
  "$build_s" "$cached_steps" "$size" "$counted" "$msgs" $((SECONDS - t0)) "${gpu_line//\"/}" "${compose_cmd[*]}" \
  "$typed_watch_lines" "$typed_record" "$(tail -n 1 "$work/monitor_ws.log")"
echo PASSED
