#!/bin/bash
# Runs inside a systemd-box guest (Debian 12, systemd as PID 1), as root, in /box, next to the
# chitty .deb. Installs it, runs the service and its clients through their life cycle, removes
# and purges it, and checks every step. Leaves the journal and the audit trail in /box/out for
# tests/deb/run.sh, which compares them on the host. Prints "ok"/"not ok" lines and ends with
# "N passed, N failed"; exits 1 if anything failed.
set -uo pipefail
export DEBIAN_FRONTEND=noninteractive
cd /box
mkdir -p out

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
# check DESCRIPTION COMMAND...: passes when COMMAND succeeds.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}
# equal DESCRIPTION ACTUAL EXPECTED
equal() {
    if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1: got '$2', expected '$3'"; fi
}
finish() {
    echo "${passed} passed, ${failed} failed"
    [ "$failed" = 0 ]
    exit
}
# abort DESCRIPTION: a failed step that makes the rest meaningless.
abort() {
    not_ok "$*"
    journalctl -u chitty --no-pager -n 50 || true
    finish
}
# wait_for FILE REGEX [SECONDS]: waits until FILE has a line matching REGEX.
wait_for() {
    local file=$1 pattern=$2 deadline=$((SECONDS + ${3:-10}))
    until grep -Eq -- "$pattern" "$file" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}
# reap PID [SECONDS]: waits for a child to exit and sets $code to its exit status; one still
# running after SECONDS (10 by default) is killed and $code is "hung". (Not in $(...): a
# subshell cannot wait for this shell's children.)
reap() {
    local deadline=$((SECONDS + ${2:-10}))
    while kill -0 "$1" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if kill -0 "$1" 2>/dev/null; then
        kill -9 "$1"
        wait "$1" 2>/dev/null
        code=hung
    else
        wait "$1"
        code=$?
    fi
}
prop() { systemctl show -p "$1" --value chitty.service; }
pkg_status() { dpkg-query -W -f='${db:Status-Abbrev}' chitty 2>/dev/null | tr -d ' '; }

echo "# guest: PID 1 is $(cat /proc/1/comm); systemd $(systemctl --version | head -n 1)"

## Install
deb=$(ls ./chitty_*.deb)
apt-get install -y -q "$deb" >out/apt-install.log 2>&1 || {
    cat out/apt-install.log
    abort "apt-get install $deb"
}
ok "apt-get install $deb"
equal "package state after install" "$(pkg_status)" "ii"
for f in /usr/bin/chittyd /usr/bin/chitty /lib/systemd/system/chitty.service \
    /usr/lib/sysusers.d/chitty.conf /etc/default/chitty /etc/logrotate.d/chitty \
    /usr/bin/chittyctl /usr/share/man/man8/chittyctl.8.gz \
    /usr/share/man/man8/chittyd.8.gz /usr/share/man/man1/chitty.1.gz \
    /usr/share/bash-completion/completions/chitty /usr/share/zsh/vendor-completions/_chittyd \
    /usr/share/fish/vendor_completions.d/chittyd.fish /usr/share/doc/chitty/copyright \
    /usr/share/doc/chitty/README.md /usr/share/doc/chitty/changelog.gz \
    /usr/share/doc/chitty/changelog.Debian.gz /usr/share/lintian/overrides/chitty; do
    check "installed $f" test -f "$f"
done
check "/etc/default/chitty is a conffile" grep -qx ' */etc/default/chitty [0-9a-f]*' \
    <(dpkg-query -W -f='${Conffiles}\n' chitty)
check "system user chitty, no login shell" \
    grep -Eq '^chitty:[^:]*:[0-9]+:[0-9]+:[^:]*:[^:]*:/usr/sbin/nologin$' <(getent passwd chitty)
check "group chitty-admin is chitty's primary group" \
    test "$(id -gn chitty)" = chitty-admin
