//! Shutdown with participants connected: everyone told, every stream ended cleanly, and the
//! grace bounding it when a client never reads. On paused time: the grace costs no wall time,
//! and what the tests say about it is exact.

use chitty::pb::{self, chat_event, chat_message::Kind};
use chitty::server::ServerConfig;
use chitty_testkit::time::{HeldClock, TICK};
use chitty_testkit::{PATIENCE, config, start};
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_tells_everyone_and_ends_streams_cleanly() {
    const GRACE: Duration = Duration::from_secs(3);
    // Held, time moves only if the test waits past the hold's limit: a shutdown that waited out
    // the grace would show as time passed.
    let _clock = HeldClock::hold();
    let server = start(ServerConfig {
        shutdown_grace: GRACE,
        ..config()
    })
    .await;
    let mut alice = server.join("alice").await;
    let mut bob = server.join("bob").await;
    alice.until_joined("bob").await;
    let addr = server.url();
    let started = tokio::time::Instant::now();
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
    assert!(started.elapsed() < GRACE, "no need to wait out the grace");
    // The port is closed.
    assert!(pb::chat_client::ChatClient::connect(addr).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn shutdown_is_bounded_even_when_a_client_never_reads() {
    const GRACE: Duration = Duration::from_millis(500);
    let clock = HeldClock::hold();
    let server = start(ServerConfig {
        shutdown_grace: GRACE,
        ..config()
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
    server.stop.cancel();
    // The talker's stream ends with the notice: the shutdown, and its grace, have begun.
    talker.expect_clean_end().await;
    let mut task = server.task;

    // The stuck client's window is full, so its stream cannot end: chittyd waits for it, however
    // long the runtime has nothing else to do (time runs to the timeout here)...
    clock.release();
    let early = tokio::time::timeout(GRACE - Duration::from_millis(100), &mut task).await;
    assert!(early.is_err(), "chittyd ended before the grace was out");
    // ...and no longer than the grace.
    let _clock = HeldClock::hold();
    tokio::time::advance(Duration::from_millis(100) + TICK).await;
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("chittyd did not end at the end of the grace")
        .unwrap();
}
