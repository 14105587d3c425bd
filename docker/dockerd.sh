#!/usr/bin/env bash
# Start or stop a Docker engine for the smoke test and CI, on machines without a service manager.
#
#   bash docker/dockerd.sh start   install Debian's docker.io (+ docker-compose, debootstrap) when dockerd is
#                                  absent (root: apt-get update first), start dockerd when no engine answers,
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
# Debian bookworm's versions: the engine, Compose v1 (bookworm has no Compose v2 plugin) and debootstrap.
APT_PACKAGES=(docker.io docker-compose=1.29.2-3 debootstrap)

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

start() {
  mkdir -p "$state_dir" 2> /dev/null || { echo "dockerd.sh: cannot create the state folder $state_dir" >&2; return 1; }
  if engine_answers; then
    echo "dockerd.sh: an engine already answers; not starting one" >&2
    install_packages || true
    echo running
    return 0
  fi
  install_packages
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
