# Sourced by the cluster benchmarks (cluster.sh, recovery.sh, late-node.sh): starts a
# nats-server with JetStream on loopback, its store in a directory of its own.
# Usage: start_nats WORKDIR [PORT]; sets $nats_pid and $nats_url. Without PORT the server picks
# one, read back from its log. The server is $CHITTY_NATS_SERVER, else the venv's (the current
# release, `bash tests/run` installs it), else Debian's.
nats=${CHITTY_NATS_SERVER:-target/venv/bin/nats-server}
[ -x "$nats" ] || nats=/usr/sbin/nats-server
start_nats() {
    local work=$1 port=${2:--1}
    : >"$work/nats.log"
    "$nats" -js -sd "$work/js" -a 127.0.0.1 -p "$port" -m -1 -l "$work/nats.log" &
    nats_pid=$!
    nats_url=
    for _ in $(seq 200); do
        if grep -q "Server is ready" "$work/nats.log"; then
            nats_url=$(sed -n 's/.*Listening for client connections on \([0-9.:]*\).*/nats:\/\/\1/p' \
                "$work/nats.log" | head -n 1)
            return 0
        fi
        sleep 0.02
    done
    cat "$work/nats.log" >&2
    return 1
}
