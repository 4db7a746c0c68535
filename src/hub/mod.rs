//! The hub: the transport-free core of chittyd.
//!
//! It owns the Lamport clock and the sessions, and it alone decides: it validates what
//! participants send, assigns every event its Lamport time and its place in the one total order,
//! encodes each delivery once per wire form, and appends a broadcast once to the room log that
//! every recipient's writer reads (or pushes a private frame into one outbox). All of that
//! happens under one mutex that is never held across I/O (appending and pushing are memory
//! operations that never wait), so the order in which events take the
//! lock is the order every participant sees, and the audit trail, written from the same place,
//! has that order too. Transports (gRPC, WebSocket) only translate between their wire and
//! [`SessionHandle`]. The hub reads the time from the [`TimeSource`] it was created with (see
//! `hub::time`), never from the system's clocks directly.
//!
//! Its Lamport clock, user ids and bans may come from a saved state ([`Hub::restored`]); it then
//! tells the state's [`Keeper`] when a reservation runs low (checked as the lock is released)
//! and hands it the ban set when that changes, without ever waiting for the disk.

mod accepted;
mod apply;
#[cfg(test)]
mod apply_tests;
mod bans;
mod error;
mod fanout;
mod limits;
mod log;
mod node_audit;
mod operator;
mod origin;
pub mod outbox;
#[cfg(test)]
mod outbox_stress;
mod replica;
#[cfg(test)]
mod replica_tests;
pub mod rules;
mod session;
mod stats;
mod time;
#[cfg(test)]
mod time_tests;
pub mod wire;

pub use bans::BanInfo;
pub use error::SessionError;
use limits::Bucket;
pub use limits::{FLOOD_WINDOW, HubConfig, MAX_BAN, RateLimit};
pub use replica::{
    MAX_QUEUED, NodeInfo, OriginCursor, Outbound, Outgoing, ReplicaError, Snapshot, SnapshotBan,
    SnapshotSession, StreamEvent,
};
pub use session::{Event, Flow, SessionHandle};
pub use stats::{Stats, UserInfo};
pub use time::{ManualTime, SystemClocks, TimeSource};
pub use wire::Transport;

use crate::audit::{Auditor, Record};
use crate::clock::LamportClock;
use crate::state::{Keeper, Restored};
use bans::Bans;
use log::{Form, RoomLog};
use outbox::{Outbox, OutboxReader};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Whom an operator means.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A participant in the room, by username.
    Name(&'a str),
    /// Any session, by user id.
    Id(u64),
}

/// How a participant left; recorded in the audit trail and shown in the leave notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveReason {
    /// It sent a leave event.
    Leave,
    /// Its stream ended or broke without a leave.
    Disconnect,
    /// Its backlog overflowed.
    SlowConsumer,
    /// An operator removed it.
    Kick(String),
    /// The server shut down.
    Shutdown,
    /// It broke the protocol; the reason code says how.
    Violation(&'static str),
    /// Its node left the cluster, or was not heard from within the node timeout.
    NodeLost,
}

impl LeaveReason {
    fn code(&self) -> &'static str {
        match self {
            LeaveReason::Leave => "leave",
            LeaveReason::Disconnect => "disconnect",
            LeaveReason::SlowConsumer => "slow_consumer",
            LeaveReason::Kick(_) => "kick",
            LeaveReason::Shutdown => "shutdown",
            LeaveReason::Violation(_) => "violation",
            LeaveReason::NodeLost => "node_lost",
        }
    }
}

struct Session {
    id: u64,
    name: String,
    /// The name's folded form (`rules::fold`), its key in the name table; empty outside the room.
    key: String,
    transport: Transport,
    peer: Arc<str>,
    /// Where its frames go: `None` for a participant of another node of the cluster, whose
    /// frames that node delivers.
    outbox: Option<Outbox>,
    /// The incarnation of the node it entered through (0 on a single node).
    origin: u64,
    /// Its node has asked the stream for its leave (a slow consumer in a cluster): nothing more
    /// is asked for it.
    leaving: bool,
    /// Whether it receives broadcasts (gRPC participants always; WebSocket users that joined).
    in_room: bool,
    /// The first room-log entry it reads, if it is in the room.
    room_from: u64,
    connected_at: Instant,
    joined_lamport: u64,
    sent: u64,
    /// Private frames queued for it (broadcasts are counted from the log).
    received: u64,
    last_active: Instant,
    bucket: Bucket,
}

/// The time of one listing: the hub's monotonic time and the wall clock at that moment, to show
/// the sessions' times as dates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shown {
    now: Instant,
    wall: std::time::SystemTime,
}