# --man=no: the guest has no man-db to look up the Documentation= pages with.
check "systemd-analyze verify chitty.service" systemd-analyze verify --man=no chitty.service
exposure=$(systemd-analyze security chitty.service | sed -n 's/.*Overall exposure level for chitty.service: \([0-9.]*\).*/\1/p')
check "security exposure ${exposure:-?} <= 2.0" awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.0) }'

## Started by the package, ready through sd_notify
equal "enabled by the package" "$(systemctl is-enabled chitty)" enabled
equal "started by the package" "$(systemctl is-active chitty)" active
equal "Type" "$(prop Type)" notify
# STATUS= comes only from chittyd's sd_notify messages; with Type=notify, systemctl start (run
# by postinst) returned only after READY=1.
check "STATUS= from sd_notify: '$(prop StatusText)'" grep -q 'participants: 0;' <(prop StatusText)
equal "WatchdogUSec" "$(prop WatchdogUSec)" 30s
pid=$(prop MainPID)
equal "runs as chitty:chitty-admin" "$(ps -o user=,group= -p "$pid" | xargs)" "chitty chitty-admin"
ping1=$(prop WatchdogTimestampMonotonic)
check "watchdog pings arrive (period 5 s)" \
    bash -c 'for _ in $(seq 80); do sleep 0.1; [ "$(systemctl show -p WatchdogTimestampMonotonic --value chitty)" != "$1" ] && exit 0; done; exit 1' _ "$ping1"
check "journal: listening and watchdog armed" \
    bash -c 'journalctl -u chitty -o cat | grep -q "listening on" && journalctl -u chitty -o cat | grep -q "watchdog armed"'
equal "/run/chitty" "$(stat -c '%a %U %G' /run/chitty)" "750 chitty chitty-admin"
equal "/var/log/chitty" "$(stat -c '%a %U %G' /var/log/chitty)" "750 chitty chitty-admin"
equal "audit.log" "$(stat -c '%a %U %G' /var/log/chitty/audit.log)" "640 chitty chitty-admin"

## Two line-mode clients chat through the service
# Each reads its input from a fifo that this script holds open, so lines can be fed one by one.
# --no-reconnect: this test checks that a client ends when the service stops; reconnecting
# across a restart has its own tests (tests/process/cli.rs, tests/tui/).
start_client() { # NAME FD PORT
    mkfifo "/tmp/$1.in"
    chitty chat -u "$1" -H "127.0.0.1:$3" --no-log --no-reconnect <"/tmp/$1.in" >"/tmp/$1.out" 2>"/tmp/$1.err" &
    eval "exec $2>/tmp/$1.in"
}
start_client alice 7 8080
alice=$!
wait_for /tmp/alice.out 'Participant alice joined' || abort "alice joins"
start_client bob 8 8080
bob=$!
wait_for /tmp/bob.out 'Participant bob joined' || abort "bob joins"
check "alice sees bob join" wait_for /tmp/alice.out 'Participant bob joined'
echo "hello bob" >&7
check "bob receives alice's message" wait_for /tmp/bob.out '^\[L[0-9]+\] alice: hello bob$'
echo "hi alice" >&8
check "alice receives bob's reply" wait_for /tmp/alice.out '^\[L[0-9]+\] bob: hi alice$'
# chittyd refreshes STATUS= every 5 s.
check "STATUS= counts 2 participants" bash -c '
    for _ in $(seq 70); do
        systemctl show -p StatusText --value chitty | grep -q "participants: 2;" && exit 0
        sleep 0.1
    done
    exit 1'

## chittyctl (admin socket) ---------------------------------------------------------------
check "admin socket is 0660 chitty:chitty-admin" \
    test "$(stat -c '%a %U %G' /run/chitty/admin.sock)" = "660 chitty chitty-admin"
chittyctl users >/tmp/users.out 2>&1
check "chittyctl users lists alice and bob" \
    bash -c 'grep -qw alice /tmp/users.out && grep -qw bob /tmp/users.out'
