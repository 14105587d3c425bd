#!/usr/bin/env bash
# Health check of the microexp image (Dockerfile HEALTHCHECK and the healthchecks of docker/compose.yaml).
#
# Healthy when
#   - MICROEXP_HEARTBEAT_FILE is set: that file exists and was modified at most MICROEXP_HEARTBEAT_MAX_AGE_S
#     seconds ago (default 30), e.g. a file the recorder touches while it writes;
#   - otherwise: the ROS graph answers `ros2 node list` within MICROEXP_HEALTH_TIMEOUT_S seconds (default 15) and
#     lists a node whose name matches the extended regular expression MICROEXP_HEALTH_NODE_REGEX (default: any).
#     With host networking every container of the rig shares one graph, so each service sets a regex naming its
#     own nodes.
# Prints one line saying why, and exits 0 (healthy) or 1 (unhealthy), as Docker expects.
# MICROEXP_ROS2 names the ros2 command to run (default: ros2 on PATH, the image's venv wrapper).
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
ros2_cmd="${MICROEXP_ROS2:-ros2}"
if ! nodes="$(timeout "$limit" "$ros2_cmd" node list --no-daemon --spin-time 3 2>&1)"; then
  echo "unhealthy: '$ros2_cmd node list' failed or took more than ${limit}s: $(tail -n 1 <<<"$nodes")"
  exit 1
fi
if matched="$(grep -E -m 1 -- "$regex" <<<"$nodes")"; then
  echo "healthy: node $matched (ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-0})"
  exit 0
fi
echo "unhealthy: no node matches /$regex/ on ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-0}; nodes seen: $(tr '\n' ' ' <<<"$nodes")"
exit 1
