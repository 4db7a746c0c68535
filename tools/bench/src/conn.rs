//! One benchmark participant's connection, over gRPC or WebSocket, split into a sending and a
//! receiving half so that they can run as separate tasks.

use super::wire;
use bytes::{Buf, Bytes, BytesMut};
use chitty::client::dial::{ALPN_H2, ALPN_HTTP1, Conn, Dialer, Greeting};
use chitty::client::{ClientTls, ServerAddr};
use chitty::pb::{self, chat_event, chat_message::Kind};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http_body::Body as _;
use serde::Deserialize;
use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tower::{Service, ServiceExt};

type Ws = WebSocketStream<Conn>;

/// Which wire the bench speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchTransport {
    /// The gRPC Broadcast stream.
    Grpc,
    /// The WebSocket JSON gateway.
    Ws,
}

/// What one received frame says, as far as the bench cares, borrowed from the receiver's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received<'a> {
    /// Its Lamport time.
    pub timestamp: u64,
    /// What it is.
    pub kind: Kind,
    /// Who joined or left.
    pub subject: Cow<'a, str>,
    /// Sender's (or subject's) id.
    pub sender_id: u64,
    /// Its text.
    pub text: Cow<'a, str>,
}

/// The sending half.
pub enum Sender {
    /// gRPC events, already framed, go through a channel into the request body.
    Grpc(mpsc::Sender<Bytes>, String),
    /// WebSocket frames go straight to the sink.
    Ws(SplitSink<Ws, Message>),
}

/// The receiving half. Frames are read in batches (`fill`) and handed out one at a time
/// (`try_next`) without copying their strings.
pub enum Receiver {
    /// The gRPC response body, read without tonic's per-message decoding (boxed: it is much
    /// larger than the WebSocket half).
    Grpc(Box<GrpcReceiver>),
    /// The WebSocket stream.
    Ws(WsReceiver),
}

/// The gRPC response body and what has been received of it but not yet handed out.
pub struct GrpcReceiver {
    body: tonic::body::Body,
    /// Received bytes; `buf[..pos]` has been handed out.
    buf: BytesMut,
    pos: usize,
}

/// The WebSocket stream, the frame received but not yet handed out, and the one handed out last.
pub struct WsReceiver {
    stream: SplitStream<Ws>,
    pending: Option<Utf8Bytes>,
    current: Utf8Bytes,
}

/// The request body of a Broadcast call: gRPC-framed events from the sending half.
struct Events(mpsc::Receiver<Bytes>);

impl http_body::Body for Events {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|event| event.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// Starts the Broadcast call: the request body streams `events`, and the response's body is
/// returned once its headers say the call is under way.
async fn broadcast(
    channel: tonic::transport::Channel,
    events: mpsc::Receiver<Bytes>,
) -> Result<tonic::body::Body, String> {
    let request = http::Request::builder()
        .method(http::Method::POST)
        .version(http::Version::HTTP_2)
        .uri("/chitty_chat.Chat/Broadcast")
        .header(http::header::TE, "trailers")
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(tonic::body::Body::new(Events(events)))
        .map_err(|e| e.to_string())?;
    let mut channel = channel;
    let response = channel
        .ready()
        .await
        .map_err(|e| e.to_string())?
        .call(request)
        .await
        .map_err(|e| tonic::Status::from_error(Box::new(e)).to_string())?;
    if let Some(status) = tonic::Status::from_header_map(response.headers())
        && status.code() != tonic::Code::Ok
    {
        return Err(status.to_string());
    }
    if response.status() != http::StatusCode::OK {
        return Err(format!("HTTP status {}", response.status()));
    }
    Ok(response.into_body())
}

/// Why a participant could not connect or stopped.
pub type ConnError = String;

/// Where the participants connect and how (TLS or not), made once per run so that a CA file is
/// read once; connections are made as the chitty client makes them (`chitty::client::dial`), so
/// a failure reads the same: TLS on one end only, a certificate for other names, an authority
/// not trusted.
#[derive(Clone)]
pub struct Target {
    endpoint: tonic::transport::Endpoint,
    dialer: Dialer,
    /// `ws://host:port/` or `wss://host:port/`.
    ws_url: String,
}

impl Target {
    /// `target` (host:port), over TLS when `tls` is set, for `transport`.
    pub fn new(
        target: &str,
        tls: Option<ClientTls>,
        transport: BenchTransport,
    ) -> Result<Target, ConnError> {
        let server = ServerAddr {
            addr: target.to_owned(),
            tls,
        };
        let alpn = match transport {
            BenchTransport::Grpc => ALPN_H2,
            BenchTransport::Ws => ALPN_HTTP1,
        };
        let (endpoint, dialer) =
            chitty::client::dialer(&server, alpn).map_err(|e| e.to_string())?;
        let scheme = if dialer.is_tls() { "wss" } else { "ws" };
        let ws_url = format!("{scheme}://{}/", dialer.addr());
        Ok(Target {
            endpoint,
            dialer,
            ws_url,
        })
    }

