#!/usr/bin/env bash
# The container image build, without a container daemon: clone the repository
# (its committed HEAD, what CI and `docker build` see), drop what .dockerignore
# keeps out of the build context, run deploy/build-image.sh there (the steps
# the Dockerfile runs), and check that the binary it installs serves the
# embedded echo provider.
#
# Frugal on purpose: the build reuses this checkout's target directory
# (CARGO_TARGET_DIR) in the dev profile, so only the workspace's own crates and
# the three guests are compiled, never wasmtime from scratch (15+ minutes on two
# cores). The release profile is the Dockerfile's only difference.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

git clone --quiet --no-hardlinks "$root" "$tmp/src"
# The build context: what .dockerignore lets through (`!` lines re-include).
(
    cd "$tmp/src"
    shopt -s globstar nullglob dotglob
    mkdir "$tmp/keep"
    patterns=()
    while IFS= read -r line; do
        line=${line%%#*}
        line=${line%"${line##*[![:space:]]}"}
        [ -z "$line" ] && continue
        if [ "${line:0:1}" = "!" ]; then
            # shellcheck disable=SC2206 # the pattern is meant to glob
            kept=(${line:1})
            [ ${#kept[@]} -gt 0 ] && cp -a --parents -- "${kept[@]}" "$tmp/keep/"
        else
            patterns+=("$line")
        fi
    done < .dockerignore
    for p in "${patterns[@]}"; do
        # shellcheck disable=SC2206 # the pattern is meant to glob
        matches=($p)
        [ ${#matches[@]} -gt 0 ] && rm -rf -- "${matches[@]}"
    done
    cp -a "$tmp/keep/." .
    test ! -e target && test ! -e guests/js-sdk && test ! -e .git && test -e README.md
)

CARGO_TARGET_DIR="$root/target" TAMMA_BUILD_PROFILE=dev \
    "$tmp/src/deploy/build-image.sh" "$tmp/out"

bin="$tmp/out/tamma"
"$bin" --version
# The installed binary serves the built-in echo provider (embedded at build time).
TAMMA_CACHE_DIR="$tmp/cache" "$bin" serve --listen 127.0.0.1:0 2>"$tmp/serve.log" &
pid=$!
addr=
for _ in $(seq 1 600); do
    addr=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$tmp/serve.log" | head -n1 || true)
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { cat "$tmp/serve.log" >&2; echo "build-image-test: no address" >&2; exit 1; }
python3 - "$addr" <<'PY'
import json, sys, time, urllib.request
addr = sys.argv[1]
for _ in range(600):
    try:
        if urllib.request.urlopen(addr + "/readyz").status == 200:
            break
    except Exception:
        time.sleep(0.1)
body = json.dumps({"model": "echo/echo-1", "messages": [{"role": "user", "content": "from the image"}]}).encode()
req = urllib.request.Request(addr + "/v1/chat/completions", body, {"content-type": "application/json"})
answer = json.load(urllib.request.urlopen(req))
assert answer["choices"][0]["message"]["content"] == "from the image", answer
PY
echo "build-image-test: 1 passed, 0 failed"
