//! The wire: HTTP on the chat port, handshakes broken in every way, RFC 6455 fragments, pings
//! and the close handshake, frames over the limit, and frames the RFC forbids, each answered with
//! the fitting status or close code.

use crate::shutdown_lingering;
use chitty_testkit::time::HeldClock;
use chitty_testkit::{Bystanders, PATIENCE, config, http, start, start_default};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn http_on_the_chat_port() {
    let server = start_default().await;
    let upgrade = async |path: &str| {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        http::upgrade(&mut s, path).await
    };
    assert!(
        upgrade("/elsewhere").await.starts_with("HTTP/1.1 404"),
        "upgrades elsewhere are 404"
    );
    assert!(upgrade("/").await.starts_with("HTTP/1.1 101"));
    let page = http::get(server.addr, "/", "").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("chittyd chat port"), "{page}");
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn fragmented_messages_pings_and_the_close_handshake_follow_the_rfc() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let clock = HeldClock::hold();
    let server = start_default().await;
    let mut one = server.ws("").await;
    let mut two = server.ws("").await;
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
    assert_eq!(one.recv().await, got, "the sender's copy");

    // The client closes: the server answers with its own close frame and ends the connection.
    one.ws.close(None).await.unwrap();
    let reply = tokio::time::timeout(PATIENCE, one.ws.next()).await.unwrap();
    assert!(
        matches!(reply, Some(Ok(Message::Close(Some(ref f)))) if u16::from(f.code) == 1000),
        "{reply:?}"
    );
    let end = tokio::time::timeout(PATIENCE, one.ws.next()).await.unwrap();
    assert!(end.is_none(), "{end:?}");
    shutdown_lingering(server, clock).await;
}

#[tokio::test]
async fn broken_handshakes_get_an_http_error_that_says_what_is_wrong() {
    let server = start_default().await;
    let handshake = |headers: &'static str| http::get(server.addr, "/", headers);
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

#[tokio::test(start_paused = true)]
async fn an_oversized_frame_closes_with_1009() {
    let clock = HeldClock::hold();
    let server = start_default().await;
    let mut big = server.ws("").await;
    let mut other = server.ws("").await;
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
    shutdown_lingering(server, clock).await;
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
                // Server frames are unmasked; a length of 126 is followed by 16 bits of length.
                let (len, header) = match buf[at + 1] & 0x7f {
                    126 if at + 4 <= buf.len() => {
                        (u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize, 4)
                    }
                    126 => break,
                    short => (short as usize, 2),
                };
                if buf[at] == 0x88 && at + 4 <= buf.len() {
                    return u16::from_be_bytes([buf[at + 2], buf[at + 3]]);
                }
                at += header + len;
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
    let server = start(config()).await;
    let mut chat = Bystanders::join(&server).await;
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
        let mut s = http::websocket(server.addr, "/", None).await;
        s.write_all(&frame).await.unwrap();
        assert_eq!(close_code(&mut s).await, want, "{what}");
        // The server shuts its side after the close frame.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut rest)).await;
    }
    chat.still_chat(2).await;
    server.shutdown().await;
}
