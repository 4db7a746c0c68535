//! The WebSocket gateway: JSON text frames on the chat port, translated onto the hub.
//!
//! `ws://HOST:PORT/` gives a direct-message-only user (an id from the one sequence, announced in
//! a welcome frame); `/?username=NAME` joins the broadcast room as well. Clients send
//! `{"recipient_id": 2, "message": "…"}` (without `recipient_id`, room members broadcast) and
//! receive `{"sender_id": 1, "message": "…", …}` plus added fields (`kind`, `timestamp`,
//! `username`, …). Bad input gets a JSON error frame and the connection stays open; abuse
//! (oversized or non-UTF-8 frames, frames the RFC forbids) closes it with the fitting close code.
//!
//! chittyd does the handshake and the framing itself ([`codec`]) and drives each connection
//! from one task: what the client sends goes to the hub, and the outbox's frames, already
//! encoded by the hub, are copied behind their WebSocket headers into one buffer and written
//! with one system call per run.

use crate::hub::outbox::{Ending, OutboxReader, Taken};
use crate::hub::{Event, Hub, SessionError, SessionHandle, Transport};
use crate::server::ConnInfo;
use axum::body::Body;
use axum::extract::{Query, Request};
use axum::response::{IntoResponse, Response};
use codec::{Decoder, Message, ReadError};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::borrow::Cow;
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Interval, Sleep};

pub mod codec;

/// A write that takes longer than this means the peer stopped reading; the connection is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// After its close frame, the server reads (and discards) what the client still sends for at
/// most this long, so that closing with unread input does not reset the connection and destroy
/// the close frame before the client has read it.
const LINGER: Duration = Duration::from_secs(2);

/// Bytes read from the socket per read. The buffer is on the stack for the duration of the read,
/// so an idle connection holds no read buffer at all.
const READ_CHUNK: usize = 8 * 1024;

/// Reads per turn of the connection's task: a client that keeps its socket full gets 64 KiB
/// handled, then the task yields so the other tasks on its thread get their turn.
const READS_PER_TURN: usize = 8;

/// While more than this is waiting to be written (pongs to a client that pings but never reads),
/// the client's input is not read either, so its own socket pushes back.
const PAUSE_READING: usize = 64 * 1024;

/// A write buffer that grew past this for a burst is freed once it has been written, rather
/// than kept by an idle connection.
const KEEP_WRITE_BUFFER: usize = 64 * 1024;

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
    /// A gateway onto `hub`; messages larger than `max_frame` bytes close the connection.
    pub fn new(hub: Arc<Hub>, max_frame: usize) -> Self {
        Gateway { hub, max_frame }
    }

    /// Handles `GET /`: a WebSocket handshake (RFC 6455, 4.2) becomes a session, a plain GET
    /// gets a short explanation, and a broken handshake gets an HTTP error saying what is wrong.
    pub async fn handle(self, query: Query<Params>, mut req: Request) -> Response {
        let accept = match handshake(req.headers()) {
            Ok(Some(accept)) => accept,
            Ok(None) => return ABOUT.into_response(),
            Err(e) => return e.into_response(),
        };
        if req
            .extensions()
            .get::<hyper::upgrade::OnUpgrade>()
            .is_none()
        {
            return HandshakeError::NotHttp11.into_response();
        }
        let peer = req
            .extensions()
            .get::<ConnInfo>()
            .map_or_else(|| "unknown".to_owned(), |c| c.peer.to_string());
        let upgrade = hyper::upgrade::on(&mut req);
        let username = query.0.username;
        tokio::spawn(async move {
            match upgrade.await {
                Ok(io) => serve(TokioIo::new(io), self.hub, peer, username, self.max_frame).await,
                Err(e) => tracing::debug!("WebSocket upgrade from {peer} failed: {e}"),
            }
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        response
    }
}

/// Why a WebSocket handshake is refused.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("a WebSocket handshake needs \"Connection: Upgrade\"")]
    NoConnectionUpgrade,
    #[error("chittyd speaks WebSocket version 13 (Sec-WebSocket-Version: 13)")]
    Version,
    #[error("a WebSocket handshake needs a Sec-WebSocket-Key")]
    NoKey,
    #[error("WebSocket connections need HTTP/1.1")]
    NotHttp11,
}

