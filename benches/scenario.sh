#!/usr/bin/env bash
# Runs one load scenario against a fresh release chittyd on this machine and prints the bench's
# report. Usage: benches/scenario.sh [chittyd options --] chittyctl-bench options...
# Example: benches/scenario.sh --clients 100 --senders 10 --duration 10s
# The server and the generator share the machine: read the server's CPU per delivery first.
set -euo pipefail
cd "$(dirname "$0")/.."
daemon_args=()
if [[ " $* " == *" -- "* ]]; then
    while [ "$1" != "--" ]; do daemon_args+=("$1"); shift; done
    shift
fi
cargo build --release --quiet --bin chittyd --bin chittyctl
log=$(mktemp /tmp/chittyd-bench.XXXXXX)
./target/release/chittyd --listen 127.0.0.1:0 --admin-socket none --audit-log none \
    --log-target stderr --log info --rate-limit 0 --max-connections-per-ip 0 \
    --new-connections-per-ip 0 "${daemon_args[@]}" 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
addr=
for _ in $(seq 200); do
    addr=$(sed -n 's/.*chittyd listening on //p' "$log" | head -n 1)
    [ -n "$addr" ] && break
    sleep 0.05
done
[ -n "$addr" ] || { cat "$log"; exit 1; }
./target/release/chittyctl bench --target "$addr" --server-pid "$pid" "$@"
