//! What the hub counts and what it tells the admin interface about each session.

use super::Transport;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

/// Counters an operator wants; every field only grows, except the gauges marked as such.
#[derive(Debug, Default)]
pub struct Stats {
    /// Streams and sockets opened.
    pub connections: AtomicU64,
    /// Successful joins.
    pub joins: AtomicU64,
    /// Broadcast messages accepted.
    pub messages_in: AtomicU64,
    /// Direct messages accepted.
    pub direct_in: AtomicU64,
    /// Frames pushed into outboxes (one per recipient).
    pub deliveries: AtomicU64,
    /// Participants cut off because their backlog overflowed.
    pub slow_consumers: AtomicU64,
    /// Inputs rejected (private notice or protocol violation).
    pub rejected: AtomicU64,
    /// Messages refused by the per-session rate limit.
    pub rate_limited: AtomicU64,
    /// Sessions disconnected for flooding.
    pub flood_disconnects: AtomicU64,
    /// Streams closed because they did not join in time.
    pub join_timeouts: AtomicU64,
    /// Participants removed by an operator.
    pub kicks: AtomicU64,
    /// Events sequenced (each took a Lamport time).
    pub events: AtomicU64,
    /// Time each broadcast took to encode and append to the room log every recipient reads.
    pub fanout: crate::metrics::Histogram,
    /// TCP connections the chat port accepted (before the per-address limits).
    pub accepted: AtomicU64,
    /// Connections closed at accept because their address had too many open.
    pub refused_open_per_ip: AtomicU64,
    /// Connections closed at accept because their address opened too many within the window.
    pub refused_new_per_ip: AtomicU64,
    /// Accepts that failed (mostly out of file descriptors); each makes the accept loop wait.
    pub accept_errors: AtomicU64,
    /// Connections closed because they did not finish the TLS handshake and send a first
    /// request within the handshake timeout.
    pub handshake_timeouts: AtomicU64,
    /// TLS handshakes that failed (plain text on the TLS port, an unacceptable client hello).
    pub tls_failures: AtomicU64,
    /// Gauge: TCP connections open on the chat port.
    pub open_connections: AtomicU64,
    /// Gauge: addresses the per-address limits are tracking (idle ones are forgotten).
    pub tracked_addresses: AtomicU64,
}

/// A connected participant, as the admin interface lists it.
#[derive(Debug, Clone)]
pub struct UserInfo {
    /// Numeric id (one sequence for the whole server).
    pub id: u64,
    /// Username; empty for direct-message-only WebSocket users.
    pub name: String,
    /// grpc or websocket.
    pub transport: Transport,
    /// Peer address.
    pub peer: String,
    /// When it connected.
    pub connected_at: SystemTime,
    /// Lamport time of its join.
    pub joined_lamport: u64,
    /// Messages it sent.
    pub sent: u64,
    /// Frames delivered to its outbox.
    pub received: u64,
    /// Frames waiting in its outbox.
    pub backlog: usize,
    /// When it last sent something.
    pub last_active: SystemTime,
}
