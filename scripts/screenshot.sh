#!/usr/bin/env bash
# Render an HTML report in headless Chromium (Debian package `chromium`) and save a PNG.
#   scripts/screenshot.sh demo/out/group.html docs/group_report.png [WIDTHxHEIGHT]
# The reports are self-contained, so no network is needed; background networking is disabled.
set -euo pipefail
page=$(realpath "$1")
out=$2
size=${3:-1200x2400}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size="${size/x/,}" \
  --screenshot="$(realpath -m "$out")" "file://$page" 2>/dev/null
echo "$out"
