#!/usr/bin/env bash
# A font with Chinese glyphs, so that the pictures Pillow draws (token layout, grounding
# labels) and the headless-browser screenshot show Chinese prompts instead of empty boxes.
# Optional: without it everything runs and CJK text draws as boxes, so we only warn.
set -euo pipefail
if command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh-cn 2>/dev/null)" ]; then
  exit 0
fi
# WenQuanYi Micro Hei: 1.6 MB, covers simplified and traditional Chinese.
if bash "$(dirname "$0")/apt_install.sh" fonts-wqy-microhei fontconfig; then
  exit 0
fi
echo "warning: no font with Chinese glyphs found; Chinese prompts will draw as boxes in the token layout (Debian/Ubuntu: sudo apt-get install fonts-wqy-microhei)" >&2
exit 0