    /// A failure at the first exchange on a connection whose server began with `greeting`: the
    /// dialer's words when the greeting tells why (a plain client answered in TLS), else `e`.
    fn explain(&self, greeting: &Greeting, e: String) -> ConnError {
        self.dialer
            .explain(greeting)
            .map_or(e, |why| why.to_string())
    }
}

/// Connects one participant. `name` joins the room; without it (WebSocket direct pattern) the
/// user only receives direct messages.
/// `stalled` participants get the usual 64 KiB HTTP/2 windows (rather than tonic's large ones)
/// so that one that stops reading fills its window, and then its server-side backlog, the way
/// a stuck ordinary client would.
pub async fn connect(
    transport: BenchTransport,
    target: &Target,
    name: Option<&str>,
    stalled: bool,
) -> Result<(Sender, Receiver), ConnError> {
    let conn = target.dialer.dial().await.map_err(|e| e.to_string())?;
    let greeting = conn.greeting();
    match transport {
        BenchTransport::Grpc => {
            let name = name.ok_or("gRPC participants always join with a name")?;
            let mut endpoint = target.endpoint.clone();
            if stalled {
                endpoint = endpoint
                    .initial_stream_window_size(Some(65_535))
                    .initial_connection_window_size(Some(65_535));
            }
            let channel = endpoint
                .connect_with_connector(target.dialer.connector(conn))
                .await
                .map_err(|e| {
                    target.explain(&greeting, format!("connect {}: {e}", target.dialer.addr()))
                })?;
            let (tx, rx) = mpsc::channel(256);
            tx.send(wire::grpc_encode(&pb::ChatEvent {
                timestamp: 0,
                event: Some(chat_event::Event::Join(chat_event::UserJoin {
                    username: name.to_owned(),
                })),
            }))
            .await
            .map_err(|_| "request stream closed".to_owned())?;
            let body = broadcast(channel, rx)
                .await
                .map_err(|s| target.explain(&greeting, format!("Broadcast: {s}")))?;
            Ok((
                Sender::Grpc(tx, name.to_owned()),
                Receiver::Grpc(Box::new(GrpcReceiver {
                    body,
                    buf: BytesMut::with_capacity(16 * 1024),
                    pos: 0,
                })),
            ))
        }
        BenchTransport::Ws => {
            let url = match name {
                Some(name) => format!("{}?username={name}", target.ws_url),
                None => target.ws_url.clone(),
            };
            let (ws, _) = tokio_tungstenite::client_async(&url, conn)
                .await
                .map_err(|e| target.explain(&greeting, format!("connect {url}: {e}")))?;
            let (sink, stream) = ws.split();
            Ok((
                Sender::Ws(sink),
                Receiver::Ws(WsReceiver {
                    stream,
                    pending: None,
                    current: Utf8Bytes::from_static(""),
                }),
            ))
        }
    }
}

impl Sender {
    /// Sends `text` as a broadcast (`recipient` 0) or a direct message.
    pub async fn send(&mut self, text: &str, recipient: u64) -> Result<(), ConnError> {
        match self {
            Sender::Grpc(tx, name) => tx
                .send(wire::grpc_encode(&pb::ChatEvent {
                    timestamp: 0,
                    event: Some(chat_event::Event::Message(chat_event::ChatMessage {
                        username: name.clone(),
                        message: text.to_owned(),
                        recipient_id: recipient,
                    })),
                }))
                .await
                .map_err(|_| "stream closed".to_owned()),
            Sender::Ws(sink) => {
                let frame = if recipient == 0 {
                    serde_json::json!({ "message": text })
                } else {
                    serde_json::json!({ "recipient_id": recipient, "message": text })
                };
                sink.send(Message::text(frame.to_string()))
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }
}

#[derive(Deserialize)]
struct JsonFrame<'a> {
    #[serde(default)]
    timestamp: u64,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    subject: Cow<'a, str>,
    #[serde(default)]
    sender_id: u64,
    #[serde(default)]
    user_id: u64,
    #[serde(default, borrow)]
    message: Cow<'a, str>,
    #[serde(default, borrow)]
    error: Cow<'a, str>,
}

impl<'a> JsonFrame<'a> {
    fn received(self) -> Received<'a> {
        let kind = match &*self.kind {
            "join" => Kind::Join,
            "leave" => Kind::Leave,
            "notice" => Kind::Notice,
            "shutdown" => Kind::Shutdown,
            "error" => Kind::Error,
            "direct" => Kind::Direct,
            "welcome" => Kind::Welcome,
            _ => Kind::Message,
        };
        Received {
            timestamp: self.timestamp,
            kind,
            subject: self.subject,
            sender_id: if kind == Kind::Welcome {
                self.user_id
            } else {
                self.sender_id
            },
            text: if kind == Kind::Error {
                self.error
            } else {
                self.message
            },
        }
    }
}

impl Receiver {
    /// The next frame; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Received<'_>>, ConnError> {
        while !self.has_frame() {
            if !self.fill().await? {
                return Ok(None);
            }
        }
        self.try_next()
    }

