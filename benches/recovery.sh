#!/usr/bin/env bash
# Measures a cluster's recovery times on this machine, with release binaries: a nats-server
# with JetStream and three chittyd nodes on loopback (node timeout and grace as given).
#  1. SIGKILL of a node that holds participants: the time until the surviving nodes have
#     announced every one of its participants as left (polled on node 1's admin socket every
#     20 ms, as `chittyctl users`), against the node timeout.
#  2. NATS stopped for a while shorter than the grace, then started again: the time from its
#     start until every node serves again (`chittyctl cluster` says "serving").
# Usage: benches/recovery.sh [--participants N] [--timeout DURATION] [--grace DURATION]
#                            [--outage SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
participants=100
timeout=10s
grace=5s
outage=2
while [ $# -gt 0 ]; do
    case $1 in
        --participants) participants=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --grace) grace=$2; shift 2 ;;
        --outage) outage=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
cargo build --release --quiet -p chitty -p chittyctl
. benches/chittyd.sh
. benches/nats.sh
work=$(mktemp -d /tmp/chitty-recovery.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }
ctl() { "$release_dir/chittyctl" --socket "$work/n$1.sock" "${@:2}"; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_nats "$work" "$port"
pids+=("$nats_pid")
url=$nats_url
addrs=()
node_pids=()
for i in 1 2 3; do
    : >"$work/n$i.log"
    start_chittyd "$work/n$i.log" --cluster "$url" --node "n$i" --admin-socket "$work/n$i.sock" \
        --cluster-node-timeout "$timeout" --cluster-grace "$grace"
    pids+=("$chittyd_pid")
    node_pids+=("$chittyd_pid")
    addrs+=("$chittyd_addr")
done
echo "nats-server $("$nats" --version | head -n 1); node timeout $timeout, grace $grace" >&2

# 1. $participants participants on node 3 (a quiet bench run that outlives the kill).
"$release_dir/chittyctl" bench --target "${addrs[2]}" --clients "$participants" --senders 1 \
    --rate 1 --duration 120s --connect-rate 0 >/dev/null 2>&1 &
bench_pid=$!
pids+=("$bench_pid")
on_n3() { ctl 1 users --json | python3 -c 'import json,sys; print(sum(1 for u in json.load(sys.stdin) if u.get("node") == "n3"))'; }
for _ in $(seq 500); do
    [ "$(on_n3)" -ge "$participants" ] && break
    sleep 0.02
done
echo "node 1 sees $(on_n3) participants on n3; SIGKILL n3" >&2
killed=$(now_ms)
kill -9 "${node_pids[2]}"
while [ "$(on_n3)" -gt 0 ]; do sleep 0.02; done
gone=$(now_ms)
echo "SIGKILL of a node with $participants participants: all their leaves announced after $((gone - killed)) ms (node timeout $timeout)"
kill "$bench_pid" 2>/dev/null || true

# 2. NATS away for $outage s (less than the grace), then back.
serving() { ctl "$1" cluster 2>/dev/null | grep "(this node)" | grep -v "not serving" | grep -q serving; }
kill -9 "$nats_pid"
sleep "$outage"
start_nats "$work" "$port"
pids+=("$nats_pid")
back=$(now_ms)
for i in 1 2; do
    until serving "$i"; do sleep 0.02; done
done
ready=$(now_ms)
echo "NATS away ${outage} s: both nodes serving again $((ready - back)) ms after it was back"
