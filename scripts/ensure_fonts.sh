#!/usr/bin/env bash
# A font with Chinese glyphs, so that the pictures Pillow draws (token layout, grounding
# labels) and the headless-browser screenshot show Chinese prompts instead of empty boxes.
# Optional: without it everything runs and CJK text draws as boxes, so we only warn.
set -euo pipefail
if command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh-cn 2>/dev/null)" ]; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  apt-get update -qq >/dev/null
  # WenQuanYi Micro Hei: 1.6 MB, covers simplified and traditional Chinese.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fonts-wqy-microhei fontconfig >/dev/null
  exit 0
fi
echo "warning: no font with Chinese glyphs found; Chinese prompts will draw as boxes in the token layout (Debian/Ubuntu: sudo apt-get install fonts-wqy-microhei)" >&2
exit 0
