//! Why a session ends or cannot start. The transports map each variant to their own form (a
//! gRPC status, a WebSocket close) in one place each.

use crate::hub::rules::NameError;
use thiserror::Error;

/// An error that ends a session, or refuses one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SessionError {
    /// A message or leave arrived before the join.
    #[error("send a join event before any {0}")]
    NotJoined(&'static str),
    /// A second join on the same stream.
    #[error("this stream already joined as {0}; open a new stream to join again")]
    AlreadyJoined(String),
    /// The username is in use.
    #[error("username {0} is taken by another participant")]
    NameTaken(String),
    /// The username breaks the rules.
    #[error("invalid username: {0}")]
    InvalidName(#[from] NameError),
    /// A message or leave under another participant's name.
    #[error("this stream joined as {own}; it cannot act as {claimed}")]
    Impersonation {
        /// The name the stream joined with.
        own: String,
        /// The name the event claimed.
        claimed: String,
    },
    /// An event with no join, message or leave in it.
    #[error("event has no content: send a join, a message or a leave")]
    EmptyEvent,
    /// A Lamport timestamp beyond what any honest peer sends.
    #[error("timestamp {0} is out of range (at most 2^48)")]
    TimestampOutOfRange(u64),
    /// The participant's backlog overflowed.
    #[error("slow consumer: more than {0} messages waiting to be read; disconnected")]
    SlowConsumer(usize),
    /// Removed by an operator.
    #[error("removed by an operator: {0}")]
    Kicked(String),
    /// The name is banned for a while.
    #[error("username {name} is banned for another {seconds} s")]
    Banned {
        /// The banned name.
        name: String,
        /// Seconds until the ban ends (rounded up).
        seconds: u64,
    },
    /// The server is shutting down and takes no new participants.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Far more messages than the rate limit allows, for a sustained time.
    #[error("flooding: {0} messages over the rate limit within 10 s; disconnected")]
    Flooding(u32),
    /// The stream did not join in time.
    #[error("no join within {} s; closed", .0.as_secs_f64())]
    JoinTimeout(std::time::Duration),
    /// The peer stopped answering keepalive pings.
    #[error("no answer to keepalive pings; the connection is presumed dead")]
    DeadPeer,
    /// A frame over the configured limit.
    #[error("frame too large (at most {0} bytes)")]
    FrameTooLarge(usize),
    /// A frame the transport cannot read at all (for example text that is not UTF-8).
    #[error("unreadable frame: {0}")]
    BadFrame(String),
    /// A frame the transport's protocol forbids (for example an unmasked WebSocket frame).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The server has as many participants as it is configured to take.
    #[error("the server is full ({0} participants); try again later")]
    Full(usize),
    /// A cluster node that cannot reach the cluster's stream (NATS) admits nothing.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl SessionError {
    /// The short machine-readable reason used in audit records and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SessionError::NotJoined(_) => "not_joined",
            SessionError::AlreadyJoined(_) => "already_joined",
            SessionError::NameTaken(_) => "name_taken",
            SessionError::InvalidName(_) => "invalid_name",
            SessionError::Impersonation { .. } => "impersonation",
            SessionError::EmptyEvent => "empty_event",
            SessionError::TimestampOutOfRange(_) => "timestamp_out_of_range",
            SessionError::SlowConsumer(_) => "slow_consumer",
            SessionError::Kicked(_) => "kick",
            SessionError::Banned { .. } => "banned",
            SessionError::ShuttingDown => "shutdown",
            SessionError::Full(_) => "server_full",
            SessionError::FrameTooLarge(_) => "frame_too_large",
            SessionError::Flooding(_) => "flood",
            SessionError::JoinTimeout(_) => "join_timeout",
            SessionError::DeadPeer => "dead_peer",
            SessionError::BadFrame(_) => "bad_frame",
            SessionError::Protocol(_) => "protocol_error",
            SessionError::Unavailable(_) => "unavailable",
        }
    }

    /// The reason code `code` names, as the static string `reason` gives (for a violation
    /// carried by the cluster's stream); "violation" for a code chittyd does not use.
    pub fn code_of(code: &str) -> &'static str {
        const CODES: [&str; 19] = [
            "not_joined",
            "already_joined",
            "name_taken",
            "invalid_name",
            "impersonation",
            "empty_event",
            "timestamp_out_of_range",
            "slow_consumer",
            "kick",
            "banned",
            "shutdown",
            "server_full",
            "frame_too_large",
            "flood",
            "join_timeout",
            "dead_peer",
            "bad_frame",
            "protocol_error",
            "unavailable",
        ];
        CODES
            .iter()
            .find(|c| **c == code)
            .copied()
            .unwrap_or("violation")
    }
}
