//! HTTP/1.1 written by hand on a plain TCP socket: what no client library sends, or only the
//! bytes a test wants to look at.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A one-off GET of `path` with `headers` (each ending in CRLF) added; the whole response.
pub async fn get(addr: SocketAddr, path: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Asks to upgrade `path` (with its query) to WebSocket, as a browser would, on `s`; returns
/// the response head, up to its blank line (or what came before the server closed).
pub async fn upgrade(s: &mut TcpStream, path: &str) -> String {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Byte by byte: nothing after the head (the first WebSocket frames) is taken from `s`.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0; 1];
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A WebSocket connection on a socket the test controls completely: the handshake done by hand
/// for `path` (e.g. `"/?username=ghost"`), nothing read beyond it. `recv_buffer` sets the
/// socket's receive buffer, for a client that stalls the server's writes.
pub async fn websocket(addr: SocketAddr, path: &str, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let mut s = socket.connect(addr).await.unwrap();
    let head = upgrade(&mut s, path).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}