impl IntoResponse for HandshakeError {
    fn into_response(self) -> Response {
        let status = match self {
            HandshakeError::Version => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut response = (status, format!("{self}\n")).into_response();
        if let HandshakeError::Version = self {
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        response
    }
}

/// Checks a WebSocket handshake: `Ok(None)` if the request is not one at all, the accept key
/// for the response if it is a good one.
fn handshake(headers: &HeaderMap) -> Result<Option<HeaderValue>, HandshakeError> {
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Ok(None);
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(HandshakeError::Version);
    }
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| !k.is_empty())
    else {
        return Err(HandshakeError::NoKey);
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    // Base64 is always a valid header value.
    Ok(HeaderValue::from_str(&accept).ok())
}

/// Whether a comma-separated header has `token` (case-insensitively) in any of its values.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
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
async fn serve<IO>(io: IO, hub: Arc<Hub>, peer: String, username: Option<String>, max: usize)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let (outbox, reader) = hub.outbox(Transport::WebSocket);
    let mut session = SessionHandle::new(hub, Transport::WebSocket, peer, outbox);
    match &username {
        Some(name) => {
            session.handle(0, Event::Join { username: name });
        }
        None => {
            let _ = session.connect_direct();
        }
    }
    // Dead-peer detection: ping a quiet peer every `keepalive`; one that has sent nothing (not
    // even a pong) for twice that is gone, and its leave is announced.
    let keepalive = session
        .hub()
        .config()
        .keepalive
        .max(Duration::from_millis(10));
    let mut conn = Connection {
        io,
        reading: !session.is_ended(),
        session,
        reader,
        decoder: Decoder::new(max),
        out: Vec::new(),
        sent: 0,
        stall: None,
        pings: tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive),
        unanswered: 0,
        phase: Phase::Open,
    };
    std::future::poll_fn(|cx| conn.poll(cx)).await;
}

/// Where a connection is in its life.
enum Phase {
    /// Frames flow both ways.
    Open,
    /// The close frame is queued; nothing is sent after it.
    Closing,
    /// The close frame is out and the write side shut down; reading what the client still sends
    /// until it closes too, or the timer runs out.
    Lingering(Pin<Box<Sleep>>),
}

