#!/usr/bin/env bash
# Headless Chromium checks the HTML report the way a reader sees it (a screenshot in
# tests/test_render_browser.py). It is a system program from Debian's packages, not a
# Python package: install it when we can, otherwise say what to install and carry on —
# the browser test skips with that reason, nothing else needs a browser.
set -euo pipefail
for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null 2>&1; then
    exit 0
  fi
done
if bash "$(dirname "$0")/apt_install.sh" chromium; then
  command -v chromium >/dev/null 2>&1 && exit 0
fi
echo "warning: Chromium not found; the headless-browser check of the HTML report will be skipped (Debian/Ubuntu: sudo apt-get install chromium)" >&2
exit 0
