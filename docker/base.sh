#!/usr/bin/env bash
# Make the local base image of the Dockerfile's pip route (ROS_ROUTE=pip) without any image registry:
# debootstrap a minimal Debian 12 (bookworm) from the Debian mirror this machine's apt already uses, and
# `docker import` it.
#
#   bash docker/base.sh [TAG]      (default TAG: microexp-base:bookworm)
#
# The image is also tagged microexp-base:bookworm-<hash>, where <hash> covers this script and the mirror
# address; when an image with that tag exists, nothing is built (a few hundred ms). Prints the content-hash
# tag on stdout. Needs root (debootstrap), debootstrap and a Docker engine (docker/dockerd.sh start).
# MICROEXP_DEBIAN_MIRROR overrides the mirror (default: the first Debian URI of /etc/apt/sources.list{,.d}).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tag="${1:-microexp-base:bookworm}"
suite=bookworm
# What debootstrap puts in the base besides minbase: Python (the pip route's interpreter) and TLS roots.
include=python3,python3-venv,ca-certificates
docker_cli() { "${MICROEXP_DOCKER:-$(command -v /usr/bin/docker || command -v docker)}" "$@"; }

# The Debian and Debian-security mirrors of this machine's apt sources (deb822 .sources or one-line lists).
apt_uris() (
  set +o pipefail
  want="$1"
  {
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" {for (i = 2; i <= NF; i++) print $i}'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}'
  } | { grep -E "/${want}/?\$" || true; } | head -n 1 | sed 's#/$##'
)
mirror="${MICROEXP_DEBIAN_MIRROR:-$(apt_uris debian)}"
security="${MICROEXP_DEBIAN_SECURITY_MIRROR:-$(apt_uris debian-security)}"
if [ -z "$mirror" ]; then
  echo "base.sh: no Debian mirror found in /etc/apt/sources.list{,.d}; set MICROEXP_DEBIAN_MIRROR" >&2
  exit 1
fi

hash="$( { cat "${BASH_SOURCE[0]}"; echo "$mirror $security $suite $include"; } | sha256sum | cut -c1-12)"
hash_tag="${tag%%:*}:${suite}-${hash}"
if docker_cli image inspect "$hash_tag" > /dev/null 2>&1; then
  docker_cli tag "$hash_tag" "$tag"
  echo "base.sh: $hash_tag exists; not rebuilt" >&2
  echo "$hash_tag"
  exit 0
fi

command -v debootstrap > /dev/null || { echo "base.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "base.sh: debootstrap needs root" >&2; exit 1; }
root="$(mktemp -d "${TMPDIR:-/tmp}/microexp-base.XXXXXX")"
trap 'rm -rf "$root"' EXIT
echo "base.sh: debootstrap $suite from $mirror into $root (about 2 min)" >&2
debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" > "$root.log" 2>&1 \
  || { tail -n 20 "$root.log" >&2; echo "base.sh: debootstrap failed (log $root.log)" >&2; exit 1; }
rm -f "$root.log"
# apt sources of the image: the same mirror, with updates and (when this machine uses one) security.
{
  echo "deb $mirror $suite main"
  echo "deb $mirror $suite-updates main"
  if [ -n "$security" ]; then echo "deb $security $suite-security main"; fi
} > "$root/etc/apt/sources.list"
# Keep the image small: no apt caches, no documentation in later layers.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
  > "$root/etc/dpkg/dpkg.cfg.d/microexp-nodoc"
tar -C "$root" -c . | docker_cli import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  --change 'CMD ["bash"]' \
  - "$hash_tag" > /dev/null
docker_cli tag "$hash_tag" "$tag"
echo "base.sh: imported $hash_tag ($(docker_cli image inspect -f '{{.Size}}' "$hash_tag") bytes)" >&2
echo "$hash_tag"
