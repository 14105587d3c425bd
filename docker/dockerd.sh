#!/usr/bin/env bash
# Start or stop a Docker engine for the smoke test and CI, on machines without a service manager.
#
#   bash docker/dockerd.sh start   install Debian's docker.io (+ docker-compose, debootstrap) when dockerd is
#                                  absent (root: apt-get update first) and the Compose v2 plugin (`docker
#                                  compose`) when the client has none, start dockerd when no engine answers,
#                                  wait until it answers. Prints `started PID` (this call started it: the caller
#                                  stops it later) or `running` (an engine was already there: leave it alone)
#   bash docker/dockerd.sh stop    stop the dockerd that a `start` of this script started (its pid is kept in a
#                                  state file); an engine started otherwise is never stopped
#   bash docker/dockerd.sh status  one line: whether an engine answers and who started it
#
# The engine keeps its storage (images and the build cache) in /var/lib/docker, so a second run of the smoke test
# on the same machine builds from cache. Exit status: 0 when done; 1 with one line on stderr saying why not
# (e.g. dockerd could not start: the last lines of its log follow).
set -euo pipefail

state_dir="${MICROEXP_DOCKERD_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/microexp/dockerd}"
state="$state_dir/started-by-microexp.pid"
log_file="$state_dir/dockerd.log"
# Debian bookworm's versions: the engine, Compose v1 and debootstrap.
APT_PACKAGES=(docker.io docker-compose=1.29.2-3 debootstrap)
# Compose v2, the `docker compose` of the README (bookworm packages only v1): the docker-compose package of Debian
# trixie, from the same mirror, checked against its SHA256 and unpacked into the client's plugin folder. Its binary
# is built with Go and needs only libc6 >= 2.34 (bookworm has 2.36).
COMPOSE_V2_VERSION="2.26.1-4"
COMPOSE_V2_SHA256="47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea"
COMPOSE_V2_URL="${MICROEXP_DEBIAN_MIRROR:-http://deb.debian.org/debian}/pool/main/d/docker-compose/docker-compose_${COMPOSE_V2_VERSION}_amd64.deb"
# root: for every user of the machine; others: their own plugin folder
if [ "$(id -u)" -eq 0 ]; then plugin_dir=/usr/local/lib/docker/cli-plugins; else plugin_dir="$HOME/.docker/cli-plugins"; fi

# The client that talks to this engine: Debian's own (/usr/bin/docker, BuildKit built in) unless
# MICROEXP_DOCKER names another one.
docker_cli() { "${MICROEXP_DOCKER:-$(command -v /usr/bin/docker || command -v docker)}" "$@"; }

engine_answers() { docker_cli info > /dev/null 2>&1; }

install_packages() {
  if command -v dockerd > /dev/null && command -v docker-compose > /dev/null && command -v debootstrap > /dev/null; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "dockerd.sh: dockerd, docker-compose or debootstrap is missing and this user is not root:" \
         "install ${APT_PACKAGES[*]} with apt-get" >&2
    return 1
  fi
  echo "dockerd.sh: installing ${APT_PACKAGES[*]} with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -q > /dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}" > /dev/null
}

# `docker compose` for the client, when it has none: the pinned package, cached by version under the state
# folder's parent (a second install downloads nothing). Failure is one line on stderr, not fatal: the smoke test
# then uses Compose v1.
install_compose_v2() {
  docker_cli --version > /dev/null 2>&1 || return 0  # no working client: nothing to add a plugin to
  docker_cli compose version > /dev/null 2>&1 && return 0
  if [ "$(uname -m)" != x86_64 ]; then
    echo "dockerd.sh: Compose v2 is installed from Debian's amd64 package only; this is $(uname -m)" >&2
    return 1
  fi
  local cache="${state_dir%/*}/compose-$COMPOSE_V2_VERSION"
  local deb="$cache/docker-compose_${COMPOSE_V2_VERSION}_amd64.deb"
  mkdir -p "$cache"
  if [ ! -f "$deb" ] || ! echo "$COMPOSE_V2_SHA256  $deb" | sha256sum -c --quiet - > /dev/null 2>&1; then
    echo "dockerd.sh: downloading Compose v2 ($COMPOSE_V2_URL)" >&2
    if ! curl -fsSL --retry 3 -o "$deb.part" "$COMPOSE_V2_URL"; then
      echo "dockerd.sh: could not download $COMPOSE_V2_URL; 'docker compose' stays absent" >&2
      rm -f "$deb.part"
      return 1
    fi
    if ! echo "$COMPOSE_V2_SHA256  $deb.part" | sha256sum -c --quiet - > /dev/null 2>&1; then
      echo "dockerd.sh: $COMPOSE_V2_URL: SHA256 is not $COMPOSE_V2_SHA256; not installed" >&2
      rm -f "$deb.part"
      return 1
    fi
    mv "$deb.part" "$deb"
  fi
  rm -rf "$cache/x"
  dpkg-deb -x "$deb" "$cache/x"
  mkdir -p "$plugin_dir"
  install -m 0755 "$cache/x/usr/libexec/docker/cli-plugins/docker-compose" "$plugin_dir/docker-compose"
  rm -rf "$cache/x"
  if ! docker_cli compose version > /dev/null 2>&1; then
    echo "dockerd.sh: installed $plugin_dir/docker-compose but 'docker compose version' fails" >&2
    return 1
  fi
  echo "dockerd.sh: installed Compose v2 ($(docker_cli compose version --short)) into $plugin_dir" >&2
}

start() {
  mkdir -p "$state_dir" 2> /dev/null || { echo "dockerd.sh: cannot create the state folder $state_dir" >&2; return 1; }
  if engine_answers; then
    echo "dockerd.sh: an engine already answers; not starting one" >&2
    install_packages || true
    install_compose_v2 || true
    echo running
    return 0
  fi
  install_packages
  install_compose_v2 || true
  if [ "$(id -u)" -ne 0 ]; then
    echo "dockerd.sh: no Docker engine answers and starting dockerd needs root" >&2
    return 1
  fi
  nohup dockerd > "$log_file" 2>&1 &
  local pid=$!
  local waited=0
  while ! engine_answers; do
    if ! kill -0 "$pid" 2> /dev/null; then
      echo "dockerd.sh: dockerd exited at start; last lines of $log_file:" >&2
      tail -n 5 "$log_file" >&2
      return 1
    fi
    if [ "$waited" -ge 60 ]; then
      echo "dockerd.sh: dockerd (pid $pid) did not answer within 60 s; last lines of $log_file:" >&2
      tail -n 5 "$log_file" >&2
      kill "$pid" 2> /dev/null || true
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  echo "$pid" > "$state"
  echo "dockerd.sh: started dockerd (pid $pid, log $log_file)" >&2
  echo "started $pid"
}

stop() {
  if [ ! -f "$state" ]; then
    echo "dockerd.sh: this script did not start the running engine; leaving it alone" >&2
    return 0
  fi
  local pid
  pid="$(cat "$state")"
  rm -f "$state"
  if ! kill -0 "$pid" 2> /dev/null; then
    echo "dockerd.sh: dockerd (pid $pid) is no longer running" >&2
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2> /dev/null || { echo "dockerd.sh: stopped dockerd (pid $pid)" >&2; return 0; }
    sleep 1
  done
  echo "dockerd.sh: dockerd (pid $pid) did not stop within 30 s" >&2
  return 1
}

status() {
  if engine_answers; then
    if [ -f "$state" ]; then echo "running, started by dockerd.sh (pid $(cat "$state"))"; else echo "running, started elsewhere"; fi
  else
    echo "not running"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
