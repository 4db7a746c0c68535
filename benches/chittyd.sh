# Sourced by benches/scenario.sh and benches/soak.sh: starts a release chittyd for a load test on
# an ephemeral loopback port. One machine is one client address, so the per-address connection
# limits are off, and so is the per-session rate limit (the generator sends as fast as allowed).
# Usage: start_chittyd LOGFILE [chittyd options...]; sets $chittyd_pid and $chittyd_addr.
# (--admin-socket among the options replaces the default, none.)
# Binaries come from cargo's target directory ($CARGO_TARGET_DIR when set).
release_dir=${CARGO_TARGET_DIR:-target}/release
start_chittyd() {
    local log=$1
    shift
    # No admin socket, unless the caller names one.
    local admin=(--admin-socket none)
    for a in "$@"; do [ "$a" != --admin-socket ] || admin=(); done
    "$release_dir/chittyd" --listen 127.0.0.1:0 "${admin[@]}" --audit-log none \
        --log-target stderr --log info --rate-limit 0 --max-connections-per-ip 0 \
        --new-connections-per-ip 0 "$@" 2>"$log" &
    chittyd_pid=$!
    chittyd_addr=
    for _ in $(seq 200); do
        chittyd_addr=$(sed -n 's/.*chittyd listening on //p' "$log" | head -n 1)
        [ -n "$chittyd_addr" ] && return 0
        sleep 0.05
    done
    cat "$log" >&2
    return 1
}
