//! The WebSocket gateway: JSON text frames on the chat port, translated onto the hub.
//!
//! `ws://HOST:PORT/` gives a direct-message-only user (an id from the one sequence, announced in
//! a welcome frame); `/?username=NAME` joins the broadcast room as well. Clients send
//! `{"recipient_id": 2, "message": "…"}` (without `recipient_id`, room members broadcast) and
//! receive `{"sender_id": 1, "message": "…", …}` plus added fields (`kind`, `timestamp`,
//! `username`, …). Bad input gets a JSON error frame and the connection stays open; abuse
//! (oversized or non-UTF-8 frames) closes it with the fitting close code.

use crate::hub::outbox::{Ending, Taken};
use crate::hub::{Event, Hub, SessionError, SessionHandle, Transport};
use crate::server::ConnInfo;
use axum::extract::Query;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

/// A write that takes longer than this means the peer stopped reading; the connection is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a non-WebSocket GET on `/` gets.
const ABOUT: &str = "This is a chittyd chat port.\n\
    \n\
    It speaks gRPC (service chitty_chat.Chat, method Broadcast) and WebSocket.\n\
    WebSocket: connect to ws://HOST:PORT/ for direct messages, or ws://HOST:PORT/?username=NAME\n\
    to join the broadcast room as well. Send {\"recipient_id\": 2, \"message\": \"hello\"}; you\n\
    receive {\"sender_id\": 1, \"message\": \"hello\", ...}. Your own id arrives in a welcome frame.\n";

/// Query parameters of the upgrade request.
#[derive(Debug, Deserialize)]
pub struct Params {
    /// Join the broadcast room under this name.
    username: Option<String>,
}

/// The gateway's shared state.
#[derive(Clone)]
pub struct Gateway {
    hub: Arc<Hub>,
    max_frame: usize,
}

impl Gateway {
    /// A gateway onto `hub`; frames larger than `max_frame` bytes close the connection.
    pub fn new(hub: Arc<Hub>, max_frame: usize) -> Self {
        Gateway { hub, max_frame }
    }

    /// Handles `GET /`: an upgrade becomes a session, anything else gets a short explanation.
    pub async fn handle(
        self,
        query: Query<Params>,
        conn: Option<axum::Extension<ConnInfo>>,
        ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    ) -> Response {
        let ws = match ws {
            Ok(ws) => ws,
            Err(_) => return ABOUT.into_response(),
        };
        let peer = conn.map_or_else(|| "unknown".to_owned(), |c| c.0.peer.to_string());
        let username = query.0.username;
        ws.max_message_size(self.max_frame)
            .max_frame_size(self.max_frame)
            // A small read buffer: an idle user should cost a few KiB, and chat frames are small.
            // Writes are gathered up to 32 KiB before they go to the socket, so a busy room's
            // backlog leaves in a few system calls (an 8 KiB threshold cost a fifth more CPU per
            // delivery in the WebSocket room bench); the buffer grows only when a burst needs it.
            .read_buffer_size(4096)
            .write_buffer_size(32 * 1024)
            .max_write_buffer_size(256 * 1024)
            .on_upgrade(move |socket| serve(socket, self.hub, peer, username, self.max_frame))
    }
}

/// A client frame. Unknown fields are ignored so clients may add their own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Incoming<'a> {
    /// The recipient's user id; 0 or absent broadcasts (room members only).
    #[serde(default)]
    pub recipient_id: u64,
    /// The text (borrowed from the frame unless it had escapes to undo).
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    /// The sender's Lamport time, for clients that keep one.
    #[serde(default)]
    pub timestamp: u64,
}

/// Why a text frame is not a valid client frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// What was wrong, for the error frame.
    pub reason: String,
    /// The recipient the frame named, if it had a usable one.
    pub recipient: u64,
}

/// Parses one client text frame.
pub fn parse(text: &str) -> Result<Incoming<'_>, FrameError> {
    // serde would also take an array of the fields in order; the protocol has objects only.
    if let Some(first) = text.trim_start().chars().next()
        && first != '{'
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
    {
        return Err(FrameError {
            reason: "invalid frame: expected a JSON object like {\"recipient_id\": 2, \"message\": \"hi\"}".into(),
            recipient: 0,
        });
    }
    serde_json::from_str::<Incoming>(text).map_err(|e| {
        let recipient = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("recipient_id").and_then(serde_json::Value::as_u64))
            .unwrap_or(0);
        let reason = if e.is_syntax() || e.is_eof() {
            format!("malformed JSON: {e}")
        } else {
            format!("invalid frame: {e}")
        };
        FrameError { reason, recipient }
    })
}