impl Session {
    /// What the admin interface shows; `head` is the room log's head.
    fn info(&self, head: u64, at: Shown) -> UserInfo {
        let broadcasts = if self.in_room {
            head.saturating_sub(self.room_from)
        } else {
            0
        };
        UserInfo {
            id: self.id,
            name: self.name.clone(),
            transport: self.transport,
            peer: self.peer.to_string(),
            connected_at: time::as_wall(self.connected_at, at.now, at.wall),
            joined_lamport: self.joined_lamport,
            sent: self.sent,
            received: self.received + broadcasts,
            backlog: self.outbox.as_ref().map_or(0, Outbox::backlog),
            last_active: time::as_wall(self.last_active, at.now, at.wall),
            node: String::new(),
        }
    }
}

#[derive(Default)]
struct State {
    /// Dense, so fan-out is a walk over one vector.
    sessions: Vec<Session>,
    /// Session id to its position in `sessions`.
    index: HashMap<u64, usize, IdHasher>,
    /// Folded username (`rules::fold`) to session id, for every participant in the room: `bob`
    /// and `Bob` are one name.
    names: HashMap<String, u64>,
    /// Sessions in the room, on every node of a cluster.
    room: u32,
    /// Of those, this node's that read the gRPC form, and the JSON form: the forms to encode.
    room_grpc: u32,
    room_json: u32,
    /// This node's sessions by transport (gRPC, WebSocket), for the metrics, which must not
    /// walk `sessions`.
    by_transport: [u32; 2],
    /// Banned names (by folded form) and when their ban ends; see `Bans`.
    bans: Bans,
    /// Sessions whose outbox overflowed during a fan-out, to be removed once it is done.
    overflowed: Vec<u64>,
    /// No new sessions once shutdown has begun.
    closing: bool,
    /// The cluster's side of the state (`hub::replica`); empty on a single node.
    cluster: replica::ClusterState,
}

/// Hashes session ids. They are handed out by the hub in sequence, never chosen by a client, so
/// a multiplicative hash spreads them well and no input can be crafted to collide; the default
/// SipHash would cost more than the rest of a direct message's lookup.
#[derive(Default, Clone, Copy)]
struct IdHasher;

impl std::hash::BuildHasher for IdHasher {
    type Hasher = IdHash;
    fn build_hasher(&self) -> IdHash {
        IdHash(0)
    }
}

struct IdHash(u64);

impl std::hash::Hasher for IdHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0 ^ id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The hub lock, held for one operation. Writers parked on the room log are woken when it is
/// released, not while it is held (`RoomLog::wake_parked`): the operation's cost under the lock
/// stays the same whatever the size of the room.
struct Locked<'a> {
    /// `Some` until dropped.
    state: Option<MutexGuard<'a, State>>,
    log: &'a RoomLog,
    /// Told once the lock is released, in case the operation used up the reservation.
    keeper: &'a Keeper,
}

impl std::ops::Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.state
            .as_deref()
            .expect("the hub lock is held until dropped")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.state
            .as_deref_mut()
            .expect("the hub lock is held until dropped")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.state = None;
        self.log.wake_parked();
        self.keeper.check();
    }
}

/// What a new session brings to `Hub::join`.
pub(crate) struct JoinRequest<'a> {
    pub username: &'a str,
    pub timestamp: u64,
    pub transport: Transport,
    pub peer: &'a Arc<str>,
    pub outbox: &'a Outbox,
    /// When its session started, in hub time.
    pub connected_at: Instant,
    /// The hub time of the join (read once, by the session's deadline check).
    pub now: Instant,
}

/// The hub. Shared by every transport as an `Arc<Hub>`.
pub struct Hub {
    /// Shared with the state thread, which reserves its values ahead of use.
    clock: Arc<LamportClock>,
    state: Mutex<State>,
    /// Every broadcast, once, for every writer to read.
    log: Arc<RoomLog>,
    config: HubConfig,
    stats: Stats,
    audit: Auditor,
    /// The next user id; shared with the state thread, like the clock.
    next_id: Arc<AtomicU64>,
    /// The hub's handle on the saved state (nothing is saved without a state directory).
    keeper: Keeper,
    /// Every time-dependent decision reads this, at most once per operation.
    time: Arc<dyn TimeSource>,
    started: Instant,
    /// Set once, with `--cluster`: the stream applies, the origins publish.
    replica: std::sync::OnceLock<replica::Replica>,
}

impl Hub {
    /// A hub with no sessions, at Lamport time 0, on the system's clocks.
    pub fn new(config: HubConfig, audit: Auditor) -> Arc<Hub> {
        Hub::with_time(config, audit, Arc::new(SystemClocks))
    }

    /// A hub whose time comes from `time`: a [`ManualTime`] lets a check drive rate limits,
    /// bans, join deadlines and the uptime instead of waiting for them.
    pub fn with_time(config: HubConfig, audit: Auditor, time: Arc<dyn TimeSource>) -> Arc<Hub> {
        Hub::restored(config, audit, time, Restored::fresh())
    }

