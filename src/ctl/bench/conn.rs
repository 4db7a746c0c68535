//! One benchmark participant's connection, over gRPC or WebSocket, split into a sending and a
//! receiving half so that they can run as separate tasks.

use crate::pb::{self, chat_event, chat_message::Kind};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Which wire the bench speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchTransport {
    /// The gRPC Broadcast stream.
    Grpc,
    /// The WebSocket JSON gateway.
    Ws,
}

/// What one received frame says, as far as the bench cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its Lamport time.
    pub timestamp: u64,
    /// What it is.
    pub kind: Kind,
    /// Who joined or left.
    pub subject: String,
    /// Sender's (or subject's) id.
    pub sender_id: u64,
    /// Its text.
    pub text: String,
}

/// The sending half.
pub enum Sender {
    /// gRPC events go through a channel into the request stream.
    Grpc(mpsc::Sender<pb::ChatEvent>, String),
    /// WebSocket frames go straight to the sink.
    Ws(SplitSink<Ws, Message>),
}

/// The receiving half.
pub enum Receiver {
    /// The gRPC response stream (boxed: it is much larger than the WebSocket half).
    Grpc(Box<tonic::Streaming<pb::ChatMessage>>),
    /// The WebSocket stream.
    Ws(SplitStream<Ws>),
}

/// Why a participant could not connect or stopped.
pub type ConnError = String;

/// Connects one participant. `name` joins the room; without it (WebSocket direct pattern) the
/// user only receives direct messages.
/// `stalled` participants get the usual 64 KiB HTTP/2 windows (rather than tonic's large ones)
/// so that one that stops reading fills its window, and then its server-side backlog, the way
/// a stuck ordinary client would.
pub async fn connect(
    transport: BenchTransport,
    target: &str,
    name: Option<&str>,
    stalled: bool,
) -> Result<(Sender, Receiver), ConnError> {
    match transport {
        BenchTransport::Grpc => {
            let name = name.ok_or("gRPC participants always join with a name")?;
            let mut endpoint = crate::client::endpoint(&crate::client::ServerAddr::plain(target))
                .map_err(|e| e.to_string())?;
            if stalled {
                endpoint = endpoint
                    .initial_stream_window_size(Some(65_535))
                    .initial_connection_window_size(Some(65_535));
            }
            let channel = endpoint
                .connect()
                .await
                .map_err(|e| format!("connect {target}: {e}"))?;
            let (tx, rx) = mpsc::channel(256);
            tx.send(pb::ChatEvent {
                timestamp: 0,
                event: Some(chat_event::Event::Join(chat_event::UserJoin {
                    username: name.to_owned(),
                })),
            })
            .await
            .map_err(|_| "request stream closed".to_owned())?;
            let stream = pb::chat_client::ChatClient::new(channel)
                .broadcast(ReceiverStream::new(rx))
                .await
                .map_err(|s| format!("Broadcast: {s}"))?
                .into_inner();
            Ok((
                Sender::Grpc(tx, name.to_owned()),
                Receiver::Grpc(Box::new(stream)),
            ))
        }
        BenchTransport::Ws => {
            let url = match name {
                Some(name) => format!("ws://{target}/?username={name}"),
                None => format!("ws://{target}/"),
            };
            let (ws, _) = tokio_tungstenite::connect_async(&url)
                .await
                .map_err(|e| format!("connect {url}: {e}"))?;
            let (sink, stream) = ws.split();
            Ok((Sender::Ws(sink), Receiver::Ws(stream)))
        }
    }
}

impl Sender {
    /// Sends `text` as a broadcast (`recipient` 0) or a direct message.
    pub async fn send(&mut self, text: &str, recipient: u64) -> Result<(), ConnError> {
        match self {
            Sender::Grpc(tx, name) => tx
                .send(pb::ChatEvent {
                    timestamp: 0,
                    event: Some(chat_event::Event::Message(chat_event::ChatMessage {
                        username: name.clone(),
                        message: text.to_owned(),
                        recipient_id: recipient,
                    })),
                })
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
struct JsonFrame {
    #[serde(default)]
    timestamp: u64,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    sender_id: u64,
    #[serde(default)]
    user_id: u64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    error: String,
}

impl Receiver {
    /// The next frame; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Received>, ConnError> {
        match self {
            Receiver::Grpc(stream) => match stream.message().await {
                Ok(Some(m)) => Ok(Some(Received {
                    timestamp: m.timestamp,
                    kind: m.kind(),
                    subject: m.subject,
                    sender_id: m.sender_id,
                    text: m.message,
                })),
                Ok(None) => Ok(None),
                Err(s) => Err(format!("{:?}: {}", s.code(), s.message())),
            },
            Receiver::Ws(stream) => loop {
                match stream.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let f: JsonFrame =
                            serde_json::from_str(&t).map_err(|e| format!("bad frame: {e}"))?;
                        let kind = match f.kind.as_str() {
                            "join" => Kind::Join,
                            "leave" => Kind::Leave,
                            "notice" => Kind::Notice,
                            "error" => Kind::Error,
                            "direct" => Kind::Direct,
                            "welcome" => Kind::Welcome,
                            _ => Kind::Message,
                        };
                        return Ok(Some(Received {
                            timestamp: f.timestamp,
                            kind,
                            subject: f.subject,
                            sender_id: if kind == Kind::Welcome {
                                f.user_id
                            } else {
                                f.sender_id
                            },
                            text: if kind == Kind::Error {
                                f.error
                            } else {
                                f.message
                            },
                        }));
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return Err(frame.map_or("closed".into(), |f| f.reason.to_string()));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Ok(None),
                }
            },
        }
    }
}
