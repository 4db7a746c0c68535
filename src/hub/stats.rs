//! What the hub counts and what it tells the admin interface about each session.

use super::{Hub, Transport};
use crate::metric::Snapshot;
use std::sync::atomic::{AtomicU64, Ordering};
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
    pub fanout: crate::metric::Histogram,
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
    /// The cluster node it is connected to (this node's name on a single node with no
    /// cluster: empty).
    pub node: String,
}

impl Hub {
    /// Adds the hub's figures to `out`. The gauges are read under the hub lock, but only as a
    /// few counts the hub keeps as it goes: a scrape never walks the sessions.
    pub fn observe(&self, out: &mut Snapshot) {
        let (room, grpc, websocket) = {
            let state = self.lock();
            (state.room, state.by_transport[0], state.by_transport[1])
        };
        let s = &self.stats;
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.gauge(
            "participants",
            "Participants in the broadcast room.",
            u64::from(room),
        );
        out.gauge(
            "sessions_grpc",
            "Sessions connected over gRPC.",
            u64::from(grpc),
        );
        out.gauge(
            "sessions_websocket",
            "Sessions connected over WebSocket, direct-message-only users included.",
            u64::from(websocket),
        );
        out.gauge("lamport", "The Lamport clock.", self.clock.now());
        out.gauge(
            "uptime_seconds",
            "Seconds since chittyd started.",
            self.uptime().as_secs(),
        );
        out.counter(
            "connections_total",
            "Sessions opened (streams and WebSocket connections).",
            v(&s.connections),
        );
        out.counter("joins_total", "Successful joins.", v(&s.joins));
        out.counter(
            "messages_in_total",
            "Broadcast messages accepted.",
            v(&s.messages_in),
        );
        out.counter(
            "direct_in_total",
            "Direct messages accepted.",
            v(&s.direct_in),
        );
        out.counter(
            "deliveries_total",
            "Frames delivered to participants (one per recipient).",
            v(&s.deliveries),
        );
        out.counter(
            "slow_consumer_disconnects_total",
            "Participants cut off because their backlog overflowed.",
            v(&s.slow_consumers),
        );
        out.counter(
            "rejected_inputs_total",
            "Inputs refused (a private notice or a protocol violation).",
            v(&s.rejected),
        );
        out.counter(
            "rate_limited_total",
            "Messages refused by the per-session rate limit.",
            v(&s.rate_limited),
        );
        out.counter(
            "flood_disconnects_total",
            "Sessions disconnected for flooding.",
            v(&s.flood_disconnects),
        );
        out.counter(
            "join_timeouts_total",
            "Streams closed because they did not join in time.",
            v(&s.join_timeouts),
        );
        out.counter(
            "kicks_total",
            "Participants removed by an operator.",
            v(&s.kicks),
        );
        out.counter(
            "events_total",
            "Events sequenced (each took a Lamport time).",
            v(&s.events),
        );
        out.histograms.push(s.fanout.sample(
            "fanout_seconds",
            "Time to encode one broadcast and append it to the room log every recipient reads.",
        ));
    }
}
