//! A WebSocket user through a real WebSocket client library (tokio-tungstenite), for chittyd
//! in-process and as a process alike.

use crate::PATIENCE;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::fmt::Display;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket client connection (tokio-tungstenite).
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket user: its connection, its id, and the last timestamp it received (every frame's
/// must be higher).
pub struct WsUser {
    /// The connection, for what the methods do not cover (fragments, pings, closing).
    pub ws: Ws,
    /// The user's id, from its first frame.
    pub id: u64,
    last_ts: u64,
}

impl WsUser {
    /// Connects to `ws://ADDR/QUERY` and reads the first frame, which is always the welcome
    /// with the user's id; with `"?username=NAME"` also the user's own join notice after it.
    pub async fn connect(addr: impl Display, query: &str) -> WsUser {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/{query}"))
            .await
            .expect("WebSocket handshake");
        let mut user = WsUser {
            ws,
            id: 0,
            last_ts: 0,
        };
        let welcome = user.recv().await;
        assert_eq!(welcome["kind"], "welcome", "{welcome}");
        user.id = welcome["user_id"]
            .as_u64()
            .expect("the welcome names the user's id");
        if !query.is_empty() {
            let join = user.recv().await;
            assert_eq!(join["kind"], "join", "{join}");
            assert_eq!(join["sender_id"], user.id, "{join}");
        }
        user
    }

    /// Sends `v` as a text frame.
    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next JSON frame; checks that timestamps strictly increase.
    pub async fn recv(&mut self) -> Value {
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

    /// Reads frames until one satisfies `pred`, and returns it.
    pub async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.recv().await;
            if pred(&v) {
                return v;
            }
        }
    }

    /// Waits for the close frame; returns its code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
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