    /// Whether a whole frame has been received and not yet handed out (or a broken one, which
    /// `try_next` reports).
    fn has_frame(&self) -> bool {
        match self {
            Receiver::Grpc(g) => {
                wire::grpc_message_len(&g.buf[g.pos..]).map_or(true, |len| len.is_some())
            }
            Receiver::Ws(w) => w.pending.is_some(),
        }
    }

    /// The next frame already received, without waiting: `None` when there is none (call
    /// `fill`).
    pub fn try_next(&mut self) -> Result<Option<Received<'_>>, ConnError> {
        match self {
            Receiver::Grpc(g) => {
                let rest = &g.buf[g.pos..];
                let Some(len) = wire::grpc_message_len(rest).map_err(|e| e.to_string())? else {
                    return Ok(None);
                };
                let start = g.pos + wire::PREFIX;
                g.pos += len;
                let f = wire::scan_chat_message(&g.buf[start..g.pos])
                    .map_err(|e| format!("bad message: {e}"))?;
                Ok(Some(Received {
                    timestamp: f.timestamp,
                    kind: f.kind,
                    subject: Cow::Borrowed(f.subject),
                    sender_id: f.sender_id,
                    text: Cow::Borrowed(f.text),
                }))
            }
            Receiver::Ws(w) => {
                let Some(t) = w.pending.take() else {
                    return Ok(None);
                };
                w.current = t;
                let f: JsonFrame<'_> = serde_json::from_str(w.current.as_str())
                    .map_err(|e| format!("bad frame: {e}"))?;
                Ok(Some(f.received()))
            }
        }
    }

    /// Waits for more frames (forgetting the ones already handed out); `false` when the server
    /// ended the stream. Cancel-safe.
    pub async fn fill(&mut self) -> Result<bool, ConnError> {
        match self {
            Receiver::Grpc(g) => {
                g.buf.advance(g.pos);
                g.pos = 0;
                loop {
                    let frame =
                        std::future::poll_fn(|cx| Pin::new(&mut g.body).poll_frame(cx)).await;
                    let frame = match frame {
                        None if g.buf.is_empty() => return Ok(false),
                        None => return Err("the stream ended inside a message".into()),
                        Some(Err(s)) => return Err(format!("{:?}: {}", s.code(), s.message())),
                        Some(Ok(frame)) => frame,
                    };
                    match frame.into_data() {
                        Ok(data) => {
                            g.buf.extend_from_slice(&data);
                            return Ok(true);
                        }
                        Err(frame) => {
                            if let Some(status) = frame
                                .trailers_ref()
                                .and_then(tonic::Status::from_header_map)
                                && status.code() != tonic::Code::Ok
                            {
                                return Err(format!("{:?}: {}", status.code(), status.message()));
                            }
                        }
                    }
                }
            }
            Receiver::Ws(w) if w.pending.is_some() => Ok(true),
            Receiver::Ws(w) => loop {
                match w.stream.next().await {
                    Some(Ok(Message::Text(t))) => {
                        w.pending = Some(t);
                        return Ok(true);
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return Err(frame.map_or("closed".into(), |f| f.reason.to_string()));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Ok(false),
                }
            },
        }
    }
}
