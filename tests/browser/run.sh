#!/usr/bin/env bash
# Real-browser test of the web client (gateway/web): makes sure Debian's Chromium, the npm
# packages of this folder (playwright-core, axe-core) and the chatmesh binary are there, then
# runs `node --test`, which starts its own mesh (`chatmesh up` on a free port) and stops it
# at the end. Screenshots and the mesh's log are written to output/ (gitignored).
# Env: CHROMIUM (default /usr/bin/chromium), CHATMESH_BIN (default target/debug/chatmesh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
chromium="${CHROMIUM:-/usr/bin/chromium}"
bin="${CHATMESH_BIN:-$root/target/debug/chatmesh}"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ! -x "$chromium" ]; then
  echo "browser test: installing chromium (apt)"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "browser test: installing nodejs and npm (apt)"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "browser test: node $(node --version) is too old (playwright-core needs 20 or newer)" >&2
  exit 1
fi

if [ ! -d "$here/node_modules/playwright-core" ] || [ ! -d "$here/node_modules/axe-core" ]; then
  echo "browser test: npm ci"
  (cd "$here" && npm ci --no-audit --no-fund)
fi

# Build when the binary is missing, or older than the web files it embeds (gateway/web and
# the client package clients/js/chatmesh.js).
if [ -z "${CHATMESH_BIN:-}" ]; then
  if [ ! -x "$bin" ] || [ -n "$(find "$root/gateway/web" "$root/clients/js/chatmesh.js" -newer "$bin" -print -quit)" ]; then
    echo "browser test: cargo build --bin chatmesh"
    (cd "$root" && cargo build --bin chatmesh)
  fi
elif [ ! -x "$bin" ]; then
  echo "browser test: CHATMESH_BIN=$bin is not an executable" >&2
  exit 1
fi

cd "$here"
export CHROMIUM="$chromium" CHATMESH_BIN="$bin"
exec node --test
