#!/usr/bin/env bash
# Graphviz's `dot` is a system program, not a Python package: install it on Debian/Ubuntu
# when we can, otherwise stop with one line that says what to install.
set -euo pipefail
if command -v dot >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null
  command -v dot >/dev/null 2>&1 && exit 0
fi
echo "error: Graphviz 'dot' not found; install it (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz)" >&2
exit 1