check "chittyctl clock answers with the Lamport time" grep -Eq '^Lamport time: +[0-9]+$' <(chittyctl clock)
check "chittyctl clock --json" bash -c 'chittyctl clock --json | grep -Eq "\"lamport\":[1-9]"'
check "chittyctl kick bob" chittyctl kick bob --reason "e2e test"
check "bob's chitty reports why it stopped" wait_for /tmp/bob.err 'removed by an operator: e2e test'
# Its input is still open: chitty leaves on its own when the server ends the session.
reap "$bob"
equal "kicked chitty exits 4 (refused by the server)" "$code" 4
exec 8>&-
check "alice sees bob leave" wait_for /tmp/alice.out 'Participant bob left'
check "chittyctl users no longer lists bob" bash -c '! chittyctl users | grep -qw bob'
useradd --no-create-home --shell /usr/sbin/nologin carol
useradd --no-create-home --shell /usr/sbin/nologin --groups chitty-admin dave
runuser -u carol -- chittyctl users >/tmp/carol.out 2>&1 && carol=0 || carol=$?
equal "non-admin carol is refused (exit 3)" "$carol" 3
check "carol is told what to check" grep -q 'permission denied' /tmp/carol.out
check "admin-group member dave is allowed" \
    bash -c 'runuser -u dave -- chittyctl users | grep -qw alice'
check "the audit trail records the kick and its actor" \
    grep -q '"event":"kick".*"actor":"uid=0' /var/log/chitty/audit.log
## end of chittyctl -------------------------------------------------------------------------

## The audit trail: in the journal with structured fields, and in /var/log/chitty
lines=$(wc -l </var/log/chitty/audit.log)
check "audit.log has the chat's records ($lines)" test "$lines" -ge 6
# journald may take a moment to store the last entries.
check "journal has as many audit entries as audit.log" bash -c '
    for _ in $(seq 50); do
        n=$(journalctl -u chitty -o json --no-pager | grep -c "\"CHITTY_EVENT\"")
        [ "$n" -ge "$1" ] && exit 0
        sleep 0.1
    done
    exit 1' _ "$lines"
journalctl -u chitty -o json --no-pager >out/journal-running.json
cp /var/log/chitty/audit.log out/audit-running.log
for event in join message leave; do
    check "journal has a CHITTY_EVENT=$event entry with CHITTY_LAMPORT" \
        grep -q "\"CHITTY_EVENT\":\"$event\".*\"CHITTY_LAMPORT\":\"[0-9]*\"\|\"CHITTY_LAMPORT\":\"[0-9]*\".*\"CHITTY_EVENT\":\"$event\"" out/journal-running.json
done

## A clean stop, with alice still connected
started=$SECONDS
systemctl stop chitty
equal "stop takes less than the shutdown grace" "$((SECONDS - started < 5))" 1
check "alice is told the server is shutting down" wait_for /tmp/alice.out 'shutting down'
# Its input is still open: chitty leaves on its own when the server ends the session.
reap "$alice"
equal "alice's chitty exits 0 after the server shut down" "$code" 0
exec 7>&-
equal "stopped" "$(systemctl is-active chitty)" inactive
equal "Result" "$(prop Result)" success
equal "ExecMainCode (1 = exited, not killed)" "$(prop ExecMainCode)" 1
equal "ExecMainStatus" "$(prop ExecMainStatus)" 0
check "no SIGKILL, no stop timeout" bash -c '! journalctl -u chitty -o cat | grep -Eiq "SIGKILL|timed out|killing"'
# The trail ends with the shutdown record (count: the sessions it ended) and their leaves.
check "audit trail complete: shutdown with 1 session, then alice's leave" bash -c '
    tail -n 2 /var/log/chitty/audit.log | head -n 1 | grep "\"event\":\"shutdown\"" | grep -q "\"count\":1" &&
    tail -n 1 /var/log/chitty/audit.log | grep "\"event\":\"leave\"" | grep "\"user\":\"alice\"" | grep -q "\"reason\":\"shutdown\""'
cp /var/log/chitty/audit.log out/audit-stopped.log
# The last entries may lose _SYSTEMD_UNIT when chittyd exits before journald reads them: select
# by identifier here.
journalctl SYSLOG_IDENTIFIER=chittyd -o json --no-pager >out/journal-stopped.json

