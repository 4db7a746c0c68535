#!/usr/bin/env bash
# Runs one load scenario against a cluster on this machine: a nats-server with JetStream and N
# release chittyd nodes (default 3) on loopback, the participants spread over the nodes by
# `chittyctl bench` (several --target), which checks that every receiver on every node saw the
# same order with the same Lamport times. The CPU reported per delivery is that of every
# chittyd and the nats-server together. Everything shares the machine: read CPU per delivery
# first.
# Usage: benches/cluster.sh [--nodes N] [--nats PATH] [--nodes-cpu-only] chittyctl-bench options...
# --nodes-cpu-only leaves the nats-server's CPU out (the nodes' own cost, to compare a single node
# with --cluster against a plain single node: benches/scenario.sh).
# Example: benches/cluster.sh --clients 300 --senders 10 --rate 10 --duration 20s
#          benches/cluster.sh --nodes 1 --clients 100 --senders 10 --duration 10s  (the overhead)
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=3
nodes_only=
nats_arg=
while [ $# -gt 0 ]; do
    case $1 in
        --nodes) nodes=$2; shift 2 ;;
        --nats) nats_arg=$2; shift 2 ;;
        --nodes-cpu-only) nodes_only=1; shift ;;
        *) break ;;
    esac
done
cargo build --release --quiet -p chitty -p chittyctl
. benches/chittyd.sh
. benches/nats.sh
[ -z "$nats_arg" ] || nats=$nats_arg
work=$(mktemp -d /tmp/chitty-cluster.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
start_nats "$work"
pids+=("$nats_pid")
targets=()
server_pids=()
[ -n "$nodes_only" ] || server_pids+=("$nats_pid")
for i in $(seq "$nodes"); do
    : >"$work/n$i.log"
    start_chittyd "$work/n$i.log" --cluster "$nats_url" --node "n$i"
    pids+=("$chittyd_pid")
    server_pids+=("$chittyd_pid")
    targets+=("$chittyd_addr")
done
echo "nats-server $("$nats" --version | head -n 1) at $nats_url; nodes ${targets[*]}" >&2
"$release_dir/chittyctl" bench --target "$(IFS=,; echo "${targets[*]}")" \
    --server-pid "$(IFS=,; echo "${server_pids[*]}")" --connect-rate 0 "$@"
