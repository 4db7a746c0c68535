#!/usr/bin/env bash
# How long the hub holds its lock per broadcast (encode + append to the room log, and anything
# else done under the lock), in a room of N participants with 10 senders at full speed: read off
# chittyd's own fan-out histogram (chitty_fanout_seconds) after the run.
# Usage: benches/fanout-hold.sh N [DURATION]   (CHITTYD=path to test another chittyd binary)
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:?usage: benches/fanout-hold.sh N [DURATION]}
duration=${2:-10s}
cargo build --release --quiet -p chitty -p chittyctl
. benches/chittyd.sh
out=$(mktemp -d /tmp/chitty-hold.XXXXXX)
trap 'kill $chittyd_pid 2>/dev/null; wait $chittyd_pid 2>/dev/null; rm -rf "$out"' EXIT
if [ -n "${CHITTYD:-}" ]; then release_dir_saved=$release_dir; release_dir=$(dirname "$CHITTYD"); fi
metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_chittyd "$out/chittyd.log" --metrics-listen "127.0.0.1:$metrics_port"
[ -n "${CHITTYD:-}" ] && release_dir=$release_dir_saved
"$release_dir/chittyctl" bench --target "$chittyd_addr" --server-pid "$chittyd_pid" \
    --clients "$clients" --senders 10 --duration "$duration" --connect-concurrency 256 --connect-rate 0 --json \
    >"$out/bench.json"
curl -s "http://127.0.0.1:$metrics_port/metrics" >"$out/metrics"
python3 - "$out/bench.json" "$out/metrics" "$clients" <<'PY'
import json, sys
bench = json.load(open(sys.argv[1]))
metrics = dict(l.rsplit(" ", 1) for l in open(sys.argv[2]) if l and not l.startswith("#"))
total = float(metrics["chitty_fanout_seconds_sum"])
count = float(metrics["chitty_fanout_seconds_count"])
print(f"{sys.argv[3]} participants: {count:.0f} broadcasts, {total / count * 1e6:.2f} us under the "
      f"hub lock each; server CPU {bench['server']['cpu_per_delivery_us']:.3f} us per delivery; "
      f"losses {bench['losses']}, anomalies {bench['ordering_anomalies']}")
PY
