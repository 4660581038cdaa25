#!/usr/bin/env bash
# The README's "Quick start" run verbatim against a fresh mesh: the first ```sh block under
# the "## Quick start" heading of README.md is extracted (so this test can never drift from
# it) and sourced, unchanged, by bash -e in a fresh sandbox that looks like a checkout:
# ops/up (a copy of the real script), an empty ./data, and target/release/chatmesh (a link to
# the binary under test). The last command must print "[general] ann: hello, world". The
# mesh that `ops/up &` started is stopped with SIGTERM at the end, whatever happened.
#
# Env: CHATMESH_BIN (default target/debug/chatmesh, built by `cargo build --bin chatmesh`,
# i.e. without the tests' dev-dependency features, like the README's), exported for ops/up, which then runs it instead of building a release binary;
# QUICKSTART_TIMEOUT (seconds, default 120). Needs port 8080 on localhost (the README's).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${CHATMESH_BIN:-$root/target/debug/chatmesh}"
timeout_secs="${QUICKSTART_TIMEOUT:-120}"

if [[ -z "${CHATMESH_BIN:-}" ]]; then
    # Always through cargo (a no-op when fresh): a binary left by a test build has the
    # features of the tests' dev-dependencies, which the README's `cargo build` does not
    # (a missing TLS crypto provider once panicked only in the README's binary).
    echo "quickstart: cargo build --bin chatmesh"
    (cd "$root" && cargo build --quiet --bin chatmesh)
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
[[ -x "$bin" ]] || { echo "quickstart: $bin is not an executable" >&2; exit 1; }

# The block: the first ```sh fence after the "## Quick start" heading, up to its closing fence.
block="$(awk '
    /^## Quick start/ { inside = 1; next }
    inside && /^## / { exit }
    inside && !fence && /^```sh[[:space:]]*$/ { fence = 1; next }
    fence && /^```[[:space:]]*$/ { exit }
    fence { print }
' "$root/README.md")"
if [[ -z "$block" ]]; then
    echo "quickstart: no \`\`\`sh block under \"## Quick start\" in README.md" >&2
    exit 1
fi

if curl -s -o /dev/null --max-time 2 localhost:8080/; then
    echo "quickstart: something already answers on localhost:8080, which the quick start uses; stop it first" >&2
    exit 1
fi

sandbox="$(mktemp -d "${TMPDIR:-/tmp}/chatmesh-quickstart.XXXXXX")"
mkdir -p "$sandbox/ops" "$sandbox/target/release"
cp "$root/ops/up" "$sandbox/ops/up"
ln -s "$bin" "$sandbox/target/release/chatmesh"
printf '%s\n' "$block" > "$sandbox/quickstart.sh"
# Sourced by a wrapper that stops what the block left running (the `ops/up &` job).
cat > "$sandbox/wrapper.sh" <<'WRAP'
set -eo pipefail
stop() {
    local pids
    pids="$(jobs -p)"
    if [[ -n "$pids" ]]; then
        kill -TERM $pids 2>/dev/null || true
        wait $pids 2>/dev/null || true
    fi
}
trap stop EXIT
source ./quickstart.sh
WRAP

echo "quickstart: running the README's quick start in $sandbox:"
sed 's/^/    /' "$sandbox/quickstart.sh"
echo
status=0
(
    cd "$sandbox"
    export CHATMESH_BIN="$bin" CHATMESH_HOME="$root"
    export RUST_LOG="${RUST_LOG:-warn}"
    timeout --signal=TERM --kill-after=20 "$timeout_secs" bash wrapper.sh
) > "$sandbox/out.log" 2>&1 || status=$?
if [[ $status -ne 0 ]]; then
    echo "quickstart: FAILED (exit $status); output:" >&2
    cat "$sandbox/out.log" >&2
    exit 1
fi
# The register call's answer has no newline: the history line may follow it on its line.
if ! grep -q '\[general\] ann: hello, world$' "$sandbox/out.log"; then
    echo "quickstart: FAILED: the last command did not print \"[general] ann: hello, world\"; output:" >&2
    cat "$sandbox/out.log" >&2
    exit 1
fi
echo "quickstart: ok ($(grep -c '' "$sandbox/out.log") lines of output, the history line included)"
rm -rf "$sandbox"
