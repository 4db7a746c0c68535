//! The real binaries: chittyd as a process, `chitty` clients in line mode exchanging messages
//! through it, their log files, exit codes, a clean SIGTERM, and a client that reconnects when
//! chittyd restarts. Then, by topic: [`pipes`] (a script's lines at the server's pace, refusals
//! in the exit status, addresses), [`commands`] (what both modes understand, ids, the roster,
//! direct messages, the private log) and [`original`] (a server without chitty's extensions).

mod commands;
mod original;
mod pipes;

use crate::chittyd;
use chitty::pb::admin::KickRequest;
use chitty_testkit::process::{Daemon, free_addr, wait_for_line as wait_for};
use chitty_testkit::{PATIENCE, admin};
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout};

/// `chitty chat` as `name` against `addr`, logging to `log`.
fn chitty(addr: &str, name: &str, log: &Path) -> Child {
    let log = log.to_str().expect("a UTF-8 temporary path");
    crate::chitty(&["chat", "-u", name, "-H", addr, "--log", log])
}

/// A child's standard output, line by line.
fn stdout_lines(child: &mut Child) -> Lines<BufReader<ChildStdout>> {
    BufReader::new(child.stdout.take().expect("stdout is piped")).lines()
}

/// A child's standard error, line by line.
fn stderr_lines(child: &mut Child) -> Lines<BufReader<ChildStderr>> {
    BufReader::new(child.stderr.take().expect("stderr is piped")).lines()
}

/// The next line, whatever it says; fails the test when none comes in time.
async fn next_line<R: tokio::io::AsyncRead + Unpin>(lines: &mut Lines<BufReader<R>>) -> String {
    tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("timed out waiting for a line")
        .expect("read a line")
        .expect("the output ended")
}

/// The id at the end of a line-mode join notice: `... at Lamport time 3 (#2)`.
fn joined_id(line: &str) -> u64 {
    line.rsplit_once("(#")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no id in {line:?}"))
}

/// The Lamport time at the start of a line-mode line (`[L12] …`).
fn shown_time(line: &str) -> u64 {
    line.strip_prefix("[L")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(t, _)| t.parse().ok())
        .unwrap_or_else(|| panic!("no time in {line:?}"))
}

#[tokio::test]
async fn two_line_mode_clients_chat_through_chittyd() {
    let daemon = chittyd().start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice_log, bob_log) = (dir.path().join("alice.log"), dir.path().join("bob.log"));

    let mut alice = chitty(&daemon.addr, "alice", &alice_log);
    let mut alice_out = BufReader::new(alice.stdout.take().unwrap()).lines();
    wait_for(&mut alice_out, "Participant alice joined").await;
    let mut bob = chitty(&daemon.addr, "bob", &bob_log);
    let mut bob_out = BufReader::new(bob.stdout.take().unwrap()).lines();
    wait_for(&mut bob_out, "Participant bob joined").await;
    wait_for(&mut alice_out, "Participant bob joined").await;

    let mut alice_in = alice.stdin.take().unwrap();
    alice_in.write_all(b"hello bob\n").await.unwrap();
    let line = wait_for(&mut bob_out, "hello bob").await;
    assert!(
        line.starts_with("[L") && line.contains("] alice: hello bob"),
        "{line}"
    );
    let mut bob_in = bob.stdin.take().unwrap();
    bob_in.write_all(b"hi alice\n").await.unwrap();
    wait_for(&mut alice_out, "bob: hi alice").await;

    // End of input leaves cleanly.
    drop(bob_in);
    wait_for(&mut alice_out, "Participant bob left").await;
    assert!(bob.wait().await.unwrap().success());
    drop(alice_in);
    assert!(alice.wait().await.unwrap().success());

    let alice_log = std::fs::read_to_string(&alice_log).unwrap();
    let lines: Vec<&str> = alice_log.lines().collect();
    let has = |pattern: &str| {
        lines
            .iter()
            .any(|l| l.starts_with("L[") && l.ends_with(pattern))
    };
    assert!(
        lines[0].contains("] @ SERVER: Participant alice joined Chitty-Chat at Lamport time"),
        "{alice_log}"
    );
    assert!(has("] @ alice: hello bob"), "{alice_log}");
    assert!(has("] @ bob: hi alice"), "{alice_log}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("@ SERVER: Participant bob left Chitty-Chat")),
        "{alice_log}"
    );
    let bob_log = std::fs::read_to_string(&bob_log).unwrap();
    assert!(
        bob_log.lines().any(|l| l.ends_with("@ alice: hello bob")),
        "{bob_log}"
    );
    // Every log line carries its Lamport time, increasing.
    let times: Vec<u64> = lines
        .iter()
        .map(|l| l[2..l.find(']').unwrap()].parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");

    daemon.stop().await;
}