## Restart, options from /etc/default/chitty, SIGHUP reopening the audit file
echo "CHITTY_LISTEN=127.0.0.1:9090" >>/etc/default/chitty
systemctl restart chitty
equal "active after restart" "$(systemctl is-active chitty)" active
check "/etc/default/chitty applies: listening on 127.0.0.1:9090" \
    bash -c 'journalctl -u chitty -o cat | grep -q "listening on 127.0.0.1:9090"'
if ls ./logrotate_*.deb >/dev/null 2>&1; then
    dpkg -i ./libpopt0_*.deb ./logrotate_*.deb >out/logrotate-install.log 2>&1
    check "logrotate installed" bash -c "command -v logrotate >/dev/null"
    logrotate --verbose --force /etc/logrotate.d/chitty >out/logrotate.log 2>&1
    check "logrotate --force /etc/logrotate.d/chitty" test $? = 0
else
    echo "# no logrotate package: moving the file and sending SIGHUP as its postrotate does"
    mv /var/log/chitty/audit.log /var/log/chitty/audit.log.1
    systemctl kill --kill-who=main --signal=HUP chitty.service
fi
check "the old audit file is now audit.log.1" test -s /var/log/chitty/audit.log.1
check "a new audit.log exists" \
    bash -c 'for _ in $(seq 50); do [ -f /var/log/chitty/audit.log ] && exit 0; sleep 0.1; done; exit 1'
echo "after the restart" | chitty chat -u eve -H 127.0.0.1:9090 --no-log >/tmp/eve.out 2>&1
equal "a client chats after the restart, exit 0" "$?" 0
# Only if chittyd reopened the file on SIGHUP do new records land in the new audit.log.
check "eve's join is in the new audit file, not the rotated one" bash -c '
    grep -q "\"event\":\"join\".*\"user\":\"eve\"" /var/log/chitty/audit.log &&
    ! grep -q "\"user\":\"eve\"" /var/log/chitty/audit.log.1'
equal "reopened audit.log" "$(stat -c '%a %U %G' /var/log/chitty/audit.log)" "640 chitty chitty-admin"
equal "still active" "$(systemctl is-active chitty)" active
equal "no restarts by systemd" "$(prop NRestarts)" 0

## systemctl reload: SIGHUP through ExecReload=, the audit file is reopened, nothing restarts
pid=$(prop MainPID)
mv /var/log/chitty/audit.log /var/log/chitty/audit.reloaded
systemctl reload chitty
equal "systemctl reload chitty exits 0" "$?" 0
check "journal: the reload reopens the audit file" \
    bash -c 'for _ in $(seq 50); do journalctl -u chitty -o cat | grep -q "SIGHUP: reopening the audit file" && exit 0; sleep 0.1; done; exit 1'
check "a new audit.log after the reload" \
    bash -c 'for _ in $(seq 50); do [ -f /var/log/chitty/audit.log ] && exit 0; sleep 0.1; done; exit 1'
echo "after the reload" | chitty chat -u frank -H 127.0.0.1:9090 --no-log >/tmp/frank.out 2>&1
equal "a client chats after the reload, exit 0" "$?" 0
check "frank's join is in the new audit file, not the moved one" bash -c '
    grep -q "\"event\":\"join\".*\"user\":\"frank\"" /var/log/chitty/audit.log &&
    ! grep -q "\"user\":\"frank\"" /var/log/chitty/audit.reloaded'
equal "reload keeps the process (pid $pid)" "$(prop MainPID)" "$pid"
rm -f /var/log/chitty/audit.reloaded