    /// A hub that continues from a saved state: its clock, its next user id and its bans (those
    /// that have not ended by `time`).
    pub fn restored(
        config: HubConfig,
        audit: Auditor,
        time: Arc<dyn TimeSource>,
        saved: Restored,
    ) -> Arc<Hub> {
        let started = time.now();
        let state = State {
            bans: Bans::restore(saved.bans, started, time.wall()),
            ..State::default()
        };
        Arc::new(Hub {
            clock: saved.clock,
            state: Mutex::new(state),
            log: Arc::new(RoomLog::new(config.backlog)),
            config,
            stats: Stats::default(),
            audit,
            next_id: saved.next_id,
            keeper: saved.keeper,
            time,
            started,
            replica: std::sync::OnceLock::new(),
        })
    }

    /// A new session's outbox and its writer's end, bounded by the configured backlog and
    /// reading broadcasts in the form `transport` sends.
    pub fn outbox(&self, transport: Transport) -> (Outbox, OutboxReader) {
        let form = match transport {
            Transport::Grpc => Form::Grpc,
            Transport::WebSocket => Form::Json,
        };
        outbox::outbox(&self.log, self.config.backlog, form)
    }

    /// The server's Lamport clock (read it freely; only the hub advances it).
    pub fn clock(&self) -> &LamportClock {
        &self.clock
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The audit handle (for its counters).
    pub fn audit(&self) -> &Auditor {
        &self.audit
    }

    /// The handle on the saved state (for its figures, and to wait until a ban is saved).
    pub fn keeper(&self) -> &Keeper {
        &self.keeper
    }

    /// The limits in force.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Time since the hub was created.
    pub fn uptime(&self) -> Duration {
        self.time.now().saturating_duration_since(self.started)
    }

    /// Participants in the broadcast room.
    pub fn participants(&self) -> u32 {
        self.lock().room
    }

    /// Every connected session, in no particular order.
    pub fn users(&self) -> Vec<UserInfo> {
        let state = self.lock();
        let head = self.log.head();
        let at = self.shown();
        state
            .sessions
            .iter()
            .map(|s| UserInfo {
                node: self.node_of(&state, s.origin),
                ..s.info(head, at)
            })
            .collect()
    }

    /// The time of a listing.
    fn shown(&self) -> Shown {
        Shown {
            now: self.time.now(),
            wall: self.time.wall(),
        }
    }

    fn lock(&self) -> Locked<'_> {
        // Every critical section leaves `State` consistent before anything that could panic, so
        // a poisoned lock is still safe to use; refusing it would take the whole server down.
        Locked {
            state: Some(self.state.lock().unwrap_or_else(|e| e.into_inner())),
            log: &self.log,
            keeper: &self.keeper,
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A new session's id: the next of the node's sequence, or in a cluster the stream
    /// sequence of its opening event, which every replica knows alike.
    fn new_id(&self, state: &State) -> u64 {
        match state.cluster.applying.seq {
            0 => self.next_id(),
            seq => seq,
        }
    }

    /// Whether the event being applied is audited here: by the node it entered through, once.
    fn auditing(&self, state: &State) -> bool {
        self.audit.enabled() && state.cluster.applying.local
    }

    /// Writes `r`, with the node and the stream sequence of the event being applied, if any.
    fn audited(&self, state: &State, mut r: Record) {
        let applying = &state.cluster.applying;
        if applying.seq != 0 {
            r.node = self.replica().map(|c| c.node().to_owned());
            r.seq = Some(applying.seq);
        }
        self.audit.record(r);
    }

    fn audit_for(&self, s: &Session, lamport: u64, event: &'static str) -> Record {
        let mut r = Record::new(lamport, event);
        r.user = (!s.name.is_empty()).then(|| s.name.clone());
        r.session = Some(s.id);
        r.peer = Some(s.peer.to_string());
        r.transport = Some(s.transport.as_str());
        r
    }

    /// Records input refused before or outside a session (a failed join, a protocol violation).
    pub(crate) fn record_violation(
        &self,
        id: Option<u64>,
        name: &str,
        peer: &str,
        transport: Transport,
        timestamp: u64,
        err: &SessionError,
    ) {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        if let SessionError::JoinTimeout(_) = err {
            self.stats.join_timeouts.fetch_add(1, Ordering::Relaxed);
        }
        if self.audit.enabled() {
            // Under the lock, like every event, so the trail stays in Lamport order.
            let _state = self.lock();
            let lamport = if self.replica().is_some() {
                // Only the stream hands out Lamport times in a cluster; the record shows the
                // time this node had reached.
                self.clock.now()
            } else if timestamp <= crate::clock::MAX_PEER_TIMESTAMP {
                self.clock.observe(timestamp)
            } else {
                self.clock.tick()
            };
            let mut r = Record::new(lamport, "reject");
            r.user = (!name.is_empty()).then(|| name.to_owned());
            r.session = id;
            r.peer = Some(peer.to_owned());
            r.transport = Some(transport.as_str());
            r.reason = Some(format!("{}: {err}", err.reason()));
            self.audit.record(r);
        }
    }
}

pub(crate) use fanout::notice;