#[tokio::test]
async fn chitty_exit_codes_say_what_went_wrong() {
    let daemon = chittyd().start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut first = chitty(&daemon.addr, "taken", &dir.path().join("1.log"));
    let mut first_out = BufReader::new(first.stdout.take().unwrap()).lines();
    wait_for(&mut first_out, "Participant taken joined").await;

    let second = chitty(&daemon.addr, "taken", &dir.path().join("2.log"));
    let out = second.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(4), "name taken is a refusal");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("name taken") && err.contains("taken"), "{err}");

    let bad = chitty(&daemon.addr, "two words", &dir.path().join("3.log"));
    let out = bad.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid username"));

    drop(first.stdin.take());
    assert!(first.wait().await.unwrap().success());
    let audit = daemon.stop().await;
    // By hand, the audit trail goes to standard output.
    let events: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "join" && e["user"] == "taken")
    );
    assert!(events.iter().any(|e| e["event"] == "reject"));

    // Nothing listening: exit 3 with a hint.
    let gone = chitty(
        &free_addr().to_string(),
        "nobody",
        &dir.path().join("4.log"),
    );
    let out = gone.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is chittyd running"));
}

/// chittyd listening on `addr` (rather than an ephemeral port), without an admin socket.
async fn chittyd_at(addr: &str) -> Daemon {
    chittyd()
        .listen(addr)
        .args(["--admin-socket", "none"])
        .start()
        .await
}

/// The Lamport time at the start of a log line (`L[12] @ …`).
fn log_time(line: &str) -> u64 {
    line[2..line.find(']').unwrap()].parse().unwrap()
}

