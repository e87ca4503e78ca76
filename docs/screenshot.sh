#!/usr/bin/env bash
# Makes docs/report-idle-reset.png, the README's picture of a report: plays the
# playbook's idle-reset in a lab of its own (root) with --html, then headless Chromium
# takes a screenshot of the page, offline: inside `unshare --net`, every host name
# mapped to nowhere, its profile and caches in a temporary directory.
#
#   sudo docs/screenshot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/idlegate ./cmd/idlegate
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
./bin/idlegate scenario run idle-reset --html "$tmp/idle-reset.html" >/dev/null
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
	--disable-component-update --disable-sync --hide-scrollbars "--host-resolver-rules=MAP * ~NOTFOUND")
XDG_CONFIG_HOME="$tmp/config" XDG_CACHE_HOME="$tmp/cache" unshare --net chromium "${flags[@]}" \
	--user-data-dir="$tmp/profile" --window-size=1200,1760 --screenshot="$PWD/docs/report-idle-reset.png" \
	"file://$tmp/idle-reset.html" 2>/dev/null
echo "wrote docs/report-idle-reset.png"
