#!/usr/bin/env bash
# Graphviz's `dot` is a system program, not a Python package: install it on Debian/Ubuntu
# when we can, otherwise stop with one line that says what to install.
set -euo pipefail
if command -v dot >/dev/null 2>&1; then
  exit 0
fi
# With its recommended fonts, as before: dot draws labels with them.
if APT_WITH_RECOMMENDS=1 bash "$(dirname "$0")/apt_install.sh" graphviz; then
  command -v dot >/dev/null 2>&1 && exit 0
fi
echo "error: Graphviz 'dot' not found; install it (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz)" >&2
exit 1
