//! The session rules over gRPC: joining, speaking and leaving, the notices everyone sees, and
//! every refusal with its status, each without disturbing anyone else.

use chitty::hub::Target;
use chitty::pb::{self, chat_message::Kind};
use chitty::server::ServerConfig;
use chitty_testkit::{start, start_default};
use std::time::Duration;
use tonic::Code;

fn joined(name: &str, l: u64) -> String {
    format!("Participant {name} joined Chitty-Chat at Lamport time {l}")
}

fn left(name: &str, l: u64) -> String {
    format!("Participant {name} left Chitty-Chat at Lamport time {l}")
}

#[tokio::test]
async fn join_message_and_leave_notices_reach_everyone() {
    let server = start_default().await;
    let mut alice = server.open().await;
    alice.send_join("alice").await;
    // The first message is the welcome, to alice alone: her id and what the server offers.
    let welcome = alice.expect_msg().await;
    assert_eq!(welcome.kind, Kind::Welcome as i32);
    assert_eq!(welcome.sender_id, welcome.recipient_id);
    let info = welcome
        .server
        .expect("the welcome says what the server offers");
    assert!(info.capabilities.iter().any(|c| c == "direct"), "{info:?}");
    assert!(info.capabilities.iter().any(|c| c == "roster"), "{info:?}");
    assert_eq!(info.max_message_chars, 128);
    let m = alice.expect_msg().await;
    assert!(m.timestamp > welcome.timestamp);
    assert_eq!(m.username, "SERVER");
    assert_eq!(m.message, joined("alice", m.timestamp));
    assert_eq!(m.kind, Kind::Join as i32);
    assert_eq!(m.subject, "alice");
    assert_eq!(
        m.sender_id, welcome.sender_id,
        "the join notice carries the id too"
    );
    assert_eq!(m.participants, 1);

    let mut bob = server.open().await;
    bob.send_join("bob").await;
    assert_eq!(bob.expect_msg().await.kind, Kind::Welcome as i32);
    let to_bob = bob.expect_msg().await;
    let to_alice = alice.expect_msg().await;
    assert_eq!(
        to_bob, to_alice,
        "the new participant gets the same notice as everyone"
    );
    assert_eq!(to_bob.message, joined("bob", to_bob.timestamp));
    assert!(to_bob.timestamp > m.timestamp);
    assert_ne!(to_bob.sender_id, m.sender_id);

    bob.say_as("bob", "hello, world").await;
    for p in [&mut alice, &mut bob] {
        let m = p.expect_msg().await;
        assert_eq!(
            (m.username.as_str(), m.message.as_str()),
            ("bob", "hello, world")
        );
        assert_eq!(m.kind, Kind::Message as i32);
        assert!(m.timestamp > to_bob.timestamp);
    }

    bob.leave_as("bob").await;
    assert!(
        bob.expect_clean_end().await.is_empty(),
        "nothing after the leave but the end"
    );
    let m = alice.expect_msg().await;
    assert_eq!(m.username, "SERVER");
    assert_eq!(m.message, left("bob", m.timestamp));
    assert_eq!(m.kind, Kind::Leave as i32);

    // The name is free again at once.
    let mut bob2 = server.open().await;
    bob2.send_join("bob").await;
    bob2.until_joined("bob").await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_original_client_sees_the_original_messages() {
    // A client built from the original proto knows only fields 1-3 of ChatMessage; decoding our
    // frames with that schema must give exactly the original texts.
    #[derive(Clone, PartialEq, prost::Message)]
    struct OriginalChatMessage {
        #[prost(uint64, tag = "1")]
        timestamp: u64,
        #[prost(string, tag = "2")]
        username: String,
        #[prost(string, tag = "3")]
        message: String,
    }
    let server = start_default().await;
    let mut alice = server.join("alice").await;
    alice.say_as("alice", "hi").await;
    let m = alice.expect_msg().await;
    let bytes = prost::Message::encode_to_vec(&m);
    let old: OriginalChatMessage = prost::Message::decode(bytes.as_slice()).unwrap();
    assert_eq!(old.username, "alice");
    assert_eq!(old.message, "hi");
    assert_eq!(old.timestamp, m.timestamp);
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_usernames_are_refused_with_invalid_argument() {
    let server = start_default().await;
    for name in [
        "",
        "seventeen_chars_x",
        "two words",
        "tab\there",
        "SERVER",
        "server",
        "bell\u{7}",
    ] {
        let mut p = server.open().await;
        p.send_join(name).await;
        let status = p.expect_status().await;
        assert_eq!(status.code(), Code::InvalidArgument, "{name:?}: {status:?}");
        assert!(status.message().contains("invalid username"), "{status:?}");
    }
    // A 10 MB name is refused by the frame limit, not by reading it into a username.
    let mut p = server.open().await;
    p.send_join(&"x".repeat(10 << 20)).await;
    let status = p.expect_status().await;
    assert_ne!(status.code(), Code::Ok);
    // Nobody joined, and the server still serves.
    assert_eq!(server.hub.participants(), 0);
    server.join("fine").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_taken_username_is_already_exists() {
    let server = start_default().await;
    let _alice = server.join("alice").await;
    let mut again = server.open().await;
    again.send_join("alice").await;
    let status = again.expect_status().await;
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().contains("alice"), "{status:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn names_are_compared_case_insensitively_and_shown_as_typed() {
    let server = start_default().await;
    let mut bob = server.join("bob").await;
    for other in ["BOB", "Bob", "ｂｏｂ"] {
        let mut again = server.open().await;
        again.send_join(other).await;
        let status = again.expect_status().await;
        assert_eq!(status.code(), Code::AlreadyExists, "{other}: {status:?}");
        assert!(status.message().contains(other), "{status:?}");
    }
    // Its own name in another case is still its own: not an impersonation.
    bob.say_as("BOB", "hello").await;
    let m = bob.until(|m| m.message == "hello").await;
    assert_eq!(m.username, "bob", "shown as its owner typed it");
    bob.leave_as("Bob").await;
    assert!(bob.expect_clean_end().await.is_empty(), "a clean leave");

    // The name is free again, in any form; the new owner's form is the one shown.
    let mut upper = server.open().await;
    upper.send_join("BOB").await;
    let m = upper.until_joined("BOB").await;
    assert_eq!(m.message, joined("BOB", m.timestamp));
    let info = server.hub.users();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].name, "BOB");
    // An operator may name it in any form too.
    let kicked = server
        .hub
        .kick(Target::Name("bob"), "test", None, "test")
        .await
        .unwrap()
        .expect("bob is BOB");
    assert_eq!(kicked.name, "BOB");
    server.shutdown().await;
}

#[tokio::test]
async fn a_ban_on_a_name_holds_for_every_form_of_it() {
    let server = start_default().await;
    let _bob = server.join("bob").await;
    server
        .hub
        .kick(
            Target::Name("bob"),
            "spam",
            Some(Duration::from_secs(3600)),
            "test",
        )
        .await
        .unwrap()
        .expect("bob is there");
    for other in ["bob", "Bob", "BOB", "ｂｏｂ"] {
        let mut again = server.open().await;
        again.send_join(other).await;
        let status = again.expect_status().await;
        assert_eq!(status.code(), Code::PermissionDenied, "{other}: {status:?}");
        assert!(
            status
                .message()
                .contains(&format!("username {other} is banned")),
            "{status:?}"
        );
    }
    let bans = server.hub.bans();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].name, "bob");
    assert_eq!(bans[0].reason, "spam");
    assert!(
        server.hub.unban("BOB", "test").await.unwrap().is_some(),
        "lifted by any form"
    );
    assert!(
        server.hub.unban("bob", "test").await.unwrap().is_none(),
        "lifted already"
    );
    let mut bob = server.open().await;
    bob.send_join("Bob").await;
    bob.until_joined("Bob").await;
    server.shutdown().await;
}

