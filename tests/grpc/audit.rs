//! The audit trail of a gRPC session: every kind of event, in Lamport order, with its fields.

use chitty::pb::chat_message::Kind;
use chitty::server::ServerConfig;
use chitty_testkit::{audit, config, start};

#[tokio::test]
async fn every_event_kind_is_audited_in_lamport_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let server = start(ServerConfig {
        audit: chitty::audit::AuditConfig {
            file: Some(path.clone()),
            text: true,
            ..Default::default()
        },
        ..config()
    })
    .await;
    let mut alice = server.join("alice").await;
    let mut bob = server.join("bob").await;
    alice.say_as("alice", "hello").await; // message
    alice.say_as("alice", "").await; // reject (private notice)
    bob.say_as("alice", "forged").await; // reject + leave (violation)
    bob.expect_status().await;
    let carol = server.join("carol").await;
    drop(carol); // leave (disconnect)
    let mut dave = server.join("dave").await;
    dave.leave_as("dave").await; // leave (leave event)
    dave.expect_clean_end().await;
    let mut nobody = server.open().await;
    nobody.send_join("SERVER").await; // reject before join
    nobody.expect_status().await;
    alice
        .until(|m| m.subject == "dave" && m.kind == Kind::Leave as i32)
        .await;
    server.shutdown().await; // shutdown + leave (shutdown)

    let records = audit::records(&path);
    let lamports: Vec<u64> = records
        .iter()
        .map(|r| r["lamport"].as_u64().unwrap())
        .collect();
    assert!(lamports.windows(2).all(|w| w[0] < w[1]), "{lamports:?}");
    for r in &records {
        let time = r["time"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(time).is_ok(), "{r}");
    }
    let find = |event: &str, user: &str| {
        records
            .iter()
            .find(|r| r["event"] == event && r["user"] == user)
            .unwrap_or_else(|| panic!("no {event} record for {user}: {records:#?}"))
    };
    let join = find("join", "alice");
    assert_eq!(join["transport"], "grpc");
    assert!(join["session"].as_u64().unwrap() > 0);
    assert!(join["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let msg = find("message", "alice");
    assert_eq!(
        (msg["len"].as_u64(), msg["text"].as_str()),
        (Some(5), Some("hello"))
    );
    let reject = find("reject", "alice");
    assert_eq!(reject["reason"], "message is empty");
    let forged = find("reject", "bob");
    assert!(
        forged["reason"]
            .as_str()
            .unwrap()
            .starts_with("impersonation"),
        "{forged}"
    );
    assert_eq!(find("leave", "bob")["reason"], "violation: impersonation");
    assert_eq!(find("leave", "carol")["reason"], "disconnect");
    assert_eq!(find("leave", "dave")["reason"], "leave");
    assert_eq!(find("leave", "alice")["reason"], "shutdown");
    let refused = records
        .iter()
        .find(|r| r["event"] == "reject" && r["user"] == "SERVER")
        .expect("a refused join is audited");
    assert!(
        refused["reason"].as_str().unwrap().contains("reserved"),
        "{refused}"
    );
    assert_eq!(records.last().unwrap()["event"], "leave");
    assert!(records.iter().any(|r| r["event"] == "shutdown"));
}
