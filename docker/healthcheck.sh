#!/usr/bin/env bash
# Health check of the microexp image (Dockerfile HEALTHCHECK and the healthchecks of docker/compose.yaml).
#
# Healthy when
#   - MICROEXP_HEARTBEAT_FILE is set: that file exists and was modified at most MICROEXP_HEARTBEAT_MAX_AGE_S
#     seconds ago (default 30), e.g. a file the recorder touches while it writes;
#   - otherwise: health_probe.py (rclpy, next to this script) sees within MICROEXP_HEALTH_TIMEOUT_S seconds
#     (default 15) a node whose name matches the regular expression MICROEXP_HEALTH_NODE_REGEX (default: any).
#     With host networking every container of the rig shares one graph, so each service sets a regex naming its
#     own nodes.
# Prints one line saying why, and exits 0 (healthy) or 1 (unhealthy), as Docker expects.
set -uo pipefail

heartbeat="${MICROEXP_HEARTBEAT_FILE:-}"
if [ -n "$heartbeat" ]; then
  max_age="${MICROEXP_HEARTBEAT_MAX_AGE_S:-30}"
  if [ ! -e "$heartbeat" ]; then
    echo "unhealthy: heartbeat file $heartbeat does not exist"
    exit 1
  fi
  if ! mtime="$(stat -c %Y -- "$heartbeat" 2>/dev/null)"; then
    echo "unhealthy: cannot read the modification time of $heartbeat"
    exit 1
  fi
  age=$(( $(date +%s) - mtime ))
  if [ "$age" -le "$max_age" ]; then
    echo "healthy: heartbeat $heartbeat is ${age}s old"
    exit 0
  fi
  echo "unhealthy: heartbeat $heartbeat is ${age}s old (limit ${max_age}s)"
  exit 1
fi

regex="${MICROEXP_HEALTH_NODE_REGEX:-.}"
limit="${MICROEXP_HEALTH_TIMEOUT_S:-15}"
spin="${MICROEXP_HEALTH_SPIN_S:-3}"
here="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
probe="${MICROEXP_HEALTH_PROBE:-$here/health_probe.py}"
# Through the entry point: `docker exec` (which runs health checks) bypasses it, and the probe needs the
# environment it sets up (ROS 2 sourced on the apt route, HOME and caches for any UID).
entrypoint="${MICROEXP_ENTRYPOINT:-$here/entrypoint.sh}"
if ! out="$(timeout "$limit" "$entrypoint" python3 "$probe" "$regex" "$spin" 2>&1)"; then
  echo "${out:+$(tail -n 1 <<<"$out")}${out:-unhealthy: the probe failed or took more than ${limit}s} (ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-0})"
  exit 1
fi
echo "$(tail -n 1 <<<"$out") (ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-0})"
exit 0
