#!/usr/bin/env bash
# End-to-end test of the Debian package in a real systemd: boots a throw-away Debian 12 guest
# (systemd-box, from the shared tools), runs tests/deb/guest.sh there against the .deb, then
# checks on the host that the journal's structured audit entries and /var/log/chitty/audit.log
# hold the same events.
#
# Usage: tests/deb/run.sh [path/to/chitty_*.deb]   (default: the one `cargo deb` last built)
# Needs: root, jq, and systemd-box's rootfs (`systemd-box build`; .ci/run does it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
box=${SYSTEMD_BOX:-$repo/../shared/tools/systemd-box/systemd-box}
target=${CARGO_TARGET_DIR:-$repo/target}
deb=${1:-$(ls -t "$target"/debian/chitty_*.deb | head -n 1)}
[ -f "$deb" ] || { echo "no .deb: build it with cargo deb" >&2; exit 2; }

out=$(mktemp -d /tmp/chitty-deb-e2e.XXXXXX)
trap 'rm -rf "$out"' EXIT

echo "== $deb in a systemd-box guest"
# logrotate is not in the box's Debian, and the box has no network: bring its packages along so
# that the guest rotates the audit file for real. Without them the guest imitates logrotate.
mkdir "$out/debs"
extras=()
if (cd "$out/debs" && apt-get download -q logrotate libpopt0 >/dev/null 2>&1); then
    extras=("$out"/debs/*.deb)
else
    echo "# could not download logrotate and libpopt0: the guest imitates the rotation"
fi

set +e
SBOX_OUT=$out "$box" run "$here/guest.sh" "$deb" "${extras[@]}" | tee "$out/guest.log"
rc=${PIPESTATUS[0]}
set -e

echo "== on the host: the journal and the audit file hold the same events"
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
# Both as sorted lines of [lamport, event, user].
journal_events() {
    jq -c 'select(.CHITTY_EVENT) | [(.CHITTY_LAMPORT | tonumber), .CHITTY_EVENT, .CHITTY_USER]' "$1" | sort
}
file_events() {
    jq -c '[.lamport, .event, .user]' "$1" | sort
}
compare() { # WHAT JOURNAL AUDIT
    if [ ! -s "$2" ] || [ ! -s "$3" ]; then
        not_ok "$1: the guest did not leave $(basename "$2") and $(basename "$3")"
        return
    fi
    if diff <(journal_events "$2") <(file_events "$3") >"$out/diff"; then
        ok "$1: $(wc -l <"$3") events, identical"
    else
        not_ok "$1: they differ (< journal, > audit.log):"
        cat "$out/diff"
    fi
}
compare "while running" "$out/journal-running.json" "$out/audit-running.log"
compare "after the stop" "$out/journal-stopped.json" "$out/audit-stopped.log"
if [ -s "$out/audit-stopped.log" ]; then
    # Every record carries a Lamport time, and the trail is in Lamport order.
    if jq -s -e 'map(.lamport) | . == sort and all(. > 0)' "$out/audit-stopped.log" >/dev/null; then
        ok "the audit file is in Lamport order"
    else
        not_ok "the audit file is not in Lamport order"
    fi
    # A complete trail ends with the shutdown record and the leaves of the sessions it ended.
    if jq -s -e '(map(.event) | index("shutdown")) as $i | $i != null
            and (.[$i].count as $n | .[$i + 1:] | length == $n
                and all(.event == "leave" and .reason == "shutdown"))' \
        "$out/audit-stopped.log" >/dev/null; then
        ok "the audit file ends with the shutdown and the leaves it caused"
    else
        not_ok "the audit file does not end with the shutdown and its leaves"
        tail -n 3 "$out/audit-stopped.log"
    fi
fi
echo "${passed} passed, ${failed} failed"

# One closing line for both parts (a guest that died early counts as one failure).
read -r guest_passed guest_failed < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$out/guest.log" | tail -n 1) || true
if [ -z "${guest_passed:-}" ] || { [ "$rc" != 0 ] && [ "${guest_failed:-0}" = 0 ]; }; then
    guest_failed=$((${guest_failed:-0} + 1))
fi
echo "deb-e2e: $((passed + ${guest_passed:-0})) passed, $((failed + guest_failed)) failed"
[ "$rc" = 0 ] && [ "$failed" = 0 ]
