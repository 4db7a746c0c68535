//! The `chitty` client: a participant's connection with its own Lamport clock.
//!
//! The client ticks its clock before every send and puts the time in the event; on every
//! message it receives, the clock becomes max(local, received) + 1.
//!
//! [`reconnect`] decides what happens when the connection is lost (wait, rejoin with the same
//! clock, or give up); [`plain`] (line mode) and [`tui`] (full screen) both follow it. [`dial`]
//! makes the connection, TLS included, and says in words why one could not be made. The two
//! modes share the rest too: [`addr`] (the server address), [`offers`] (what the server's
//! welcome offers), [`pace`] (sending no faster than the server's rate limit), [`command`]
//! (what a typed line means), [`people`] (names by id) and [`log`] (the private client log).

pub mod addr;
pub mod cli;
pub mod command;
pub mod dial;
pub mod log;
pub mod offers;
pub mod pace;
pub mod people;
pub mod plain;
pub mod reconnect;
pub mod tui;

pub use log::{ClientLog, log_line};
pub use offers::Offers;

use crate::clock::LamportClock;
use crate::pb::{self, chat_client::ChatClient, chat_event};
use dial::{DialError, Dialer};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

pub use dial::ClientTls;

/// How long a client waits, after sending its leave, for the server to end the stream (the
/// messages that arrive meanwhile are still shown and logged).
pub const LEAVE_WAIT: Duration = Duration::from_secs(3);

