//! The WebSocket gateway: a real WebSocket client library (tokio-tungstenite) against chittyd,
//! alone and together with gRPC participants on the same hub and the same port.

mod common;

use chitty::pb::{chat_event, chat_message::Kind};
use chitty::server::ServerConfig;
use chitty::server::limits::ConnLimits;
use common::{PATIENCE, TestServer, start, start_default};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use common::Ws;

struct WsUser {
    ws: Ws,
    id: u64,
    last_ts: u64,
}

impl WsUser {
    async fn connect(server: &TestServer, query: &str) -> WsUser {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/{query}", server.addr))
            .await
            .expect("WebSocket handshake");
        let mut user = WsUser {
            ws,
            id: 0,
            last_ts: 0,
        };
        if query.is_empty() {
            let welcome = user.recv().await;
            assert_eq!(welcome["kind"], "welcome", "{welcome}");
            user.id = welcome["user_id"].as_u64().unwrap();
        } else {
            let join = user.recv().await;
            assert_eq!(join["kind"], "join", "{join}");
            user.id = join["sender_id"].as_u64().unwrap();
        }
        user
    }

    async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next JSON frame; checks that timestamps strictly increase.
    async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("socket closed")
                .expect("socket error");
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("server frames are JSON");
                    if let Some(ts) = v["timestamp"].as_u64() {
                        assert!(
                            ts > self.last_ts,
                            "timestamps went {} -> {ts}",
                            self.last_ts
                        );
                        self.last_ts = ts;
                    }
                    return v;
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.recv().await;
            if pred(&v) {
                return v;
            }
        }
    }

    /// Waits for the close frame; returns its code and reason.
    async fn closed(&mut self) -> (u16, String) {
        loop {
            match tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("no close")
            {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (frame.code.into(), frame.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None => panic!("closed without a reason"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error before the close frame: {e}"),
            }
        }
    }
}

#[tokio::test]
async fn ids_in_order_and_direct_messages_with_the_basic_fields() {
    let server = start_default().await;
    let mut one = WsUser::connect(&server, "").await;
    let mut two = WsUser::connect(&server, "").await;
    assert_eq!((one.id, two.id), (1, 2), "one sequence starting at 1");
    one.send(json!({"recipient_id": 2, "message": "Go Braves!"}))
        .await;
    let got = two.recv().await;
    assert_eq!(got["sender_id"], 1);
    assert_eq!(got["message"], "Go Braves!");
    assert_eq!(got["kind"], "direct");
    assert_eq!(got["recipient_id"], 2);
    assert!(got["timestamp"].as_u64().unwrap() > 0);
    two.send(json!({"recipient_id": 1, "message": "Go Mets!"}))
        .await;
    let got = one.recv().await;
    assert_eq!(
        (got["sender_id"].as_u64(), got["message"].as_str()),
        (Some(2), Some("Go Mets!"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_recipients_and_bad_input_get_error_frames_and_the_socket_stays_open() {
    let server = start_default().await;
    let mut one = WsUser::connect(&server, "").await;
    let mut two = WsUser::connect(&server, "").await;

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
    server.shutdown().await;
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let server = start_default().await;
    let mut big = WsUser::connect(&server, "").await;
    let mut other = WsUser::connect(&server, "").await;
    big.send(json!({"recipient_id": other.id, "message": "x".repeat(10_000)}))
        .await;
    let (code, reason) = big.closed().await;
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains("too large"), "{reason}");
    // The other user is unaffected, and the id is gone.
    other
        .send(json!({"recipient_id": big.id, "message": "hello?"}))
        .await;
    let e = other.recv().await;
    assert_eq!(e["error"], format!("user {} is not connected", big.id));
    server.shutdown().await;
}

#[tokio::test]
async fn direct_messages_cross_transports_both_ways() {
    let server = start_default().await;
    let mut alice = server.join("alice").await; // gRPC
    let mut ws = WsUser::connect(&server, "").await;
    assert!(ws.id > alice.id, "one sequence across transports");

    ws.send(json!({"recipient_id": alice.id, "message": "hi from the browser"}))
        .await;
    let m = alice.until(|m| m.kind == Kind::Direct as i32).await;
    assert_eq!(m.sender_id, ws.id);
    assert_eq!(m.recipient_id, alice.id);
    assert_eq!(m.message, "hi from the browser");

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
    // A direct message is not a broadcast: alice did not get her own.
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
    server.shutdown().await;
}

#[tokio::test]
async fn a_websocket_user_with_a_username_is_in_the_room() {
    let server = start_default().await;
    let mut alice = server.join("alice").await;
    let mut carol = WsUser::connect(&server, "?username=carol").await;
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

#[tokio::test]
async fn each_recipient_sees_strictly_increasing_timestamps_across_broadcasts_and_directs() {
    let server = start_default().await;
    let mut carol = WsUser::connect(&server, "?username=carol").await;
    let mut senders = Vec::new();
    for i in 0..3 {
        senders.push(server.join(&format!("g{i}")).await);
    }
    let mut dm = WsUser::connect(&server, "").await;
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
    server.shutdown().await;
}

#[tokio::test]
async fn http_on_the_chat_port() {
    let server = start_default().await;
    let get = |path: &'static str| {
        let addr = server.addr;
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = TcpStream::connect(addr).await.unwrap();
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut buf = vec![0; 2048];
            let n = s.read(&mut buf).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        }
    };
    assert!(
        get("/elsewhere").await.starts_with("HTTP/1.1 404"),
        "upgrades elsewhere are 404"
    );
    assert!(get("/").await.starts_with("HTTP/1.1 101"));
    let page = http_get(server.addr, "/", "").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("chittyd chat port"), "{page}");
    server.shutdown().await;
}

/// A one-off HTTP/1.1 GET with `headers` (each ending in CRLF) added; the whole response.
async fn http_get(addr: std::net::SocketAddr, path: &str, headers: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn disconnecting_frees_the_id() {
    let server = start_default().await;
    let mut one = WsUser::connect(&server, "").await;
    let two = WsUser::connect(&server, "").await;
    let gone = two.id;
    drop(two);
    // The drop is noticed asynchronously; retry until the hub reports it.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        one.send(json!({"recipient_id": gone, "message": "there?"}))
            .await;
        let v = one.recv().await;
        if v["error"] == format!("user {gone} is not connected") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "id {gone} still reachable"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(server.hub.users().len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_waits_for_every_websocket_user_to_get_the_notice_and_a_close() {
    let server = start_default().await;
    let mut carol = WsUser::connect(&server, "?username=carol").await;
    let mut dm = WsUser::connect(&server, "").await;
    assert_eq!(server.edge.open_connections.load(Relaxed), 2);
    server.stop.cancel();
    // Neither user has read anything or answered the close yet, so the server is still waiting
    // for them: their connections are its own, like any other.
    let mut task = server.task;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut task)
            .await
            .is_err(),
        "chittyd stopped before its WebSocket users had their close"
    );
    assert_eq!(server.edge.open_connections.load(Relaxed), 2);
    for user in [&mut carol, &mut dm] {
        let last = user.until(|v| v["kind"] != "join").await;
        assert_eq!(last["kind"], "shutdown", "{last}");
        assert!(last["message"].as_str().unwrap().contains("shutting down"));
        assert_eq!(user.closed().await, (1000, "bye".to_owned()));
        // Reading on sends the client's close in reply, which ends the server's side.
        assert!(user.ws.next().await.is_none());
    }
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
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
        ..common::config()
    })
    .await;
    let mut one = WsUser::connect(&server, "?username=one").await;
    let two = WsUser::connect(&server, "").await;
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
    tokio::time::timeout(PATIENCE, async {
        while server.edge.open_connections.load(Relaxed) != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the closed connection still counts");
    let three = WsUser::connect(&server, "?username=three").await;
    assert_eq!(server.edge.open_connections.load(Relaxed), 2);
    drop((two, three));
    server.shutdown().await;
}

#[tokio::test]
async fn fragmented_messages_pings_and_the_close_handshake_follow_the_rfc() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = start_default().await;
    let mut one = WsUser::connect(&server, "").await;
    let mut two = WsUser::connect(&server, "").await;
    // One text message in three fragments, cut inside a character, with a ping between them.
    let text = json!({"recipient_id": two.id, "message": "frägmented"}).to_string();
    let cut = text.find('ä').unwrap() + 1;
    let pieces = [
        &text.as_bytes()[..10],
        &text.as_bytes()[10..cut],
        &text.as_bytes()[cut..],
    ];
    let fragment = |piece: &[u8], opcode: Data, fin: bool| {
        Message::Frame(Frame::message(piece.to_vec(), OpCode::Data(opcode), fin))
    };
    for msg in [
        fragment(pieces[0], Data::Text, false),
        Message::Ping("are you there".into()),
        fragment(pieces[1], Data::Continue, false),
        fragment(pieces[2], Data::Continue, true),
    ] {
        one.ws.send(msg).await.unwrap();
    }
    let pong = tokio::time::timeout(PATIENCE, one.ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong("are you there".into()));
    let got = two.recv().await;
    assert_eq!(got["message"], "frägmented");
    assert_eq!(got["sender_id"], one.id);

    // The client closes: the server answers with its own close frame and ends the connection.
    one.ws.close(None).await.unwrap();
    let reply = tokio::time::timeout(PATIENCE, one.ws.next()).await.unwrap();
    assert!(
        matches!(reply, Some(Ok(Message::Close(Some(ref f)))) if u16::from(f.code) == 1000),
        "{reply:?}"
    );
    let end = tokio::time::timeout(PATIENCE, one.ws.next()).await.unwrap();
    assert!(end.is_none(), "{end:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn broken_handshakes_get_an_http_error_that_says_what_is_wrong() {
    let server = start_default().await;
    let handshake = |headers: &'static str| http_get(server.addr, "/", headers);
    let old = handshake(
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    )
    .await;
    assert!(old.starts_with("HTTP/1.1 426"), "{old}");
    assert!(
        old.to_lowercase().contains("sec-websocket-version: 13"),
        "{old}"
    );
    assert!(old.contains("version 13"), "{old}");
    let keyless =
        handshake("Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n")
            .await;
    assert!(keyless.starts_with("HTTP/1.1 400"), "{keyless}");
    assert!(keyless.contains("Sec-WebSocket-Key"), "{keyless}");
    let no_connection = handshake(
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    )
    .await;
    assert!(no_connection.starts_with("HTTP/1.1 400"), "{no_connection}");
    assert!(
        no_connection.contains("Connection: Upgrade"),
        "{no_connection}"
    );
    server.shutdown().await;
}
