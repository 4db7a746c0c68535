#!/usr/bin/env bash
# Memory through a join storm and the leave storm that ends it: N participants join, nobody
# sends, all leave at once (as every `chittyctl bench` run ends); then the room stays empty for
# a minute. Prints chittyd's RSS with everyone connected, its peak during the leaves, and a
# minute after the room emptied (BENCHMARKS.md, "Memory through a leave storm").
# Usage: benches/leave-storm.sh N [grpc|ws]
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:?usage: benches/leave-storm.sh N [grpc|ws]}
transport=${2:-grpc}
cargo build --release --quiet -p chitty -p chittyctl
. benches/chittyd.sh
out=$(mktemp -d /tmp/chitty-leave.XXXXXX)
trap 'kill $chittyd_pid 2>/dev/null; wait $chittyd_pid 2>/dev/null; rm -rf "$out"' EXIT
start_chittyd "$out/chittyd.log"
rss() { awk '/VmRSS/ {print $2}' "/proc/$chittyd_pid/status"; }
participants() { awk '/^chitty_participants\{/ {n += $2} END {print n + 0}' "$out/metrics" 2>/dev/null; }
echo "fresh: $(rss) KiB"
# Sample RSS every 50 ms for the whole run.
( while kill -0 "$chittyd_pid" 2>/dev/null; do echo "$(date +%s.%N) $(rss)"; sleep 0.05; done ) \
    >"$out/samples" 2>/dev/null &
sampler=$!
"$release_dir/chittyctl" bench --target "$chittyd_addr" --server-pid "$chittyd_pid" \
    --transport "$transport" --clients "$clients" --senders 0 --duration 1s --connect-concurrency 256 --connect-rate 0 --json >"$out/bench.json" &
bench=$!
# "Everyone connected": the largest RSS seen before the first leave. The generator holds its
# participants for the 1 s run; the server's RSS while they are all in is read then.
wait "$bench"
end=$(date +%s.%N)
sleep 60
after=$(rss)
kill "$sampler" 2>/dev/null || true
python3 - "$out/bench.json" "$out/samples" "$after" "$clients" "$transport" <<'PY'
import json, sys
bench = json.load(open(sys.argv[1]))
samples = [tuple(map(float, l.split())) for l in open(sys.argv[2]) if len(l.split()) == 2]
after, n = int(sys.argv[3]), int(sys.argv[4])
connected = (bench.get("server") or {}).get("rss_connected_kib")
peak = max(r for _, r in samples)

print(f"{sys.argv[5]} clients {n}: rss connected {connected} KiB, peak {peak:.0f} KiB, "
      f"a minute after the room emptied {after} KiB")
PY
