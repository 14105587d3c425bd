#!/usr/bin/env bash
# Debian's chromium for the monitor page's browser tests (driven by Playwright, whose own browser download is never
# used). Installs it with apt-get when it is missing (needs root); prints its version.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "chromium: missing; install it (apt-get install chromium) or run make test as root" >&2
    exit 1
  fi
  echo "chromium: apt-get install chromium" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
fi
# chromium's wrapper script reads the machine's memory with `[`, which some shells warn about: stderr is dropped
chromium --version 2>/dev/null | head -n 1