/// One WebSocket user, from upgrade to close.
async fn serve(
    socket: WebSocket,
    hub: Arc<Hub>,
    peer: String,
    username: Option<String>,
    max_frame: usize,
) {
    let (outbox, mut reader) = hub.outbox(Transport::WebSocket);
    let mut session = SessionHandle::new(hub, Transport::WebSocket, peer, outbox);
    match &username {
        Some(name) => {
            session.handle(0, Event::Join { username: name });
        }
        None => {
            let _ = session.connect_direct();
        }
    }
    let (mut tx, mut rx) = socket.split();
    let mut batch = Vec::new();
    let mut reading = !session.is_ended();
    // Dead-peer detection: ping a quiet peer every `keepalive`; one that has sent nothing (not
    // even a pong) for twice that is gone, and its leave is announced.
    let keepalive = session_keepalive(&session);
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    // Pings sent since the peer was last heard from.
    let mut unanswered = 0u32;
    loop {
        tokio::select! {
            _ = pings.tick(), if reading => {
                // Silent through two whole intervals (two pings unanswered): gone.
                unanswered += 1;
                if unanswered > 2 {
                    reading = false;
                    session.violation(SessionError::DeadPeer);
                } else {
                    let ping = tx.send(Message::Ping(Default::default()));
                    if tokio::time::timeout(WRITE_TIMEOUT, ping).await.is_err() {
                        break;
                    }
                }
            }
            taken = reader.take(|frame| batch.push(frame.clone())) => match taken {
                Taken::Frames => {
                    let write = async {
                        for frame in batch.drain(..) {
                            // The hub's JSON is UTF-8 by construction.
                            if let Ok(text) = Utf8Bytes::try_from(frame) {
                                tx.feed(Message::Text(text)).await?;
                            }
                        }
                        tx.flush().await
                    };
                    if within_write_timeout(write).await.is_err() {
                        break;
                    }
                }
                Taken::Ended(ending) => {
                    let (code, reason) = close_of(&ending);
                    let close = Message::Close(Some(CloseFrame { code, reason: reason.into() }));
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, tx.send(close)).await;
                    break;
                }
            },
            msg = rx.next(), if reading => {
                unanswered = 0;
                match msg {
                Some(Ok(Message::Text(text))) => handle_text(&mut session, &text),
                Some(Ok(Message::Binary(_))) => {
                    session.handle(0, Event::Invalid {
                        reason: "binary frames are not supported: send JSON text frames",
                        recipient: 0,
                    });
                }
                // Pings are answered by the WebSocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => {
                    session.disconnect();
                    reading = false;
                }
                Some(Err(e)) => {
                    reading = false;
                    match read_error(&e, max_frame) {
                        Some(err) => session.violation(err),
                        None => session.disconnect(),
                    }
                }
            }},
        }
    }
}

/// Runs a write, arming the write timeout only if the write does not complete at once: most
/// writes fit in the socket buffer, and a timer per write would cost more than the write.
async fn within_write_timeout(
    write: impl Future<Output = Result<(), axum::Error>>,
) -> Result<(), ()> {
    let mut write = std::pin::pin!(write);
    let first = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(done) => done.map_err(drop),
        Poll::Pending => match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        },
    }
}

fn session_keepalive(session: &SessionHandle) -> std::time::Duration {
    session
        .hub()
        .config()
        .keepalive
        .max(std::time::Duration::from_millis(10))
}

/// Turns one text frame into an event for the hub.
fn handle_text(session: &mut SessionHandle, text: &str) {
    match parse(text) {
        Ok(m) => {
            session.handle(
                m.timestamp,
                Event::Message {
                    username: "",
                    text: &m.message,
                    recipient: m.recipient_id,
                },
            );
        }
        Err(e) => {
            session.handle(
                0,
                Event::Invalid {
                    reason: &e.reason,
                    recipient: e.recipient,
                },
            );
        }
    }
}

/// Reading errors that are the client's abuse (they end the session with a reason), as opposed
/// to the connection simply breaking.
fn read_error(e: &axum::Error, max_frame: usize) -> Option<SessionError> {
    let text = e.to_string();
    if text.contains("Space limit exceeded")
        || text.contains("too long")
        || text.contains("too big")
    {
        Some(SessionError::FrameTooLarge(max_frame))
    } else if text.contains("UTF-8") || text.contains("utf-8") {
        Some(SessionError::BadFrame(
            "text frame is not valid UTF-8".into(),
        ))
    } else {
        None
    }
}

/// The one place a session's ending becomes a WebSocket close code and reason.
fn close_of(ending: &Ending) -> (u16, String) {
    let e = match ending {
        Ending::Clean => return (1000, "bye".into()),
        Ending::Error(e) => e,
    };
    let code = match e {
        SessionError::FrameTooLarge(_) => 1009,
        SessionError::BadFrame(_) => 1007,
        SessionError::ShuttingDown => 1001,
        SessionError::Full(_) => 1013,
        _ => 1008,
    };
    // A close reason is at most 123 bytes.
    let mut reason = e.to_string();
    while reason.len() > 123 {
        reason.pop();
    }
    (code, reason)
}