/// Why the client stopped.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The address is not usable.
    #[error("invalid server address {0}: {1}")]
    Address(String, String),
    /// The server could not be reached, or not the way asked (TLS or not, its certificate).
    #[error("{0}")]
    Dial(#[from] DialError),
    /// The connection was made, but the HTTP/2 connection over it failed.
    #[error("cannot connect to {addr}: {}; is chittyd running there?", root_cause(.source))]
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
    /// A local file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The client log cannot be opened.
    #[error("cannot open the client log {}: {source}", .path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The terminal could not be set up, read or drawn on.
    #[error("terminal: {0}")]
    Terminal(#[source] std::io::Error),
    /// The server announced its shutdown and ended the stream: a restart, worth reconnecting.
    #[error("the server shut down")]
    ServerStopped,
    /// Reconnecting stopped: the server refused the rejoin, or the attempts ran out.
    #[error("giving up{}: {last}", exhausted.map(|n| format!(" after {n} attempts")).unwrap_or_default())]
    GaveUp {
        /// The attempts made when they ran out (`--reconnect-max`); `None` for a refusal.
        exhausted: Option<u32>,
        /// Why the last attempt failed.
        last: Box<ClientError>,
    },
    /// The session ended, but not everything typed was delivered: the server refused some of
    /// it (each refusal was reported as it came), or lines were left unsent (Ctrl-C, or leaving
    /// while disconnected). A script must not take its lines for delivered.
    #[error("{}", undelivered(*.refused, *.unsent))]
    Undelivered {
        /// Messages the server refused.
        refused: u32,
        /// Lines never sent.
        unsent: usize,
    },
}

impl ClientError {
    /// Whether the server refused us (a name taken, invalid or banned, a kick) rather than the
    /// connection failing: retrying the same thing will not help.
    pub fn is_refusal(&self) -> bool {
        use tonic::Code::*;
        match self {
            ClientError::Server(s) => matches!(
                s.code(),
                AlreadyExists | InvalidArgument | PermissionDenied | FailedPrecondition | Aborted
            ),
            ClientError::GaveUp { last, .. } => last.is_refusal(),
            _ => false,
        }
    }

    /// The error that decided the outcome: the last attempt's when reconnecting gave up, so that
    /// exit codes say what went wrong rather than that the client stopped trying.
    pub fn cause(&self) -> &ClientError {
        match self {
            ClientError::GaveUp { last, .. } => last.cause(),
            e => e,
        }
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
        Unknown | Cancelled => "connection lost",
        _ => "server error",
    };
    format!("{what}: {}", status.message())
}

fn undelivered(refused: u32, unsent: usize) -> String {
    let mut parts = Vec::new();
    if refused > 0 {
        parts.push(format!("the server refused {refused} of the messages sent"));
    }
    if unsent > 0 {
        parts.push(format!("{unsent} lines were not sent"));
    }
    format!(
        "not everything was delivered: {} (see above)",
        parts.join(", and ")
    )
}

/// The innermost cause of a transport error, which is the part a person can act on
/// ("Connection refused") rather than the wrapper's "transport error".
fn root_cause(err: &tonic::transport::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// Where chittyd is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// As the person wrote it: `host`, `host:port`, `[v6]:port`, or an `http://` or `https://`
    /// URL (see [`addr`]); the port defaults to [`addr::DEFAULT_PORT`].
    pub addr: String,
    /// Connect over TLS; `None` speaks plain TCP unless the address says `https://`.
    pub tls: Option<ClientTls>,
}

impl ServerAddr {
    /// `addr` over plain TCP.
    pub fn plain(addr: &str) -> ServerAddr {
        ServerAddr {
            addr: addr.to_owned(),
            tls: None,
        }
    }

    /// The address understood, and how to secure it: `https://` asks for TLS (the system's
    /// certificate authorities unless `--ca` says otherwise); `http://` with `--tls` or `--ca`
    /// contradicts itself and is refused.
    pub fn target(&self) -> Result<(addr::Target, Option<ClientTls>), ClientError> {
        let invalid = |why: String| ClientError::Address(self.addr.clone(), why);
        let target = addr::Target::parse(&self.addr).map_err(invalid)?;
        let tls = match (target.scheme, &self.tls) {
            (Some(addr::Scheme::Http), Some(_)) => {
                return Err(invalid(
                    "http:// means plain TCP, but --tls or --ca asks for TLS \
                     (write https:// or leave the scheme out)"
                        .into(),
                ));
            }
            (Some(addr::Scheme::Https), None) => Some(ClientTls::default()),
            (_, tls) => tls.clone(),
        };
        Ok((target, tls))
    }

    /// `host:port` as it is tried (the address as written when it cannot be understood).
    pub fn tried(&self) -> String {
        addr::Target::parse(&self.addr).map_or_else(|_| self.addr.clone(), |t| t.to_string())
    }
}

/// Turns a server address into an endpoint: `http://host:port` for plain TCP, `https://` for
/// TLS (asked for with `--tls`, `--ca` or an `https://` address). The connection itself is made
/// by a [`Dialer`] built from the endpoint's URI.
pub fn endpoint(server: &ServerAddr) -> Result<Endpoint, ClientError> {
    let (target, tls) = server.target()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    Endpoint::from_shared(format!("{scheme}://{target}"))
        .map(|e| e.connect_timeout(dial::DIAL_TIMEOUT))
        .map_err(|e| ClientError::Address(server.addr.clone(), e.to_string()))
}

/// The endpoint for `server` and the dialer that connects to it, offering `alpn` over TLS.
pub fn dialer(server: &ServerAddr, alpn: &[u8]) -> Result<(Endpoint, Dialer), ClientError> {
    let endpoint = endpoint(server)?;
    let (_, tls) = server.target()?;
    let dialer = Dialer::new(endpoint.uri(), tls.as_ref(), alpn)?;
    Ok((endpoint, dialer))
}

/// A joined participant: both directions of its stream together, for callers that alternate
/// between reading and sending (line mode). [`Participant::split`] separates them for callers
/// that read in one task and send from another (the full-screen UI).
pub struct Participant {
    send: SendHalf,
    recv: ReceiveHalf,
}

/// The sending side of a participant: chat messages, direct messages, the leave.
pub struct SendHalf {
    username: String,
    /// Shared with the [`ReceiveHalf`]: received times move it forward, sends tick it.
    clock: Arc<LamportClock>,
    /// Feeds the request stream of the Broadcast call. Bounded: a send waits while the
    /// transport is busy, which only a person typing ever triggers.
    events: mpsc::Sender<pb::ChatEvent>,
}

/// The receiving side of a participant: the server's messages, in order.
pub struct ReceiveHalf {
    username: String,
    clock: Arc<LamportClock>,
    inbound: tonic::Streaming<pb::ChatMessage>,
    id: Option<u64>,
    /// What the server's welcome said it offers.
    server: Option<pb::ServerInfo>,
    /// Whether the server's shutdown notice has arrived: a clean end after it is a restart.
    stopping: bool,
}

impl Participant {
    /// Connects to `server` and joins as `username`, with a new Lamport clock.
    pub async fn join(server: &ServerAddr, username: &str) -> Result<Participant, ClientError> {
        Participant::join_with_clock(server, username, Arc::new(LamportClock::new())).await
    }

    /// Connects to `server` and joins as `username`, keeping time with `clock`: a client that
    /// reconnects passes the clock of its earlier connections, so its times never go back.
    pub async fn join_with_clock(
        server: &ServerAddr,
        username: &str,
        clock: Arc<LamportClock>,
    ) -> Result<Participant, ClientError> {
        let (endpoint, dialer) = dialer(server, dial::ALPN_H2)?;
        let conn = dialer.dial().await?;
        // A plain client answered in TLS fails only once HTTP/2 does, as "http2 error": what the
        // server sent first says why.
        let greeting = conn.greeting();
        let explain = |e: ClientError| dialer.explain(&greeting).map_or(e, ClientError::Dial);
        let channel = endpoint
            .connect_with_connector(dialer.connector(conn))
            .await
            .map_err(|source| {
                explain(ClientError::Connect {
                    addr: server.tried(),
                    source,
                })
            })?;
        let mut client = ChatClient::new(channel);
        let (events, rx) = mpsc::channel(64);
        let join = pb::ChatEvent {
            timestamp: clock.tick(),
            event: Some(chat_event::Event::Join(chat_event::UserJoin {
                username: username.to_owned(),
            })),
        };
        events.send(join).await.map_err(|_| ClientError::Closed)?;
        let inbound = client
            .broadcast(ReceiverStream::new(rx))
            .await
            .map_err(|status| explain(status.into()))?
            .into_inner();
        Ok(Participant {
            send: SendHalf {
                username: username.to_owned(),
                clock: Arc::clone(&clock),
                events,
            },
            recv: ReceiveHalf {
                username: username.to_owned(),
                clock,
                inbound,
                id: None,
                server: None,
                stopping: false,
            },
        })
    }

    /// Separates sending from receiving; both halves share the Lamport clock.
    pub fn split(self) -> (SendHalf, ReceiveHalf) {
        (self.send, self.recv)
    }

    /// The participant's username.
    pub fn username(&self) -> &str {
        &self.send.username
    }

    /// Its user id, once its own join notice has arrived.
    pub fn id(&self) -> Option<u64> {
        self.recv.id
    }

    /// Its Lamport clock.
    pub fn clock(&self) -> &LamportClock {
        &self.send.clock
    }

    /// Broadcasts a chat message.
    pub async fn say(&self, text: &str) -> Result<(), ClientError> {
        self.send.say(text).await.map(drop)
    }

    /// Sends a direct message to user `recipient` (0 broadcasts).
    pub async fn direct(&self, recipient: u64, text: &str) -> Result<(), ClientError> {
        self.send.direct(recipient, text).await.map(drop)
    }

    /// Asks the server who is online (see [`SendHalf::roster`]).
    pub async fn roster(&self) -> Result<(), ClientError> {
        self.send.roster().await.map(drop)
    }

    /// Sends the leave event; the server then ends the stream.
    pub async fn leave(&self) -> Result<(), ClientError> {
        self.send.leave().await.map(drop)
    }

    /// What the server offers, from its welcome (see [`ReceiveHalf::offers`]).
    pub fn offers(&self) -> Offers {
        self.recv.offers()
    }

    /// The next message, or `None` when the server ended the stream cleanly.
    pub async fn next(&mut self) -> Result<Option<pb::ChatMessage>, ClientError> {
        self.recv.next().await
    }

    /// What a clean end of the stream means; see [`ReceiveHalf::clean_end`].
    pub fn clean_end(&self) -> Result<(), ClientError> {
        self.recv.clean_end()
    }
}

impl SendHalf {
    /// The participant's username.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The Lamport clock both halves share.
    pub fn clock(&self) -> &LamportClock {
        &self.clock
    }

    /// Sends one event stamped with a fresh tick; returns that Lamport time.
    async fn send(&self, event: chat_event::Event) -> Result<u64, ClientError> {
        let timestamp = self.clock.tick();
        let ev = pb::ChatEvent {
            timestamp,
            event: Some(event),
        };
        self.events
            .send(ev)
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(timestamp)
    }

    /// Broadcasts a chat message; returns the Lamport time it was sent at.
    pub async fn say(&self, text: &str) -> Result<u64, ClientError> {
        self.direct(0, text).await
    }

    /// Sends a direct message to user `recipient` (0 broadcasts); returns the Lamport time it
    /// was sent at. chittyd sends the sender its own copy (kind DIRECT, `sender_id` itself)
    /// once the message went to a recipient who was online, or an ERROR naming the recipient:
    /// that reply, not this call, says whether it was delivered. Send one only to a server
    /// whose welcome offers "direct" ([`Offers::direct`]): the original Chitty-Chat ignores the
    /// recipient and broadcasts the text.
    pub async fn direct(&self, recipient: u64, text: &str) -> Result<u64, ClientError> {
        self.send(chat_event::Event::Message(chat_event::ChatMessage {
            username: self.username.clone(),
            message: text.to_owned(),
            recipient_id: recipient,
        }))
        .await
    }

    /// Asks who is online; the answer is a ROSTER message. Only for a server whose welcome
    /// offers "roster" ([`Offers::roster`]). It counts against the rate limit like a message.
    pub async fn roster(&self) -> Result<u64, ClientError> {
        self.send(chat_event::Event::Roster(chat_event::RosterRequest {}))
            .await
    }

    /// Sends the leave event; the server then ends the stream.
    pub async fn leave(&self) -> Result<u64, ClientError> {
        self.send(chat_event::Event::Leave(chat_event::UserLeave {
            username: self.username.clone(),
        }))
        .await
    }
}

impl ReceiveHalf {
    /// Its user id, once its own join notice has arrived.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// The next message, or `None` when the server ended the stream cleanly (then
    /// [`ReceiveHalf::clean_end`] says whether that was a shutdown). The server's welcome is
    /// not a message for people: it is kept ([`ReceiveHalf::server`]) and not returned.
    pub async fn next(&mut self) -> Result<Option<pb::ChatMessage>, ClientError> {
        loop {
            let Some(msg) = self.inbound.message().await? else {
                return Ok(None);
            };
            self.clock.observe(msg.timestamp);
            if msg.kind == pb::chat_message::Kind::Welcome as i32 {
                self.id = Some(msg.sender_id);
                self.server = msg.server;
                continue;
            }
            self.stopping |= reconnect::is_shutdown_notice(&msg);
            if self.id.is_none() && is_own_join(&msg, &self.username) {
                self.id = Some(msg.sender_id);
            }
            return Ok(Some(msg));
        }
    }

    /// What the server said it offers in its welcome (`None` before the welcome, or from a
    /// server that sends none: one without chitty's extensions).
    pub fn server(&self) -> Option<&pb::ServerInfo> {
        self.server.as_ref()
    }

    /// What the server offers, as far as its welcome says. Meaningful once the first message
    /// has arrived: the welcome comes first, so a server that has sent something else first
    /// sends none, and offers nothing beyond the original protocol.
    pub fn offers(&self) -> Offers {
        Offers::from_welcome(self.server.as_ref())
    }

    /// What a clean end of the stream means: [`ClientError::ServerStopped`] after the server's
    /// shutdown notice (a restart, worth reconnecting), otherwise `Ok` (the server ended the
    /// session on purpose, or after our leave).
    pub fn clean_end(&self) -> Result<(), ClientError> {
        if self.stopping {
            Err(ClientError::ServerStopped)
        } else {
            Ok(())
        }
    }
}

/// Whether `msg` is the join notice of `username` itself, the one that tells a participant its
/// own id (in `sender_id`).
pub fn is_own_join(msg: &pb::ChatMessage, username: &str) -> bool {
    msg.kind == pb::chat_message::Kind::Join as i32 && msg.subject == username
}

/// Replaces control characters so that nothing a server or another user sends can drive the
/// terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}