## A configuration error stops the unit instead of a restart loop
cp /etc/default/chitty /tmp/default.good
echo "CHITTY_MAX_PARTICIPANTS=lots" >>/etc/default/chitty
systemctl restart chitty 2>/dev/null
check "systemctl restart with a bad value fails" test $? != 0
# RestartSec=2s: a unit that restarted on failure would have done so twice by now.
sleep 5
equal "ActiveState after a configuration error" "$(prop ActiveState)" failed
equal "Result after a configuration error" "$(prop Result)" exit-code
equal "ExecMainStatus (78, EX_CONFIG)" "$(prop ExecMainStatus)" 78
equal "NRestarts after a configuration error" "$(prop NRestarts)" 0
# By identifier too: a line written just before the exit may lose _SYSTEMD_UNIT.
check "journal names the variable and says it does not restart" bash -c '
    for _ in $(seq 50); do
        { journalctl -u chitty -o cat --no-pager; journalctl SYSLOG_IDENTIFIER=chittyd -o cat --no-pager; } >out/journal-config-error.txt
        grep "configuration error: " out/journal-config-error.txt | grep "CHITTY_MAX_PARTICIPANTS" |
            grep -q "not restarting until the configuration is fixed" && exit 0
        sleep 0.1
    done
    exit 1'
cp /tmp/default.good /etc/default/chitty
systemctl reset-failed chitty
systemctl start chitty
equal "active again once the configuration is fixed" "$(systemctl is-active chitty)" active

## An upgrade (the same version again) restarts the service
pid=$(prop MainPID)
dpkg -i "$deb" >out/dpkg-reinstall.log 2>&1
check "reinstall over itself" test $? = 0
equal "active after upgrade" "$(systemctl is-active chitty)" active
check "upgrade restarted chittyd (pid $pid -> $(prop MainPID))" test "$(prop MainPID)" != "$pid"
check "the changed conffile survives the upgrade" grep -qx 'CHITTY_LISTEN=127.0.0.1:9090' /etc/default/chitty

## Remove: stopped, programs gone, configuration, logs and the user kept
apt-get remove -y -q chitty >out/apt-remove.log 2>&1
check "apt-get remove" test $? = 0
equal "package state after remove" "$(pkg_status)" "rc"
check "no chittyd process" bash -c '! ps -C chittyd >/dev/null'
check "programs gone" bash -c '! test -e /usr/bin/chittyd && ! test -e /usr/bin/chitty'
check "unit gone" bash -c '! test -e /lib/systemd/system/chitty.service'
# Removed but not purged: the unit is masked, so nothing starts what is no longer installed.
equal "LoadState after remove" "$(prop LoadState)" masked
check "/etc/default/chitty kept, with the change" grep -qx 'CHITTY_LISTEN=127.0.0.1:9090' /etc/default/chitty
check "/etc/logrotate.d/chitty kept" test -f /etc/logrotate.d/chitty
check "audit trail kept" test -s /var/log/chitty/audit.log.1
check "user chitty kept" bash -c 'getent passwd chitty >/dev/null'

## Purge: configuration and logs go, as Debian policy says
apt-get purge -y -q chitty >out/apt-purge.log 2>&1
check "apt-get purge" test $? = 0
check "purge says it removes the audit trail" grep -q 'removing the audit trail' out/apt-purge.log
check "package unknown to dpkg after purge" bash -c '! dpkg-query -W chitty >/dev/null 2>&1'
check "/etc/default/chitty gone" bash -c '! test -e /etc/default/chitty'
check "/etc/logrotate.d/chitty gone" bash -c '! test -e /etc/logrotate.d/chitty'
check "/var/log/chitty gone" bash -c '! test -e /var/log/chitty'
equal "LoadState after purge" "$(prop LoadState)" not-found
check "no enablement or mask left behind" bash -c \
    '! test -e /etc/systemd/system/multi-user.target.wants/chitty.service && ! test -e /var/lib/systemd/deb-systemd-helper-enabled/chitty.service'
check "nothing of chitty left under /etc, /usr, /var/lib, /run" bash -c \
    '! find /etc /usr /var/lib /run -name "*chitty*" -not -path "/etc/passwd*" | grep .'
# Policy leaves system users in place (files elsewhere may still be theirs).
check "user chitty and group chitty-admin stay after purge" \
    bash -c 'getent passwd chitty && getent group chitty-admin' >/dev/null

finish
