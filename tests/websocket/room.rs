//! WebSocket users in the broadcast room (`?username=`): joins, broadcasts and leaves like any
//! participant's, and one strictly increasing clock per recipient across broadcasts and direct
//! messages.

use crate::shutdown_lingering;
use chitty::pb::chat_message::Kind;
use chitty_testkit::time::HeldClock;
use chitty_testkit::{PATIENCE, start_default};
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_websocket_user_with_a_username_is_in_the_room() {
    let server = start_default().await;
    let mut alice = server.join("alice").await;
    let mut carol = server.ws("?username=carol").await;
    let m = alice.until_joined("carol").await;
    assert_eq!(
        m.message,
        format!(
            "Participant carol joined Chitty-Chat at Lamport time {}",
            m.timestamp
        )
    );
    alice.say_as("alice", "welcome carol").await;
    let got = carol.until(|v| v["kind"] == "message").await;
    assert_eq!(
        (got["username"].as_str(), got["message"].as_str()),
        (Some("alice"), Some("welcome carol"))
    );
    assert_eq!(got["sender_id"], alice.id);
    carol.send(json!({"message": "thanks!"})).await;
    let m = alice
        .until(|m| m.kind == Kind::Message as i32 && m.username == "carol")
        .await;
    assert_eq!(m.message, "thanks!");
    assert_eq!(m.sender_id, carol.id);
    // A taken name is refused with a close frame.
    let (mut dup, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/?username=alice", server.addr))
            .await
            .unwrap();
    let frame = loop {
        match tokio::time::timeout(PATIENCE, dup.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(f)))) => break f,
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(u16::from(frame.code), 1008);
    assert!(frame.reason.contains("taken"), "{}", frame.reason);
    // Leaving by closing the socket is announced like anyone's leave.
    carol.ws.close(None).await.unwrap();
    let m = alice.until(|m| m.kind == Kind::Leave as i32).await;
    assert_eq!(
        m.message,
        format!(
            "Participant carol left Chitty-Chat at Lamport time {}",
            m.timestamp
        )
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn each_recipient_sees_strictly_increasing_timestamps_across_broadcasts_and_directs() {
    let clock = HeldClock::hold();
    let server = start_default().await;
    let mut carol = server.ws("?username=carol").await;
    let mut senders = Vec::new();
    for i in 0..3 {
        senders.push(server.join(&format!("g{i}")).await);
    }
    let mut dm = server.ws("").await;
    let carol_id = carol.id;
    let dm_task = tokio::spawn(async move {
        for n in 0..100 {
            dm.send(json!({"recipient_id": carol_id, "message": format!("dm {n}")}))
                .await;
        }
        dm
    });
    let mut tasks = Vec::new();
    for (i, mut s) in senders.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for n in 0..100 {
                s.say_as(&format!("g{i}"), &format!("b {n}")).await;
            }
            s.until(|m| m.message == "b 99" && m.username == format!("g{i}"))
                .await;
            s
        }));
    }
    // recv() asserts the strict increase on every frame.
    let (mut broadcasts, mut directs) = (0, 0);
    while broadcasts < 300 || directs < 100 {
        let v = carol.recv().await;
        match v["kind"].as_str() {
            Some("message") => broadcasts += 1,
            Some("direct") => directs += 1,
            _ => {}
        }
    }
    let _dm = dm_task.await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    shutdown_lingering(server, clock).await;
}

#[tokio::test]
async fn a_websocket_user_asks_for_the_roster() {
    let server = start_default().await;
    let mut carol = server.ws("?username=carol").await;
    let mut anon = server.ws("").await;
    anon.send(json!({"request": "roster"})).await;
    let r = anon.recv().await;
    assert_eq!(r["kind"], "roster", "{r}");
    assert_eq!(
        r["users"],
        json!([
            {"id": carol.id, "username": "carol", "transport": "websocket"},
            {"id": anon.id, "username": "", "transport": "websocket"},
        ])
    );
    assert_eq!(r["participants"], 1);
    // A request chittyd does not know gets an error frame; the socket stays open.
    carol.send(json!({"request": "history"})).await;
    let e = carol.until(|v| v["kind"] == "error").await;
    assert!(
        e["error"].as_str().unwrap().contains("unknown request"),
        "{e}"
    );
    carol.send(json!({"message": "still here"})).await;
    assert_eq!(
        carol.until(|v| v["kind"] == "message").await["message"],
        "still here"
    );
    server.shutdown().await;
}