#[tokio::test]
async fn protocol_violations_end_the_stream_with_the_fitting_status() {
    let server = start_default().await;
    let mut watcher = server.join("watcher").await;

    // A message before join.
    let mut p = server.open().await;
    p.say_as("ghost", "boo").await;
    let s = p.expect_status().await;
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(s.message().contains("join"), "{s:?}");

    // A leave before join.
    let mut p = server.open().await;
    p.leave_as("ghost").await;
    assert_eq!(p.expect_status().await.code(), Code::FailedPrecondition);

    // A second join.
    let mut p = server.join("twice").await;
    p.send_join("again").await;
    let s = p.expect_status().await;
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");

    // An event with no content.
    let mut p = server.join("empty").await;
    p.send(None).await;
    let s = p.expect_status().await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("no content"), "{s:?}");

    // A timestamp no honest peer sends.
    let mut p = server.join("future").await;
    p.send_raw(pb::ChatEvent {
        timestamp: u64::MAX,
        event: None,
    })
    .await;
    assert_eq!(p.expect_status().await.code(), Code::InvalidArgument);
    assert!(
        server.hub.clock().now() < 1 << 40,
        "the clock was not dragged forward"
    );

    // Joined participants that broke the rules left, and everyone saw each leave once.
    for name in ["twice", "empty", "future"] {
        let m = watcher
            .until(|m| m.kind == Kind::Leave as i32 && m.subject == name)
            .await;
        assert_eq!(m.message, left(name, m.timestamp));
    }
    assert_eq!(server.hub.participants(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn nobody_can_speak_or_leave_as_someone_else() {
    let server = start_default().await;
    let mut alice = server.join("alice").await;
    let mut mallory = server.join("mallory").await;
    alice.until_joined("mallory").await;

    mallory.say_as("alice", "I am alice").await;
    let s = mallory.expect_status().await;
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    // Alice never sees the forged message, only mallory's leave.
    let m = alice.expect_msg().await;
    assert_eq!(m.kind, Kind::Leave as i32, "{m:?}");
    assert_eq!(m.subject, "mallory");

    let mut eve = server.join("eve").await;
    eve.leave_as("alice").await;
    assert_eq!(eve.expect_status().await.code(), Code::PermissionDenied);
    let m = alice.until(|m| m.kind == Kind::Leave as i32).await;
    assert_eq!(m.subject, "eve", "alice is still in");

    // An empty username on a message means "me".
    alice.say_as("", "still here").await;
    let m = alice.expect_msg().await;
    assert_eq!(
        (m.username.as_str(), m.message.as_str()),
        ("alice", "still here")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_text_is_refused_privately_and_the_session_continues() {
    let server = start_default().await;
    let mut alice = server.join("alice").await;
    let mut bob = server.join("bob").await;
    alice.until_joined("bob").await;

    let cases = [
        (String::new(), "empty"),
        ("x".repeat(129), "too long"),
        ("\u{1b}[2J wipe your screen".to_owned(), "control character"),
    ];
    for (text, why) in &cases {
        alice.say_as("alice", text).await;
        let m = alice.expect_msg().await;
        assert_eq!(m.kind, Kind::Error as i32, "{m:?}");
        assert_eq!(m.username, "SERVER");
        assert!(m.message.contains(why), "{why}: {m:?}");
    }
    // 128 characters of several bytes each are fine.
    let long = "é".repeat(128);
    alice.say_as("alice", &long).await;
    let m = bob.expect_msg().await;
    assert_eq!(
        m.message, long,
        "bob saw nothing of the refused ones, then this"
    );
    let m = alice.expect_msg().await;
    assert_eq!(m.message, long);
    assert_eq!(
        server
            .hub
            .stats()
            .rejected
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_frames_are_refused_without_disturbing_others() {
    let server = start(ServerConfig {
        max_frame: 1024,
        ..chitty_testkit::config()
    })
    .await;
    let mut alice = server.join("alice").await;
    let mut big = server.join("big").await;
    alice.until_joined("big").await;
    big.say_as("big", &"y".repeat(4000)).await;
    let s = big.expect_status().await;
    assert_eq!(s.code(), Code::OutOfRange, "{s:?}");
    let m = alice.expect_msg().await;
    assert_eq!(m.message, left("big", m.timestamp));
    alice.say_as("alice", "still works").await;
    assert_eq!(alice.expect_msg().await.message, "still works");
    server.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_leaves_exactly_once() {
    let server = start_default().await;
    let mut alice = server.join("alice").await;
    let bob = server.join("bob").await;
    alice.until_joined("bob").await;
    drop(bob); // the client goes away without a leave: the call is cancelled
    let m = alice.expect_msg().await;
    assert_eq!(m.message, left("bob", m.timestamp));

    let mut carol = server.join("carol").await;
    alice.until_joined("carol").await;
    // Half-close without a leave: the stream ends, which is a leave too.
    carol.tx = None;
    carol.expect_clean_end().await;
    let m = alice.expect_msg().await;
    assert_eq!(m.message, left("carol", m.timestamp));

    // No second notice for either arrives: the next thing alice sees is her own message.
    alice.say_as("alice", "anyone?").await;
    assert_eq!(alice.expect_msg().await.message, "anyone?");
    // And the name is free again.
    server.join("bob").await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_roster_lists_who_is_online_to_the_asker_alone() {
    let mut config = chitty_testkit::config();
    config.hub.rate = Some(chitty::hub::RateLimit {
        per_second: 2.0,
        burst: 7,
        flood: 30,
    });
    let server = start(config).await;
    let mut alice = server.open().await;
    alice.send_join("alice").await;
    // The welcome says how fast alice may send, so a client can pace itself.
    let info = alice.expect_msg().await.server.expect("server info");
    assert_eq!(
        (info.rate_per_second, info.rate_burst, info.flood_limit),
        (2.0, 7, 30)
    );
    alice.id = alice.until_joined("alice").await.sender_id;
    let mut bob = server.join("bob").await;
    alice.until_joined("bob").await;
    let anon = server.ws("").await;

    alice
        .send(Some(pb::chat_event::Event::Roster(
            pb::chat_event::RosterRequest {},
        )))
        .await;
    let r = alice.expect_msg().await;
    assert_eq!(r.kind, Kind::Roster as i32);
    let listed: Vec<_> = r
        .roster
        .iter()
        .map(|p| (p.id, p.username.as_str(), p.transport.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            (alice.id, "alice", "grpc"),
            (bob.id, "bob", "grpc"),
            (anon.id, "", "websocket")
        ],
        "every session, in id order, with nothing operator-only"
    );
    assert_eq!(r.participants, 2, "the room: alice and bob");
    // Only alice asked: bob's next message is his own.
    bob.say_as("bob", "hi").await;
    assert_eq!(bob.expect_msg().await.message, "hi");
    server.shutdown().await;
}