#[tokio::test]
async fn a_line_mode_client_reconnects_when_chittyd_restarts() {
    let addr = free_addr().to_string();
    let first = chittyd_at(&addr).await;
    let dir = tempfile::tempdir().unwrap();
    let alice_log = dir.path().join("alice.log");

    let mut alice = chitty(&addr, "alice", &alice_log);
    let mut alice_out = BufReader::new(alice.stdout.take().unwrap()).lines();
    let mut alice_err = BufReader::new(alice.stderr.take().unwrap()).lines();
    let mut alice_in = alice.stdin.take().unwrap();
    wait_for(&mut alice_out, "Participant alice joined").await;
    alice_in.write_all(b"before the restart\n").await.unwrap();
    wait_for(&mut alice_out, "] alice: before the restart").await;

    // A clean stop: the notice, then the client says what happened and keeps trying.
    first.stop().await;
    wait_for(&mut alice_out, "* Chitty-Chat server is shutting down").await;
    let lost = next_line(&mut alice_err).await;
    assert!(
        lost.starts_with("chitty: connection lost: the server shut down; reconnecting in ")
            && lost.ends_with(" s (attempt 1)"),
        "{lost}"
    );
    // Said once: the next attempt says why the last one failed, once; the one after, only
    // when it comes.
    let second = next_line(&mut alice_err).await;
    assert!(
        second.starts_with(&format!(
            "chitty: attempt 1 failed: cannot connect to {addr}: Connection refused"
        )) && second.ends_with(" s (attempt 2)"),
        "{second}"
    );
    let third = next_line(&mut alice_err).await;
    assert!(
        third.starts_with("chitty: reconnecting in ") && third.ends_with(" s (attempt 3)"),
        "{third}"
    );
    // Typed while disconnected: queued, sent after the rejoin.
    alice_in.write_all(b"typed while away\n").await.unwrap();

    let second = chittyd_at(&addr).await;
    let back = wait_for(&mut alice_err, "reconnected as").await;
    let id = back
        .strip_prefix("chitty: reconnected as alice (#")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{back}"));
    wait_for(&mut alice_out, "Participant alice joined").await;
    wait_for(&mut alice_out, "] alice: typed while away").await;

    // Another client sees alice under her name and id, and messages flow both ways.
    let mut bob = chitty(&addr, "bob", &dir.path().join("bob.log"));
    let mut bob_out = BufReader::new(bob.stdout.take().unwrap()).lines();
    let mut bob_in = bob.stdin.take().unwrap();
    wait_for(&mut bob_out, "Participant bob joined").await;
    wait_for(&mut alice_out, "Participant bob joined").await;
    alice_in.write_all(b"back again\n").await.unwrap();
    wait_for(&mut bob_out, "] alice: back again").await;
    bob_in
        .write_all(format!("/msg {id} welcome back\n").as_bytes())
        .await
        .unwrap();
    wait_for(&mut alice_out, "-> you: welcome back").await;

    // The user's own leave is final: no reconnecting, exit 0.
    drop(alice_in);
    wait_for(&mut bob_out, "Participant alice left").await;
    assert!(alice.wait().await.unwrap().success());
    drop(bob_in);
    assert!(bob.wait().await.unwrap().success());
    second.stop().await;

    // The client's Lamport clock outlived the connection: the restarted server started from 0,
    // yet every time alice logged keeps increasing.
    let log = std::fs::read_to_string(&alice_log).unwrap();
    let times: Vec<u64> = log.lines().map(log_time).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{log}");
    let rejoin = log
        .lines()
        .filter(|l| l.contains("@ SERVER: Participant alice joined"))
        .nth(1)
        .unwrap_or_else(|| panic!("no second join in {log}"));
    let before = log
        .lines()
        .find(|l| l.ends_with("@ alice: before the restart"))
        .unwrap();
    assert!(log_time(rejoin) > log_time(before), "{log}");
}

#[tokio::test]
async fn a_kicked_and_banned_client_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let daemon = chittyd()
        .args(["--admin-socket", socket.to_str().unwrap()])
        .start()
        .await;
    let mut alice = chitty(&daemon.addr, "alice", &dir.path().join("alice.log"));
    let mut alice_out = BufReader::new(alice.stdout.take().unwrap()).lines();
    wait_for(&mut alice_out, "Participant alice joined").await;

    kick(&socket, "alice", "spamming", 600).await;

    // A refusal is final: no reconnecting, exit 4, the reason in words.
    let out = tokio::time::timeout(PATIENCE, alice.wait_with_output())
        .await
        .expect("chitty kept going after a kick")
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end(), "chitty: removed by an operator: spamming");

    // The ban keeps the name out, and says for how long.
    let again = chitty(&daemon.addr, "alice", &dir.path().join("again.log"));
    let out = again.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("chitty: not allowed: username alice is banned for another ")
            && err.trim_end().ends_with(" s"),
        "{err}"
    );
    daemon.stop().await;
}

/// Kicks `name` through chittyd's admin service on `socket`, the call `chittyctl kick` makes.
/// (chittyctl is a package of its own: Cargo builds it for its own tests, in ctl/tests, which run
/// the real binary; this package's tests reach the service directly.)
async fn kick(socket: &Path, name: &str, reason: &str, ban_seconds: u64) {
    admin::client(socket)
        .await
        .expect("connect to the admin socket")
        .kick(KickRequest {
            username: name.to_owned(),
            id: 0,
            reason: reason.to_owned(),
            ban_seconds,
        })
        .await
        .expect("kick");
}
