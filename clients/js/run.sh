#!/usr/bin/env bash
# The JavaScript client package (clients/js): type check (`tsc --checkJs`, strict) and its
# tests (`node --test`), which start their own mesh (`chatmesh up` on a free port) and stop
# it at the end. Makes sure node >= 20, the npm packages of this folder (npm ci, when missing
# or older than package-lock.json) and the chatmesh binary are there.
# Env: CHATMESH_BIN (default target/debug/chatmesh, built with `cargo build -p chatmesh` when
# missing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${CHATMESH_BIN:-$root/target/debug/chatmesh}"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "clients/js: installing nodejs and npm (apt)"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "clients/js: node $(node --version) is too old (the package needs 20 or newer)" >&2
  exit 1
fi

if [ ! -f "$here/node_modules/.package-lock.json" ] || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
  echo "clients/js: npm ci"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ -z "${CHATMESH_BIN:-}" ]; then
  if [ ! -x "$bin" ]; then
    echo "clients/js: cargo build -p chatmesh"
    (cd "$root" && cargo build -p chatmesh)
  fi
elif [ ! -x "$bin" ]; then
  echo "clients/js: CHATMESH_BIN=$bin is not an executable" >&2
  exit 1
fi

cd "$here"
echo "clients/js: tsc -p ."
npx --no-install tsc -p .

# node 20 has its own WebSocket (undici, as browsers have it) only behind a flag: with it,
# the exactly-once test runs with that one too, besides the ws package.
if ! node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null \
  && node --experimental-websocket -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null; then
  export NODE_OPTIONS="${NODE_OPTIONS:+$NODE_OPTIONS }--experimental-websocket"
fi
export CHATMESH_BIN="$bin"
echo "clients/js: node --test"
exec node --test test/*.test.mjs
