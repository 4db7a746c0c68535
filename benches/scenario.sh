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
port=$((20000 + RANDOM % 20000))
./target/release/chittyd --listen "127.0.0.1:$port" --admin-socket none --audit-log none \
    --log-target stderr --log warn --rate-limit 0 --max-connections-per-ip 0 \
    --new-connections-per-ip 0 "${daemon_args[@]}" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
done
./target/release/chittyctl bench --target "127.0.0.1:$port" --server-pid "$pid" "$@"