/// One WebSocket connection, driven by one task: the client's frames go to the hub, and the
/// outbox's frames go out behind their WebSocket headers, a whole run per write.
struct Connection<IO> {
    io: IO,
    session: SessionHandle,
    reader: OutboxReader,
    decoder: Decoder,
    /// Whether the client's input is still read (not after its close, an error or end of file).
    reading: bool,
    /// Frames waiting to be written, and how much of them has been.
    out: Vec<u8>,
    sent: usize,
    /// Armed while a write waits for the socket; the connection ends when it fires.
    stall: Option<Pin<Box<Sleep>>>,
    pings: Interval,
    /// Pings sent since the client was last heard from.
    unanswered: u32,
    phase: Phase,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Connection<IO> {
    /// Runs the connection until it is closed: `Ready` means the task may end.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut reads = 0;
        loop {
            let flushed = match self.flush(cx) {
                Poll::Ready(Ok(())) => true,
                Poll::Ready(Err(())) => return Poll::Ready(()),
                Poll::Pending => false,
            };
            if flushed && matches!(self.phase, Phase::Closing) {
                // The close frame is out: shut the write side (under the same write timeout, as
                // TLS has its own close to send), then wait for the client's end.
                if Pin::new(&mut self.io).poll_shutdown(cx).is_pending() {
                    return self.stalled(cx).map(|_| ());
                }
                if !self.reading {
                    return Poll::Ready(());
                }
                self.phase = Phase::Lingering(Box::pin(tokio::time::sleep(LINGER)));
            }
            if let Phase::Lingering(timer) = &mut self.phase
                && (!self.reading || timer.as_mut().poll(cx).is_ready())
            {
                return Poll::Ready(());
            }
            let mut busy = false;
            if self.reading && self.out.len() - self.sent < PAUSE_READING {
                if reads == READS_PER_TURN {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                if self.read(cx).is_ready() {
                    reads += 1;
                    busy = true;
                }
            }
            if matches!(self.phase, Phase::Open) {
                busy |= self.keepalive(cx);
                if flushed {
                    busy |= self.take(cx).is_ready();
                }
            }
            if !busy {
                return Poll::Pending;
            }
        }
    }

    /// Writes what is queued. `Err` means the connection is dead: the write failed, or waited
    /// longer than the write timeout.
    fn flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        if self.out.is_empty() {
            // Nothing written since the last flush completed.
            return Poll::Ready(Ok(()));
        }
        while self.sent < self.out.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.sent..]) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(Err(())),
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Pending => return self.stalled(cx),
            }
        }
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Poll::Ready(Err(())),
            Poll::Pending => return self.stalled(cx),
        }
        self.stall = None;
        self.sent = 0;
        if self.out.capacity() > KEEP_WRITE_BUFFER {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        Poll::Ready(Ok(()))
    }

    /// A write is waiting for the socket: arms the write timeout, or reports it expired.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        // Armed only when a write blocks: most writes complete at once, and a timer per write
        // would cost more than the write.
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads once from the socket and hands every whole message to the hub.
    fn read(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut buf = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut buf);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => {}
            // End of file or a broken connection: the client is gone.
            Poll::Ready(_) => {
                self.reading = false;
                self.session.disconnect();
                return Poll::Ready(());
            }
        }
        self.unanswered = 0;
        if !matches!(self.phase, Phase::Open) {
            return Poll::Ready(());
        }
        let session = &mut self.session;
        let out = &mut self.out;
        let mut closed = false;
        let decoded = self.decoder.feed(buf.filled_mut(), &mut |m| match m {
            Message::Text(text) => handle_text(session, text),
            Message::Binary => {
                session.handle(
                    0,
                    Event::Invalid {
                        reason: "binary frames are not supported: send JSON text frames",
                        recipient: 0,
                    },
                );
            }
            Message::Ping(payload) => codec::put_pong(out, payload),
            Message::Pong => {}
            Message::Close(_) => closed = true,
        });
        if let Err(e) = decoded {
            self.reading = false;
            self.session.violation(match e {
                ReadError::TooLarge(max) => SessionError::FrameTooLarge(max),
                ReadError::NotUtf8 => SessionError::BadFrame(e.to_string()),
                ReadError::Protocol(why) => SessionError::Protocol(why.into()),
            });
        } else if closed {
            self.reading = false;
            self.session.disconnect();
        }
        Poll::Ready(())
    }

    /// Pings a quiet client, and gives up on one that stopped answering. Returns whether it did
    /// anything.
    fn keepalive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.reading || self.pings.poll_tick(cx).is_pending() {
            return false;
        }
        // Silent through two whole intervals (two pings unanswered): gone.
        self.unanswered += 1;
        if self.unanswered > 2 {
            self.reading = false;
            self.session.violation(SessionError::DeadPeer);
        } else {
            codec::put_ping(&mut self.out);
        }
        true
    }

    /// Queues everything the outbox has, each frame behind its header, or the close frame once
    /// the session has ended.
    fn take(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let out = &mut self.out;
        match self
            .reader
            .poll_take(cx, |frame| codec::put_text(out, frame))
        {
            Poll::Ready(Taken::Frames) => Poll::Ready(()),
            Poll::Ready(Taken::Ended(ending)) => {
                let (code, reason) = close_of(&ending);
                codec::put_close(&mut self.out, code, &reason);
                self.phase = Phase::Closing;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
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

/// The one place a session's ending becomes a WebSocket close code and reason.
fn close_of(ending: &Ending) -> (u16, String) {
    let e = match ending {
        Ending::Clean => return (1000, "bye".into()),
        Ending::Error(e) => e,
    };
    let code = match e {
        SessionError::FrameTooLarge(_) => 1009,
        SessionError::BadFrame(_) => 1007,
        SessionError::Protocol(_) => 1002,
        SessionError::ShuttingDown => 1001,
        SessionError::Full(_) => 1013,
        _ => 1008,
    };
    (code, e.to_string())
}
