#!/usr/bin/env bash
# `make demo`: start `tamma serve` on its built-in default (the echo provider, no key,
# no network), ask it over plain HTTP with curl, and stop it with SIGTERM.
set -euo pipefail

TAMMA=${TAMMA:-target/debug/tamma}
log=$(mktemp)
"$TAMMA" serve --listen 127.0.0.1:0 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT

pretty() { if command -v python3 >/dev/null 2>&1; then python3 -m json.tool; else cat; echo; fi; }

addr=""
for _ in $(seq 1 600); do
  addr=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$log" | head -n1 || true)
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "tamma serve did not start"; cat "$log"; exit 1; }
for _ in $(seq 1 600); do
  curl -fs "$addr/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "\$ tamma serve --listen 127.0.0.1:0        # the gateway, in the background"
echo "tamma serve: listening on $addr"
echo
echo "\$ curl $addr/v1/models"
curl -s "$addr/v1/models" | pretty
echo
body='{"model":"echo/echo-1","messages":[{"role":"user","content":"Hello from inside the sandbox"}]}'
echo "\$ curl $addr/v1/chat/completions -d '$body'"
curl -s "$addr/v1/chat/completions" -H 'content-type: application/json' -d "$body" | pretty
echo
body='{"model":"echo/echo-1","stream":true,"messages":[{"role":"user","content":"streamed word by word"}]}'
echo "\$ curl -N $addr/v1/chat/completions -d '$body'"
curl -sN "$addr/v1/chat/completions" -H 'content-type: application/json' -d "$body"
echo "\$ kill -TERM $pid"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
trap 'rm -f "$log"' EXIT
grep -h '^tamma serve: stopped' "$log" || true
echo "tamma serve exited with status $status"
exit "$status"
