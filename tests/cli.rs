//! The real binaries: chittyd as a process, `chitty` clients in line mode exchanging messages
//! through it, their log files, exit codes, and a clean SIGTERM.

use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

mod common;

use common::daemon::{Daemon, PATIENCE};

fn chitty(addr: &str, name: &str, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_chitty"))
        .args(["chat", "-u", name, "-H", addr, "--log"])
        .arg(log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chitty")
}

async fn wait_for(lines: &mut Lines<BufReader<ChildStdout>>, needle: &str) -> String {
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("output ended before {needle:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {needle:?}"))
}

#[tokio::test]
async fn two_line_mode_clients_chat_through_chittyd() {
    let daemon = Daemon::start(&[], &[]).await;
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
    let daemon = Daemon::start(&[], &[]).await;
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
    let gone = chitty("127.0.0.1:1", "nobody", &dir.path().join("4.log"));
    let out = gone.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is chittyd running"));
}
