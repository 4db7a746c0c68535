//! A WebSocket connection's life as the edge owns it: counted against its address, waited for
//! at shutdown, pinged when quiet and dropped when dead, and cut off when it stops reading.

use crate::shutdown_lingering;
use chitty::pb::chat_message::Kind;
use chitty::server::ServerConfig;
use chitty::server::limits::ConnLimits;
use chitty_testkit::time::{HeldClock, TICK, until_count, wait_until};
use chitty_testkit::{Bystanders, PATIENCE, config, http, start, start_default};
use futures_util::StreamExt;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_every_websocket_user_to_get_the_notice_and_a_close() {
    let clock = HeldClock::hold();
    let server = start_default().await;
    let mut carol = server.ws("?username=carol").await;
    let mut dm = server.ws("").await;
    assert_eq!(server.edge.open_connections.load(Relaxed), 2);
    server.stop.cancel();
    // Neither user has read anything or answered the close yet, so the server is still waiting
    // for them: their connections are its own, like any other. Released, the clock runs to the
    // timeout as soon as the server has nothing left to do but wait.
    let mut task = server.task;
    clock.release();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut task)
            .await
            .is_err(),
        "chittyd stopped before its WebSocket users had their close"
    );
    // Held again while the users read and answer: no linger runs out meanwhile.
    let clock = HeldClock::hold();
    assert_eq!(server.edge.open_connections.load(Relaxed), 2);
    for user in [&mut carol, &mut dm] {
        let last = user.until(|v| v["kind"] != "join").await;
        assert_eq!(last["kind"], "shutdown", "{last}");
        assert!(last["message"].as_str().unwrap().contains("shutting down"));
        assert_eq!(user.closed().await, (1000, "bye".to_owned()));
        // Reading on sends the client's close in reply, which ends the client's side.
        assert!(user.ws.next().await.is_none());
    }
    // The client's close ends the server's side at once (RFC 6455, 7.1.1): with the clock
    // still held, the 2 s linger cannot be what ends it.
    wait_until("chittyd stopped once the users answered", || {
        task.is_finished()
    })
    .await;
    drop(clock);
    task.await.unwrap();
    assert_eq!(server.edge.open_connections.load(Relaxed), 0);
}

#[tokio::test]
async fn websocket_connections_count_against_the_per_address_limit() {
    let server = start(ServerConfig {
        limits: ConnLimits {
            max_per_ip: 2,
            new_per_ip: 0,
            window: Duration::from_secs(1),
        },
        ..config()
    })
    .await;
    let mut one = server.ws("?username=one").await;
    let two = server.ws("").await;
    assert_eq!(server.edge.open_connections.load(Relaxed), 2);
    let third = tokio_tungstenite::connect_async(format!("ws://{}/", server.addr)).await;
    assert!(
        third.is_err(),
        "a third connection from one address got through"
    );
    assert_eq!(server.edge.refused_open_per_ip.load(Relaxed), 1);

    // A user that leaves frees its place once its connection has closed.
    one.ws.close(None).await.unwrap();
    while one.ws.next().await.is_some() {}
    until_count(&server.edge.open_connections, 1).await;
    let three = server.ws("?username=three").await;
    assert_eq!(server.edge.open_connections.load(Relaxed), 2);
    drop((two, three));
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_websocket_peer_that_stops_answering_pings_leaves() {
    const KEEPALIVE: Duration = Duration::from_millis(100);
    // Held while the sockets work: the keepalive periods pass when the test says so, and only
    // once each ping has been answered.
    let _clock = HeldClock::hold();
    let mut config = config();
    config.hub.keepalive = KEEPALIVE;
    let server = start(config).await;
    let mut chat = Bystanders::join(&server).await;
    // The socket joins the room and then never reads or writes again: no pongs.
    let _silent = http::websocket(server.addr, "/?username=ghost", None).await;
    chat.alice.until_joined("ghost").await;
    // Silent through two whole periods (two pings unanswered), it is gone at the third tick.
    tokio::time::advance(3 * KEEPALIVE + TICK).await;
    let m = chat
        .alice
        .until(|m| m.kind == Kind::Leave as i32 && m.subject == "ghost")
        .await;
    assert!(
        m.message.starts_with("Participant ghost left Chitty-Chat"),
        "{m:?}"
    );
    // A well-behaved WebSocket client answers pings (tungstenite does, as it reads on) and
    // stays. The reader tells the test of every ping it answered.
    let mut carol = server.ws("?username=carol").await;
    chat.alice.until_joined("carol").await;
    let (pinged, mut pings) = tokio::sync::mpsc::channel(8);
    let reader = tokio::spawn(async move {
        while let Some(Ok(frame)) = carol.ws.next().await {
            if frame.is_ping() && pinged.send(()).await.is_err() {
                break;
            }
        }
    });
    chat.still_chat(1).await;
    // Several keepalive periods pass, each once carol has answered the last ping: she is
    // still in the room.
    for period in 1..=5 {
        tokio::time::advance(KEEPALIVE + TICK).await;
        let ping = tokio::time::timeout(PATIENCE, pings.recv()).await;
        assert!(matches!(ping, Ok(Some(()))), "no ping in period {period}");
    }
    assert!(
        server.hub.users().iter().any(|u| u.name == "carol"),
        "carol was dropped"
    );
    reader.abort();
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_raw_socket_that_never_reads_is_cut_off_and_others_keep_their_pace() {
    const BACKLOG: usize = 128;
    let clock = HeldClock::hold();
    let server = start(ServerConfig {
        hub: chitty::hub::HubConfig {
            backlog: BACKLOG,
            ..config().hub
        },
        ..config()
    })
    .await;
    let mut alice = server.join("alice").await;
    let mut bob = server.join("bob").await;
    // A 4 KiB receive buffer that is never read: the server's writes stall, its outbox fills.
    let _stuck = http::websocket(server.addr, "/?username=stuck", Some(4096)).await;
    bob.until_joined("stuck").await;
    // Alice talks in rounds of 32 until the stuck reader is cut off (the kernel's socket
    // buffers take a few MiB first); bob must see every message, in order, all along.
    let mut cut = false;
    let mut round = 0;
    while !cut {
        assert!(round < 3000, "the stuck reader was never cut off");
        for i in 0..32 {
            alice
                .say_as("alice", &format!("{round}/{i} {}", "x".repeat(110)))
                .await;
        }
        for i in 0..32 {
            let m = bob
                .until(|m| {
                    if m.kind == Kind::Leave as i32 && m.subject == "stuck" {
                        assert!(m.message.contains("too slow"), "{m:?}");
                        return true;
                    }
                    m.kind == Kind::Message as i32
                })
                .await;
            if m.kind == Kind::Leave as i32 {
                cut = true;
                let m = bob.until(|m| m.kind == Kind::Message as i32).await;
                assert!(
                    m.message.starts_with(&format!("{round}/{i} ")),
                    "{}",
                    m.message
                );
            } else {
                assert!(
                    m.message.starts_with(&format!("{round}/{i} ")),
                    "{}",
                    m.message
                );
            }
        }
        let last = format!("{round}/31 ");
        alice.until(|m| m.message.starts_with(&last)).await;
        round += 1;
    }
    assert!(server.hub.users().iter().all(|u| u.backlog <= BACKLOG));
    assert_eq!(server.hub.stats().slow_consumers.load(Relaxed), 1);
    // Its close frame cannot be written: only the grace ends its connection.
    shutdown_lingering(server, clock).await;
}
