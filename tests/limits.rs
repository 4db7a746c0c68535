//! Hostile clients against the hub's limits, each while well-behaved clients keep chatting: a
//! message flood (rate limit, then disconnect), a stream that never joins, a WebSocket peer that
//! stops answering, a raw socket with a tiny receive buffer that never reads, and a WebSocket
//! text frame that is not UTF-8. Each attacker is refused or cut off with its reason; the others'
//! messages all arrive, in order.

mod common;

use chitty::hub::RateLimit;
use chitty::pb::chat_message::Kind;
use chitty::server::ServerConfig;
use common::{PATIENCE, Raw, TestServer, start};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

/// Alice and bob chat `n` messages and each sees all of them, in order.
async fn others_still_chat(alice: &mut Raw, bob: &mut Raw, n: usize) {
    for i in 0..n {
        alice.say_as("alice", &format!("still fine {i}")).await;
        let m = bob
            .until(|m| m.kind == Kind::Message as i32 && m.username == "alice")
            .await;
        assert_eq!(m.message, format!("still fine {i}"));
    }
}

async fn pair(server: &TestServer) -> (Raw, Raw) {
    let mut alice = server.join("alice").await;
    let bob = server.join("bob").await;
    alice.until_joined("bob").await;
    (alice, bob)
}

#[tokio::test]
async fn a_flood_is_rate_limited_then_disconnected() {
    let mut config = common::config();
    config.hub.rate = Some(RateLimit {
        per_second: 1.0,
        burst: 3,
        flood: 20,
    });
    let server = start(config).await;
    let (mut alice, mut bob) = pair(&server).await;
    let mut flooder = server.join("flooder").await;
    bob.until_joined("flooder").await;
    for i in 0..40 {
        flooder.say_as("flooder", &format!("spam {i}")).await;
    }
    // The burst goes through; then private refusals; then the cut-off (which drops whatever
    // was still queued for the flooder).
    let status = loop {
        match flooder.next().await {
            Ok(Some(m)) if m.kind == Kind::Error as i32 => {
                assert!(m.message.starts_with("rate limit"), "{m:?}");
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the flooder's stream ended cleanly"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("flooding"), "{status:?}");
    // Bob saw exactly the burst, then the flooder's leave.
    let mut spam = 0;
    loop {
        let m = bob.expect_msg().await;
        if m.kind == Kind::Leave as i32 {
            assert_eq!(m.subject, "flooder");
            break;
        }
        assert_eq!(m.message, format!("spam {spam}"));
        spam += 1;
    }
    assert_eq!(spam, 3);
    let stats = server.hub.stats();
    assert_eq!(stats.flood_disconnects.load(Relaxed), 1);
    assert_eq!(stats.rate_limited.load(Relaxed), 20);
    // Alice's and bob's own bursts are theirs; they are unaffected.
    others_still_chat(&mut alice, &mut bob, 3).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_stream_that_never_joins_is_closed() {
    let mut config = common::config();
    config.hub.join_deadline = Duration::from_millis(300);
    let server = start(config).await;
    let (mut alice, mut bob) = pair(&server).await;
    let mut lurker = server.open().await;
    let status = lurker.expect_status().await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("no join"), "{status:?}");
    assert_eq!(server.hub.stats().join_timeouts.load(Relaxed), 1);
    others_still_chat(&mut alice, &mut bob, 2).await;
    server.shutdown().await;
}

/// A raw WebSocket handshake on a socket the test controls completely.
async fn raw_websocket(server: &TestServer, query: &str, recv_buffer: Option<u32>) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let mut s = socket.connect(server.addr).await.unwrap();
    let req = format!(
        "GET /{query} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0; 1];
        assert_eq!(
            s.read(&mut b).await.unwrap(),
            1,
            "closed during the handshake"
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[tokio::test]
async fn a_websocket_peer_that_stops_answering_pings_leaves() {
    let mut config = common::config();
    config.hub.keepalive = Duration::from_millis(100);
    let server = start(config).await;
    let (mut alice, mut bob) = pair(&server).await;
    // The socket joins the room and then never reads or writes again: no pongs.
    let _silent = raw_websocket(&server, "?username=ghost", None).await;
    alice.until_joined("ghost").await;
    let m = alice
        .until(|m| m.kind == Kind::Leave as i32 && m.subject == "ghost")
        .await;
    assert!(
        m.message.starts_with("Participant ghost left Chitty-Chat"),
        "{m:?}"
    );
    // A well-behaved WebSocket client answers pings (tungstenite does) and stays.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/?username=carol", server.addr))
            .await
            .unwrap();
    alice.until_joined("carol").await;
    // Several keepalive periods pass while carol keeps reading: she is still in the room.
    use futures_util::StreamExt;
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
    others_still_chat(&mut alice, &mut bob, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        server.hub.users().iter().any(|u| u.name == "carol"),
        "carol was dropped"
    );
    reader.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn a_raw_socket_that_never_reads_is_cut_off_and_others_keep_their_pace() {
    const BACKLOG: usize = 128;
    let server = start(ServerConfig {
        hub: chitty::hub::HubConfig {
            backlog: BACKLOG,
            ..common::config().hub
        },
        ..common::config()
    })
    .await;
    let (mut alice, mut bob) = pair(&server).await;
    // A 4 KiB receive buffer that is never read: the server's writes stall, its outbox fills.
    let _stuck = raw_websocket(&server, "?username=stuck", Some(4096)).await;
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
    server.shutdown().await;
}

/// A client frame: `first` is the FIN bit, reserved bits and opcode; the payload is masked.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    assert!(payload.len() < 126);
    let mut frame = vec![first, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads server frames until the close frame; returns its code.
async fn close_code(s: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        loop {
            let mut at = 0;
            while at + 2 <= buf.len() {
                let len = (buf[at + 1] & 0x7f) as usize;
                if buf[at] == 0x88 && at + 4 <= buf.len() {
                    return u16::from_be_bytes([buf[at + 2], buf[at + 3]]);
                }
                at += 2 + len;
            }
            let mut chunk = [0; 512];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed without a close frame: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("no close frame")
}

#[tokio::test]
async fn frames_the_websocket_rfc_forbids_close_with_the_fitting_code() {
    let server = start(common::config()).await;
    let (mut alice, mut bob) = pair(&server).await;
    let unmasked = {
        let mut f = masked(0x81, b"{}");
        f[1] &= 0x7f;
        f.drain(2..6);
        f
    };
    let cases: [(&str, Vec<u8>, u16); 7] = [
        (
            "text that is not UTF-8",
            masked(0x81, &[0xff, 0xfe, 0xfd]),
            1007,
        ),
        ("an unmasked frame", unmasked, 1002),
        ("a reserved bit", masked(0xC1, b"{}"), 1002),
        ("a reserved opcode", masked(0x83, b""), 1002),
        ("a fragmented ping", masked(0x09, b""), 1002),
        ("a continuation of nothing", masked(0x80, b"x"), 1002),
        (
            "a close code nobody may send",
            masked(0x88, &1005u16.to_be_bytes()),
            1002,
        ),
    ];
    for (what, frame, want) in cases {
        let mut s = raw_websocket(&server, "", None).await;
        s.write_all(&frame).await.unwrap();
        assert_eq!(close_code(&mut s).await, want, "{what}");
        // The server shuts its side after the close frame.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut rest)).await;
    }
    others_still_chat(&mut alice, &mut bob, 2).await;
    server.shutdown().await;
}
