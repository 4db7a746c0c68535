//! Signals to chittyd: SIGTERM writes every audit record before exit and closes WebSocket users
//! within the grace; SIGHUP reopens the audit file, for logrotate.

use crate::chittyd;
use chitty_testkit::audit::{record_arrives, records};
use chitty_testkit::{PATIENCE, Raw, WsUser};
use std::time::{Duration, Instant};

#[tokio::test]
async fn every_record_is_written_before_exit_on_sigterm() {
    const MESSAGES: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let mut daemon = chittyd()
        .args(["--audit-log", log.to_str().unwrap()])
        .start()
        .await;
    let mut alice = Raw::open(&daemon.url()).await;
    alice.send_join("alice").await;
    alice.until_joined("alice").await;
    for n in 0..MESSAGES {
        alice.say_as("alice", &format!("message {n}")).await;
    }
    alice
        .until(|m| m.message == format!("message {}", MESSAGES - 1))
        .await;
    daemon.signal("TERM");
    let ended = daemon.until_log("shutting down: ended").await;
    assert!(ended.ends_with("ended 1 session"), "{ended}");
    let status = tokio::time::timeout(PATIENCE, daemon.child.wait())
        .await
        .expect("chittyd did not stop on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");

    let records = records(&log);
    let count = |event: &str| records.iter().filter(|r| r["event"] == event).count();
    assert_eq!(count("message"), MESSAGES);
    assert_eq!(count("join"), 1);
    assert_eq!(count("shutdown"), 1);
    let leave = records
        .iter()
        .find(|r| r["event"] == "leave")
        .expect("alice's leave");
    assert_eq!(leave["reason"], "shutdown");
    let lamports: Vec<u64> = records
        .iter()
        .map(|r| r["lamport"].as_u64().unwrap())
        .collect();
    assert!(
        lamports.windows(2).all(|w| w[0] < w[1]),
        "records in Lamport order"
    );
    // Text only with --audit-text; the length always.
    let m = records.iter().find(|r| r["event"] == "message").unwrap();
    assert_eq!(m["len"], "message 0".len());
    assert!(m.get("text").is_none());
}

#[tokio::test]
async fn sigterm_closes_websocket_users_before_exit_within_the_grace() {
    use futures_util::StreamExt;
    let mut daemon = chittyd()
        .args(["--shutdown-grace", "2s", "--admin-socket", "none"])
        .start()
        .await;
    let mut carol = WsUser::connect(&daemon.addr, "?username=carol").await;
    let mut dm = WsUser::connect(&daemon.addr, "").await;
    // Reads nothing and never answers the close: only the grace ends its connection.
    let silent = format!("ws://{}/?username=silent", daemon.addr);
    let _silent = tokio_tungstenite::connect_async(silent).await.unwrap();

    daemon.signal("TERM");
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "chittyd exited before its WebSocket users had their close"
    );
    for user in [&mut carol, &mut dm] {
        let last = user.until(|v| v["kind"] != "join").await;
        assert_eq!(last["kind"], "shutdown", "{last}");
        assert_eq!(user.closed().await.0, 1000);
        assert!(
            user.ws.next().await.is_none(),
            "the connection ends after the close"
        );
    }
    let status = tokio::time::timeout(PATIENCE, daemon.child.wait())
        .await
        .expect("chittyd did not exit")
        .unwrap();
    assert!(status.success(), "chittyd exited with {status}");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "chittyd should wait for the silent user up to the 2 s grace, then close it: {took:?}"
    );
}

#[tokio::test]
async fn sighup_reopens_the_audit_file_for_logrotate() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let rotated = dir.path().join("audit.log.1");
    let daemon = chittyd()
        .args(["--audit-log", log.to_str().unwrap(), "--audit-text"])
        .start()
        .await;
    let mut alice = Raw::open(&daemon.url()).await;
    alice.send_join("alice").await;
    alice.until_joined("alice").await;
    alice.say_as("alice", "before rotation").await;
    alice.until(|m| m.message == "before rotation").await;
    record_arrives(&log, |r| r["text"] == "before rotation").await;
    // logrotate's move-then-signal.
    std::fs::rename(&log, &rotated).unwrap();
    daemon.signal("HUP");
    // The reopen is asynchronous: keep talking until a message lands in the new file.
    let deadline = Instant::now() + PATIENCE;
    let mut n = 0;
    loop {
        n += 1;
        let text = format!("after rotation {n}");
        alice.say_as("alice", &text).await;
        alice.until(|m| m.message == text).await;
        if records(&log).iter().any(|r| r["event"] == "message") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new file never received records"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.stop().await;
    let old = records(&rotated);
    let new = records(&log);
    assert!(old.iter().any(|r| r["text"] == "before rotation"));
    assert!(new.iter().all(|r| r["text"] != "before rotation"));
    assert!(
        new.iter().any(|r| r["event"] == "shutdown"),
        "the rest went to the new file"
    );
    // Nothing lost across the rotation: every message is in one file or the other.
    let all_texts: Vec<_> = old
        .iter()
        .chain(&new)
        .filter_map(|r| r["text"].as_str())
        .collect();
    for i in 1..=n {
        assert!(all_texts.contains(&format!("after rotation {i}").as_str()));
    }
}
