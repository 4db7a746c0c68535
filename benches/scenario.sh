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
cargo build --release --quiet -p chitty -p chittyctl
. benches/chittyd.sh
log=$(mktemp /tmp/chittyd-bench.XXXXXX)
trap 'kill $chittyd_pid 2>/dev/null; wait $chittyd_pid 2>/dev/null; rm -f "$log"' EXIT
start_chittyd "$log" "${daemon_args[@]}"
"$release_dir/chittyctl" bench --target "$chittyd_addr" --server-pid "$chittyd_pid" \
    --connect-rate 0 "$@"
