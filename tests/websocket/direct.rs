//! Direct messages between numbered users: ids in one sequence across transports, the basic
//! protocol's fields, error frames for bad input that leave the socket open, and ids freed on
//! disconnect.

use crate::shutdown_lingering;
use chitty::pb::{chat_event, chat_message::Kind};
use chitty_testkit::start_default;
use chitty_testkit::time::{HeldClock, wait_until};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(start_paused = true)]
async fn ids_in_order_and_direct_messages_with_the_basic_fields() {
    let clock = HeldClock::hold();
    let server = start_default().await;
    let mut one = server.ws("").await;
    let mut two = server.ws("").await;
    assert_eq!((one.id, two.id), (1, 2), "one sequence starting at 1");
    one.send(json!({"recipient_id": 2, "message": "Go Braves!"}))
        .await;
    let got = two.recv().await;
    assert_eq!(got["sender_id"], 1);
    assert_eq!(got["message"], "Go Braves!");
    assert_eq!(got["kind"], "direct");
    assert_eq!(got["recipient_id"], 2);
    assert!(got["timestamp"].as_u64().unwrap() > 0);
    // The sender gets its message back, the same frame with the same time: it was accepted
    // and went to a user that was online.
    assert_eq!(one.recv().await, got, "the sender's copy");
    two.send(json!({"recipient_id": 1, "message": "Go Mets!"}))
        .await;
    let got = one.recv().await;
    assert_eq!(
        (got["sender_id"].as_u64(), got["message"].as_str()),
        (Some(2), Some("Go Mets!"))
    );
    shutdown_lingering(server, clock).await;
}

#[tokio::test(start_paused = true)]
async fn unknown_recipients_and_bad_input_get_error_frames_and_the_socket_stays_open() {
    let clock = HeldClock::hold();
    let server = start_default().await;
    let mut one = server.ws("").await;
    let mut two = server.ws("").await;

    one.send(json!({"recipient_id": 7, "message": "anyone?"}))
        .await;
    let e = one.recv().await;
    assert_eq!(e["error"], "user 7 is not connected");
    assert_eq!(e["recipient_id"], 7);

    let cases: Vec<(Message, &str)> = vec![
        (Message::text("{not json"), "malformed JSON"),
        (
            Message::text(r#"{"recipient_id": "two", "message": "x"}"#),
            "invalid type",
        ),
        (
            Message::text(r#"{"recipient_id": 2}"#),
            "missing field `message`",
        ),
        (
            Message::text(r#"{"recipient_id": -2, "message": "x"}"#),
            "invalid",
        ),
        (Message::text(r#"[1, 2]"#), "invalid"),
        (
            Message::text(json!({"recipient_id": 2, "message": "x".repeat(129)}).to_string()),
            "too long",
        ),
        (
            Message::text(json!({"recipient_id": 2, "message": ""}).to_string()),
            "empty",
        ),
        (
            Message::text(json!({"recipient_id": 2, "message": "\u{1b}[2J"}).to_string()),
            "control character",
        ),
        (
            Message::binary(vec![1, 2, 3]),
            "binary frames are not supported",
        ),
        (
            Message::text(json!({"message": "to everyone?"}).to_string()),
            "not in the broadcast room",
        ),
    ];
    for (frame, expected) in cases {
        let shown = format!("{frame:?}");
        one.ws.send(frame).await.unwrap();
        let e = one.recv().await;
        let error = e["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{shown}: {e}"));
        assert!(error.contains(expected), "{shown}: {error}");
    }
    // Nothing reached two, and the connection still works.
    one.send(json!({"recipient_id": 2, "message": "still here"}))
        .await;
    let got = two.recv().await;
    assert_eq!(got["message"], "still here", "the first frame two sees");
    assert_eq!(
        server
            .hub
            .stats()
            .rejected
            .load(std::sync::atomic::Ordering::Relaxed),
        11
    );
    shutdown_lingering(server, clock).await;
}

#[tokio::test(start_paused = true)]
async fn direct_messages_cross_transports_both_ways() {
    let clock = HeldClock::hold();
    let server = start_default().await;
    let mut alice = server.join("alice").await; // gRPC
    let mut ws = server.ws("").await;
    assert!(ws.id > alice.id, "one sequence across transports");

    ws.send(json!({"recipient_id": alice.id, "message": "hi from the browser"}))
        .await;
    let m = alice.until(|m| m.kind == Kind::Direct as i32).await;
    assert_eq!(m.sender_id, ws.id);
    assert_eq!(m.recipient_id, alice.id);
    assert_eq!(m.message, "hi from the browser");
    // The sender's copy, in its own wire form, with the same time.
    let echo = ws.recv().await;
    assert_eq!(echo["kind"], "direct");
    assert_eq!(echo["message"], "hi from the browser");
    assert_eq!(echo["timestamp"], m.timestamp);

    alice
        .send(Some(chat_event::Event::Message(chat_event::ChatMessage {
            username: "alice".into(),
            message: "hi from grpc".into(),
            recipient_id: ws.id,
        })))
        .await;
    let got = ws.recv().await;
    assert_eq!(got["sender_id"], alice.id);
    assert_eq!(got["username"], "alice");
    assert_eq!(got["message"], "hi from grpc");
    // alice gets her copy back, and nothing else: a direct message is not a broadcast.
    let echo = alice.expect_msg().await;
    assert_eq!(
        (
            echo.kind,
            echo.sender_id,
            echo.recipient_id,
            echo.message.as_str()
        ),
        (Kind::Direct as i32, alice.id, ws.id, "hi from grpc")
    );
    assert_eq!(Some(echo.timestamp), got["timestamp"].as_u64());
    alice.say_as("alice", "marker").await;
    let next = alice.expect_msg().await;
    assert_eq!(next.message, "marker");
    // An unknown recipient from gRPC gets a private error.
    alice
        .send(Some(chat_event::Event::Message(chat_event::ChatMessage {
            username: "alice".into(),
            message: "lost".into(),
            recipient_id: 999,
        })))
        .await;
    let e = alice.expect_msg().await;
    assert_eq!(e.kind, Kind::Error as i32);
    assert_eq!(e.message, "user 999 is not connected");
    assert_eq!(e.recipient_id, 999);
    shutdown_lingering(server, clock).await;
}

#[tokio::test(start_paused = true)]
async fn disconnecting_frees_the_id() {
    let clock = HeldClock::hold();
    let server = start_default().await;
    let mut one = server.ws("").await;
    let two = server.ws("").await;
    let gone = two.id;
    drop(two);
    // The drop is noticed asynchronously: once the hub has, the id is unreachable.
    wait_until(&format!("user {gone} leaving the hub"), || {
        server.hub.users().len() == 1
    })
    .await;
    one.send(json!({"recipient_id": gone, "message": "there?"}))
        .await;
    let v = one.recv().await;
    assert_eq!(v["error"], format!("user {gone} is not connected"));
    assert_eq!(server.hub.users().len(), 1);
    shutdown_lingering(server, clock).await;
}
