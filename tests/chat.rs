//! The Chitty-Chat gRPC service end to end: real tonic clients over real sockets against chittyd
//! running in-process.

mod common;

use chitty::hub::HubConfig;
use chitty::pb::{self, chat_event, chat_message::Kind};
use chitty::server::ServerConfig;
use common::{PATIENCE, Raw, start, start_default};
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
    let m = alice.expect_msg().await;
    assert_eq!(m.username, "SERVER");
    assert_eq!(m.message, joined("alice", m.timestamp));
    assert_eq!(m.kind, Kind::Join as i32);
    assert_eq!(m.subject, "alice");
    assert!(
        m.sender_id > 0,
        "a participant learns its id from its own join notice"
    );
    assert_eq!(m.participants, 1);

    let mut bob = server.open().await;
    bob.send_join("bob").await;
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
        ..common::config()
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
async fn every_participant_sees_one_order_with_increasing_timestamps() {
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 150;
    const OBSERVERS: usize = 3;
    let server = start_default().await;
    let mut observers = Vec::new();
    for i in 0..OBSERVERS {
        observers.push(server.join(&format!("observer{i}")).await);
    }
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        senders.push(server.join(&format!("sender{i}")).await);
    }
    let total = SENDERS * PER_SENDER;
    let collect = |mut p: Raw| {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut last = 0;
            while seen.len() < total {
                let m = p.expect_msg().await;
                assert!(
                    m.timestamp > last,
                    "timestamps went {last} -> {}",
                    m.timestamp
                );
                last = m.timestamp;
                if m.kind == Kind::Message as i32 {
                    seen.push((m.timestamp, m.username, m.message));
                }
            }
            (p, seen)
        })
    };
    let mut tasks = Vec::new();
    for (i, mut s) in senders.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let name = format!("sender{i}");
            for n in 0..PER_SENDER {
                s.say_as(&name, &format!("{name} #{n}")).await;
                if n % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            s
        }));
    }
    let mut readers: Vec<_> = observers.into_iter().map(collect).collect();
    for t in tasks {
        readers.push(collect(t.await.unwrap()));
    }
    let mut orders = Vec::new();
    for r in readers {
        let (_p, seen) = r.await.unwrap();
        orders.push(seen);
    }
    for order in &orders[1..] {
        assert_eq!(order, &orders[0], "two participants saw different orders");
    }
    // Each sender's own messages stay in the order it sent them.
    for i in 0..SENDERS {
        let mine: Vec<_> = orders[0]
            .iter()
            .filter(|(_, u, _)| u == &format!("sender{i}"))
            .map(|(_, _, t)| t.clone())
            .collect();
        let expected: Vec<_> = (0..PER_SENDER).map(|n| format!("sender{i} #{n}")).collect();
        assert_eq!(mine, expected);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_and_the_others_keep_going() {
    const BACKLOG: usize = 256;
    let server = start(ServerConfig {
        hub: HubConfig {
            backlog: BACKLOG,
            ..common::config().hub
        },
        ..common::config()
    })
    .await;
    // The slow client has tiny HTTP/2 windows, so its transport stops pulling after a few frames
    // and its outbox fills.
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .initial_stream_window_size(Some(1024))
        .initial_connection_window_size(Some(1024))
        .connect()
        .await
        .unwrap();
    let mut client = pb::chat_client::ChatClient::new(channel);
    let (slow_tx, rx) = tokio::sync::mpsc::channel(8);
    let mut slow_rx = client
        .broadcast(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    slow_tx
        .send(pb::ChatEvent {
            timestamp: 1,
            event: Some(chat_event::Event::Join(chat_event::UserJoin {
                username: "slow".into(),
            })),
        })
        .await
        .unwrap();

    let mut fast = server.join("fast").await;
    let mut talker = server.join("talker").await;
    fast.until_joined("talker").await;
    const MESSAGES: usize = 2048;
    // The talker sends in rounds and reads its own echo, so the well-behaved participants
    // never have more than a round waiting; only the slow one falls behind.
    let sender = tokio::spawn(async move {
        for round in 0..MESSAGES / 32 {
            for n in round * 32..(round + 1) * 32 {
                talker.say_as("talker", &format!("message {n}")).await;
            }
            let last = format!("message {}", (round + 1) * 32 - 1);
            talker.until(|m| m.message == last).await;
        }
        talker
    });
    let mut got = 0;
    let mut saw_cutoff = false;
    while got < MESSAGES {
        let m = fast.expect_msg().await;
        match Kind::try_from(m.kind) {
            Ok(Kind::Message) => {
                assert_eq!(
                    m.message,
                    format!("message {got}"),
                    "nothing lost, in order"
                );
                got += 1;
            }
            Ok(Kind::Leave) => {
                assert_eq!(m.subject, "slow");
                assert!(m.message.contains("too slow"), "{m:?}");
                saw_cutoff = true;
            }
            _ => panic!("unexpected {m:?}"),
        }
    }
    assert!(saw_cutoff, "the slow consumer's leave was announced");
    let _talker = sender.await.unwrap();
    let stats = server.hub.stats();
    assert_eq!(
        stats
            .slow_consumers
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Bounded memory: nobody has more than the backlog waiting, and the slow one is gone.
    let users = server.hub.users();
    assert!(users.iter().all(|u| u.name != "slow"));
    assert!(users.iter().all(|u| u.backlog <= BACKLOG));

    // When the slow client finally reads, it gets what fit in its window, then the reason.
    let status = loop {
        match tokio::time::timeout(PATIENCE, slow_rx.message())
            .await
            .unwrap()
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("expected RESOURCE_EXHAUSTED"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("slow consumer"), "{status:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_tells_everyone_and_ends_streams_cleanly() {
    let server = start(ServerConfig {
        shutdown_grace: Duration::from_secs(3),
        ..common::config()
    })
    .await;
    let mut alice = server.join("alice").await;
    let mut bob = server.join("bob").await;
    alice.until_joined("bob").await;
    let addr = server.url();
    let started = std::time::Instant::now();
    server.stop.cancel();
    for p in [&mut alice, &mut bob] {
        let rest = p.expect_clean_end().await;
        let last = rest.last().expect("a shutdown notice");
        assert_eq!(last.username, "SERVER");
        assert_eq!(last.kind, Kind::Shutdown as i32);
        assert!(last.message.contains("shutting down"), "{last:?}");
    }
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no need to wait out the grace"
    );
    // The port is closed.
    assert!(pb::chat_client::ChatClient::connect(addr).await.is_err());
}

#[tokio::test]
async fn shutdown_is_bounded_even_when_a_client_never_reads() {
    let server = start(ServerConfig {
        shutdown_grace: Duration::from_millis(500),
        ..common::config()
    })
    .await;
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .initial_stream_window_size(Some(256))
        .initial_connection_window_size(Some(256))
        .connect()
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let _stuck = pb::chat_client::ChatClient::new(channel)
        .broadcast(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap();
    tx.send(pb::ChatEvent {
        timestamp: 1,
        event: Some(chat_event::Event::Join(chat_event::UserJoin {
            username: "stuck".into(),
        })),
    })
    .await
    .unwrap();
    let mut talker = server.join("talker").await;
    for n in 0..200 {
        talker
            .say_as("talker", &format!("filling the window {n}"))
            .await;
    }
    talker
        .until(|m| m.message == "filling the window 199")
        .await;
    let started = std::time::Instant::now();
    server.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn every_event_kind_is_audited_in_lamport_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let server = start(ServerConfig {
        audit: chitty::audit::AuditConfig {
            file: Some(path.clone()),
            journal: false,
            text: true,
            queue: 1024,
        },
        ..common::config()
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

    let records: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
