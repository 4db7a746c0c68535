#!/usr/bin/env bash
# How quickly a node that starts late serves: a nats-server with JetStream and one release
# chittyd take a load of --messages broadcasts (default a million, as fast as they go), with a
# few participants connected throughout; then a second node starts, and the script reports how
# long it took from its start to serving (its "is a member" log line, then its chat port
# listening), and how many participants its `chittyctl users` lists (it must list the first
# node's). The late node starts from the snapshot in the bucket and reads only the stream after
# it, not the million messages.
# Usage: benches/late-node.sh [--messages N]
set -euo pipefail
cd "$(dirname "$0")/.."
messages=1000000
while [ $# -gt 0 ]; do
    case $1 in
        --messages) messages=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
cargo build --release --quiet -p chitty -p chittyctl
. benches/chittyd.sh
. benches/nats.sh
work=$(mktemp -d /tmp/chitty-late.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }
start_nats "$work"
pids+=("$nats_pid")
url=$nats_url
: >"$work/n1.log"
start_chittyd "$work/n1.log" --cluster "$url" --node n1
pids+=("$chittyd_pid")
n1=$chittyd_addr
# Participants that stay, for the late node's roster.
"$release_dir/chittyctl" bench --target "$n1" --clients 20 --senders 1 --rate 1 \
    --duration 600s --connect-rate 0 >/dev/null 2>&1 &
pids+=("$!")
# The load: 2 senders as fast as the stream takes them, 1 receiver, until $messages are sent.
sent=0
while [ "$sent" -lt "$messages" ]; do
    n=$("$release_dir/chittyctl" --json bench --target "$n1" --clients 2 --senders 2 --rate 0 \
        --duration 10s --connect-rate 0 | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages_sent"])')
    sent=$((sent + n))
    echo "  $sent messages so far" >&2
done
: >"$work/n2.log"
started=$(now_ms)
"$release_dir/chittyd" --listen 127.0.0.1:0 --admin-socket "$work/n2.sock" --audit-log none \
    --log-target stderr --log info --cluster "$url" --node n2 2>"$work/n2.log" &
pids+=("$!")
until grep -q "is a member" "$work/n2.log"; do sleep 0.005; done
member=$(now_ms)
until grep -q "chittyd listening on" "$work/n2.log"; do sleep 0.005; done
listening=$(now_ms)
users=$("$release_dir/chittyctl" --socket "$work/n2.sock" --json users \
    | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
grep "starting from the snapshot" "$work/n2.log" | sed 's/.*cluster: /  /' >&2 || true
echo "after $sent messages: the late node was a member after $((member - started)) ms and listening after $((listening - started)) ms; it lists $users participants"
