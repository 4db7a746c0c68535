//! The `chitty` client: a participant's connection with its own Lamport clock.
//!
//! The client ticks its clock before every send and puts the time in the event; on every
//! message it receives, the clock becomes max(local, received) + 1.

pub mod cli;
pub mod plain;

use crate::clock::LamportClock;
use crate::pb::{self, chat_client::ChatClient, chat_event};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Why the client stopped.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The address is not usable.
    #[error("invalid server address {0}: {1}")]
    Address(String, String),
    /// The server could not be reached.
    #[error("cannot connect to {addr}: {source}; is chittyd running there?")]
    Connect {
        /// host:port.
        addr: String,
        /// The cause.
        source: tonic::transport::Error,
    },
    /// The server refused or ended the session.
    #[error("{}", describe(.0))]
    Server(#[from] tonic::Status),
    /// The connection closed while sending.
    #[error("the connection to the server is closed")]
    Closed,
    /// A local file (the log) failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// Whether the server refused us (a name taken, invalid or banned, a kick) rather than the
    /// connection failing: retrying the same thing will not help.
    pub fn is_refusal(&self) -> bool {
        use tonic::Code::*;
        matches!(self, ClientError::Server(s) if matches!(
            s.code(),
            AlreadyExists | InvalidArgument | PermissionDenied | FailedPrecondition | Aborted
        ))
    }
}

fn describe(status: &tonic::Status) -> String {
    use tonic::Code::*;
    if status.code() == Aborted {
        // "removed by an operator: REASON" says it all.
        return status.message().to_owned();
    }
    let what = match status.code() {
        AlreadyExists => "name taken",
        InvalidArgument => "refused",
        PermissionDenied => "not allowed",
        FailedPrecondition => "protocol error",
        ResourceExhausted => "disconnected",
        Unavailable => "server unavailable",
        _ => "server error",
    };
    format!("{what}: {}", status.message())
}

/// Turns `host:port` (or a full `http://` URL) into an endpoint.
pub fn endpoint(addr: &str) -> Result<Endpoint, ClientError> {
    let url = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    Endpoint::from_shared(url)
        .map(|e| e.connect_timeout(Duration::from_secs(5)))
        .map_err(|e| ClientError::Address(addr.to_owned(), e.to_string()))
}

/// A joined participant.
pub struct Participant {
    username: String,
    clock: LamportClock,
    events: mpsc::Sender<pb::ChatEvent>,
    inbound: tonic::Streaming<pb::ChatMessage>,
    id: Option<u64>,
}

impl Participant {
    /// Connects to `addr` and joins as `username`.
    pub async fn join(addr: &str, username: &str) -> Result<Participant, ClientError> {
        let channel: Channel =
            endpoint(addr)?
                .connect()
                .await
                .map_err(|source| ClientError::Connect {
                    addr: addr.to_owned(),
                    source,
                })?;
        let mut client = ChatClient::new(channel);
        let (events, rx) = mpsc::channel(64);
        let clock = LamportClock::new();
        let join = pb::ChatEvent {
            timestamp: clock.tick(),
            event: Some(chat_event::Event::Join(chat_event::UserJoin {
                username: username.to_owned(),
            })),
        };
        events.send(join).await.map_err(|_| ClientError::Closed)?;
        let inbound = client
            .broadcast(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Participant {
            username: username.to_owned(),
            clock,
            events,
            inbound,
            id: None,
        })
    }

    /// The participant's username.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Its user id, once its own join notice has arrived.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// Its Lamport clock.
    pub fn clock(&self) -> &LamportClock {
        &self.clock
    }

    async fn send(&self, event: chat_event::Event) -> Result<(), ClientError> {
        let ev = pb::ChatEvent {
            timestamp: self.clock.tick(),
            event: Some(event),
        };
        self.events.send(ev).await.map_err(|_| ClientError::Closed)
    }

    /// Broadcasts a chat message.
    pub async fn say(&self, text: &str) -> Result<(), ClientError> {
        self.direct(0, text).await
    }

    /// Sends a direct message to user `recipient` (0 broadcasts).
    pub async fn direct(&self, recipient: u64, text: &str) -> Result<(), ClientError> {
        self.send(chat_event::Event::Message(chat_event::ChatMessage {
            username: self.username.clone(),
            message: text.to_owned(),
            recipient_id: recipient,
        }))
        .await
    }

    /// Sends the leave event; the server then ends the stream.
    pub async fn leave(&self) -> Result<(), ClientError> {
        self.send(chat_event::Event::Leave(chat_event::UserLeave {
            username: self.username.clone(),
        }))
        .await
    }

    /// The next message, or `None` when the server ended the stream cleanly.
    pub async fn next(&mut self) -> Result<Option<pb::ChatMessage>, ClientError> {
        let Some(msg) = self.inbound.message().await? else {
            return Ok(None);
        };
        self.clock.observe(msg.timestamp);
        if self.id.is_none()
            && msg.kind == pb::chat_message::Kind::Join as i32
            && msg.subject == self.username
        {
            self.id = Some(msg.sender_id);
        }
        Ok(Some(msg))
    }
}

/// Replaces control characters so that nothing a server or another user sends can drive the
/// terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// The client log's line for a message, in the original's format: `L[12] @ alice: hello`.
pub fn log_line(msg: &pb::ChatMessage) -> String {
    format!(
        "L[{}] @ {}: {}",
        msg.timestamp,
        printable(&msg.username),
        printable(&msg.message)
    )
}
