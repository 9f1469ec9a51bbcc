#!/usr/bin/env bash
# apt-get install PACKAGE... for the ensure_*.sh scripts: refreshes the package lists only when
# they are missing or older than an hour, so three set-up scripts on a fresh machine pay for
# one `apt-get update`, not three. Fails (non-zero) when apt-get is unavailable or we are not root.
# Recommended packages are left out unless APT_WITH_RECOMMENDS=1.
set -euo pipefail
command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ] || exit 1
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -60 2>/dev/null | head -n 1)" ]; then
  apt-get update -qq >/dev/null
fi
recommends=(--no-install-recommends)
[ "${APT_WITH_RECOMMENDS:-0}" = "1" ] && recommends=()
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${recommends[@]}" "$@" >/dev/null
