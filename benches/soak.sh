#!/usr/bin/env bash
# Soak test (documented in BENCHMARKS.md; not run in CI): 1,000 clients chat at a steady pace
# for DURATION while other clients keep connecting, chatting and leaving; then checks that the
# steady clients saw no loss and no ordering anomaly, and that the server's memory stayed flat
# after a warm-up.
# Usage: benches/soak.sh [DURATION]   (default 10m)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10m}
cargo build --release --quiet -p chitty -p chittyctl
. benches/chittyd.sh
out=$(mktemp -d /tmp/chitty-soak.XXXXXX)
trap 'kill $chittyd_pid 2>/dev/null; wait $chittyd_pid 2>/dev/null; rm -rf "$out"' EXIT
start_chittyd "$out/chittyd.log"
server=$chittyd_pid
addr=$chittyd_addr
bench() { "$release_dir/chittyctl" bench --target "$addr" --connect-rate 0 "$@"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }

bench --clients 1000 --senders 10 --rate 10 --duration "$duration" --json --server-pid "$server" \
    >"$out/steady.json" &
steady=$!
sleep 5
echo "rss_kib_start $(rss)" | tee "$out/rss"
cycles=0
while kill -0 "$steady" 2>/dev/null; do
    # 20 to 100 clients join, 1 to 5 of them chat for 1 to 3 s, then all leave.
    bench --clients $((20 + RANDOM % 81)) --senders $((1 + RANDOM % 5)) --rate 20 \
        --duration "$((1 + RANDOM % 3))s" --json >"$out/churn.json" || true
    cycles=$((cycles + 1))
    # Only while the steady clients are still chatting: their own leave at the end is a burst.
    kill -0 "$steady" 2>/dev/null && echo "rss_kib $(rss)" >>"$out/rss"
done
wait "$steady"
python3 - "$out/steady.json" "$out/rss" "$cycles" <<'PY'
import json, sys
steady = json.load(open(sys.argv[1]))
rss = [int(l.split()[1]) for l in open(sys.argv[2])]
cycles = int(sys.argv[3])
print(f"steady: {steady['deliveries']} deliveries, {steady['losses']} lost, "
      f"{steady['ordering_anomalies']} anomalies, {steady['order_mismatches']} order mismatches, "
      f"p99 {steady['latency_ms']['p99']:.2f} ms")
# Memory is judged after a warm-up (the first half of the churn cycles): allocators and buffers
# grow to their working size first; a leak keeps growing after that.
warm = rss[len(rss) // 2]
print(f"churn: {cycles} cycles; server RSS KiB start {rss[0]}, after warm-up {warm}, "
      f"max {max(rss)}, end {rss[-1]}")
print("RSS KiB per cycle:", " ".join(map(str, rss)))
ok = steady["losses"] == 0 and steady["ordering_anomalies"] == 0 and steady["order_mismatches"] == 0
flat = rss[-1] <= warm * 1.10 + 4096
print("soak:", "passed" if ok and flat else "FAILED",
      "(no loss, no anomaly" + (", flat memory)" if flat else ", but memory grew)"))
sys.exit(0 if ok and flat else 1)
PY
