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

mod error;
mod fanout;
mod limits;
mod log;
mod operator;
pub mod outbox;
#[cfg(test)]
mod outbox_stress;
pub mod rules;
mod session;
mod stats;
mod time;
#[cfg(test)]
mod time_tests;
pub mod wire;

pub use error::SessionError;
use limits::{Bucket, Verdict};
pub use limits::{FLOOD_WINDOW, HubConfig, MAX_BAN, RateLimit};
pub use session::{Event, Flow, SessionHandle};
pub use stats::{Stats, UserInfo};
pub use time::{ManualTime, SystemClocks, TimeSource};
pub use wire::Transport;

use crate::audit::{Auditor, Record};
use crate::clock::LamportClock;
use crate::pb::chat_message::Kind;
use log::{Form, RoomLog};
use outbox::{Ending, Outbox, OutboxReader};
use rules::SERVER_NAME;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use wire::Delivery;

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
        }
    }
}

struct Session {
    id: u64,
    name: String,
    transport: Transport,
    peer: Arc<str>,
    outbox: Outbox,
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
#[derive(Clone, Copy)]
struct Shown {
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
            backlog: self.outbox.backlog(),
            last_active: time::as_wall(self.last_active, at.now, at.wall),
        }
    }
}

#[derive(Default)]
struct State {
    /// Dense, so fan-out is a walk over one vector.
    sessions: Vec<Session>,
    /// Session id to its position in `sessions`.
    index: HashMap<u64, usize, IdHasher>,
    /// Username to session id, for every participant in the room.
    names: HashMap<String, u64>,
    /// Sessions in the room.
    room: u32,
    /// Of those, the ones that read the gRPC form.
    room_grpc: u32,
    /// Sessions by transport (gRPC, WebSocket), for the metrics, which must not walk
    /// `sessions`.
    by_transport: [u32; 2],
    /// Banned usernames and when their ban ends (hub time). Expired ones are dropped when the
    /// name joins again or when another ban is added, so it holds at most the bans an operator
    /// gave that have not ended, plus expired ones of names not seen since.
    bans: HashMap<String, Instant>,
    /// Sessions whose outbox overflowed during a fan-out, to be removed once it is done.
    overflowed: Vec<u64>,
    /// No new sessions once shutdown has begun.
    closing: bool,
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
    clock: LamportClock,
    state: Mutex<State>,
    /// Every broadcast, once, for every writer to read.
    log: Arc<RoomLog>,
    config: HubConfig,
    stats: Stats,
    audit: Auditor,
    next_id: AtomicU64,
    /// Every time-dependent decision reads this, at most once per operation.
    time: Arc<dyn TimeSource>,
    started: Instant,
}

impl Hub {
    /// A hub with no sessions, at Lamport time 0, on the system's clocks.
    pub fn new(config: HubConfig, audit: Auditor) -> Arc<Hub> {
        Hub::with_time(config, audit, Arc::new(SystemClocks))
    }

    /// A hub whose time comes from `time`: a [`ManualTime`] lets a check drive rate limits,
    /// bans, join deadlines and the uptime instead of waiting for them.
    pub fn with_time(config: HubConfig, audit: Auditor, time: Arc<dyn TimeSource>) -> Arc<Hub> {
        let started = time.now();
        Arc::new(Hub {
            clock: LamportClock::new(),
            state: Mutex::new(State::default()),
            log: Arc::new(RoomLog::new(config.backlog)),
            config,
            stats: Stats::default(),
            audit,
            next_id: AtomicU64::new(1),
            time,
            started,
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
        state.sessions.iter().map(|s| s.info(head, at)).collect()
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
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn audit_for(&self, s: &Session, lamport: u64, event: &'static str) -> Record {
        let mut r = Record::new(lamport, event);
        r.user = (!s.name.is_empty()).then(|| s.name.clone());
        r.session = Some(s.id);
        r.peer = Some(s.peer.to_string());
        r.transport = Some(s.transport.as_str());
        r
    }

    /// Admits a participant into the room and announces it to everyone, itself included.
    pub(crate) fn join(&self, req: JoinRequest<'_>) -> Result<u64, SessionError> {
        rules::check_username(req.username)?;
        let mut state = self.lock();
        if state.closing {
            return Err(SessionError::ShuttingDown);
        }
        let now = req.now;
        if let Some(until) = state.bans.get(req.username) {
            if *until > now {
                // Rounded up, so never "another 0 s"; a whole number of seconds stays itself.
                let left = *until - now;
                let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                return Err(SessionError::Banned {
                    name: req.username.to_owned(),
                    seconds,
                });
            }
            state.bans.remove(req.username);
        }
        if state.names.contains_key(req.username) {
            return Err(SessionError::NameTaken(req.username.to_owned()));
        }
        if state.sessions.len() >= self.config.max_participants {
            return Err(SessionError::Full(self.config.max_participants));
        }
        // The welcome takes the first time, the join the next: the session's first frame is
        // its welcome, and its own join follows with a later time.
        let welcomed = self.clock.observe(req.timestamp);
        let lamport = self.clock.tick();
        let id = self.next_id();
        let pos = state.sessions.len();
        state.index.insert(id, pos);
        state.names.insert(req.username.to_owned(), id);
        state.room += 1;
        if req.transport == Transport::Grpc {
            state.room_grpc += 1;
        }
        state.by_transport[req.transport.index()] += 1;
        // In the room from here: its own join is the first broadcast it reads.
        let room_from = req.outbox.enter_room();
        state.sessions.push(Session {
            id,
            name: req.username.to_owned(),
            transport: req.transport,
            peer: Arc::clone(req.peer),
            outbox: req.outbox.clone(),
            in_room: true,
            room_from,
            connected_at: req.connected_at,
            joined_lamport: lamport,
            sent: 0,
            received: 0,
            last_active: now,
            bucket: Bucket::new(self.config.rate, now),
        });
        self.stats.joins.fetch_add(1, Ordering::Relaxed);
        // Pushed before the join is appended, so it comes first.
        let frame = wire::welcome(welcomed, id, state.room, &self.config, req.transport);
        self.deliver_to(&mut state, pos, frame);
        if self.audit.enabled() {
            let s = &state.sessions[state.index[&id]];
            self.audit.record(self.audit_for(s, lamport, "join"));
        }
        let text = format!(
            "Participant {} joined Chitty-Chat at Lamport time {lamport}",
            req.username
        );
        let room = state.room;
        self.broadcast(
            &mut state,
            &Delivery {
                lamport,
                kind: Kind::Join,
                from: SERVER_NAME,
                sender_id: id,
                recipient_id: 0,
                subject: req.username,
                text: &text,
                participants: room,
            },
        );
        self.settle(&mut state);
        Ok(id)
    }

    /// Registers a direct-message-only session (a WebSocket user without a username): it gets
    /// its id from the one sequence and a welcome frame carrying it, but no broadcasts.
    pub(crate) fn connect_direct(
        &self,
        transport: Transport,
        peer: &Arc<str>,
        outbox: &Outbox,
        connected_at: Instant,
    ) -> Result<u64, SessionError> {
        let mut state = self.lock();
        if state.closing {
            return Err(SessionError::ShuttingDown);
        }
        if state.sessions.len() >= self.config.max_participants {
            return Err(SessionError::Full(self.config.max_participants));
        }
        let lamport = self.clock.tick();
        let id = self.next_id();
        let now = self.time.now();
        let pos = state.sessions.len();
        state.index.insert(id, pos);
        state.by_transport[transport.index()] += 1;
        state.sessions.push(Session {
            id,
            name: String::new(),
            transport,
            peer: Arc::clone(peer),
            outbox: outbox.clone(),
            in_room: false,
            room_from: 0,
            connected_at,
            joined_lamport: lamport,
            sent: 0,
            received: 0,
            last_active: now,
            bucket: Bucket::new(self.config.rate, now),
        });
        self.stats.joins.fetch_add(1, Ordering::Relaxed);
        if self.audit.enabled() {
            self.audit
                .record(self.audit_for(&state.sessions[pos], lamport, "connect"));
        }
        let frame = wire::welcome(lamport, id, state.room, &self.config, transport);
        self.deliver_to(&mut state, pos, frame);
        self.settle(&mut state);
        Ok(id)
    }

    /// Input a transport could not even parse (malformed JSON, a binary frame): refused with a
    /// private error like any other bad input, so it is audited and takes its place in the order.
    pub(crate) fn refuse(&self, id: u64, timestamp: u64, why: &str, recipient: u64) {
        let mut state = self.lock();
        let Some(&pos) = state.index.get(&id) else {
            return;
        };
        let lamport = self.clock.observe(timestamp);
        self.refuse_text(&mut state, pos, lamport, recipient, why, "");
        self.settle(&mut state);
    }

    /// A broadcast chat message from session `id`. Text that breaks the rules is refused with a
    /// private notice to the sender alone, and its session continues.
    pub(crate) fn message(&self, id: u64, timestamp: u64, text: &str) {
        let mut state = self.lock();
        let Some(&pos) = state.index.get(&id) else {
            return;
        };
        let lamport = self.clock.observe(timestamp);
        let now = self.time.now();
        if !self.within_rate(&mut state, pos, lamport, now, 0, text) {
            self.settle(&mut state);
            return;
        }
        let refused = if !state.sessions[pos].in_room {
            Some(
                "you are not in the broadcast room (connect with ?username=NAME to join it); \
                 send direct messages with a recipient_id"
                    .to_owned(),
            )
        } else {
            rules::check_text(text).err().map(|e| e.to_string())
        };
        if let Some(why) = refused {
            self.refuse_text(&mut state, pos, lamport, 0, &why, text);
            self.settle(&mut state);
            return;
        }
        let s = &mut state.sessions[pos];
        s.sent += 1;
        s.last_active = now;
        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        let s = &state.sessions[pos];
        if self.audit.enabled() {
            let mut r = self.audit_for(s, lamport, "message");
            r.len = Some(text.chars().count());
            r.text = self.audit.with_text().then(|| text.to_owned());
            self.audit.record(r);
        }
        let name = s.name.clone();
        let room = state.room;
        self.broadcast(
            &mut state,
            &Delivery {
                lamport,
                kind: Kind::Message,
                from: &name,
                sender_id: id,
                recipient_id: 0,
                subject: "",
                text,
                participants: room,
            },
        );
        self.settle(&mut state);
    }

    /// A direct message from session `id` to session `recipient`, whatever their transports.
    pub(crate) fn direct(&self, id: u64, timestamp: u64, recipient: u64, text: &str) {
        let mut state = self.lock();
        let Some(&pos) = state.index.get(&id) else {
            return;
        };
        let lamport = self.clock.observe(timestamp);
        let now = self.time.now();
        if !self.within_rate(&mut state, pos, lamport, now, recipient, text) {
            self.settle(&mut state);
            return;
        }
        if let Err(e) = rules::check_text(text) {
            self.refuse_text(&mut state, pos, lamport, recipient, &e.to_string(), text);
            self.settle(&mut state);
            return;
        }
        let Some(&to) = state.index.get(&recipient) else {
            let why = format!("user {recipient} is not connected");
            self.refuse_text(&mut state, pos, lamport, recipient, &why, text);
            self.settle(&mut state);
            return;
        };
        let s = &mut state.sessions[pos];
        s.sent += 1;
        s.last_active = now;
        self.stats.direct_in.fetch_add(1, Ordering::Relaxed);
        let (s, r) = (&state.sessions[pos], &state.sessions[to]);
        if self.audit.enabled() {
            let mut rec = self.audit_for(s, lamport, "direct");
            rec.recipient = Some(recipient);
            rec.recipient_user = (!r.name.is_empty()).then(|| r.name.clone());
            rec.len = Some(text.chars().count());
            rec.text = self.audit.with_text().then(|| text.to_owned());
            self.audit.record(rec);
        }
        let delivery = Delivery {
            lamport,
            kind: Kind::Direct,
            from: &s.name,
            sender_id: id,
            recipient_id: recipient,
            subject: "",
            text,
            participants: state.room,
        };
        let frame = delivery.encode(r.transport);
        // The sender gets it back with the same time: its proof that the message was accepted
        // and went to a recipient that was online (one to a user who is not gets an ERROR).
        let echo = (to != pos).then(|| {
            if s.transport == r.transport {
                frame.clone()
            } else {
                delivery.encode(s.transport)
            }
        });
        self.deliver_to(&mut state, to, frame);
        if let Some(echo) = echo {
            self.deliver_to(&mut state, pos, echo);
        }
        self.settle(&mut state);
    }

    /// Who is online, for session `id` alone (kind ROSTER): sequenced like any event, so it
    /// lists exactly the joins and leaves it comes after. It counts against the session's rate
    /// limit, since it costs more than a message.
    pub(crate) fn roster(&self, id: u64, timestamp: u64) {
        let mut state = self.lock();
        let Some(&pos) = state.index.get(&id) else {
            return;
        };
        let lamport = self.clock.observe(timestamp);
        let now = self.time.now();
        if !self.within_rate(&mut state, pos, lamport, now, 0, "") {
            self.settle(&mut state);
            return;
        }
        let mut listed: Vec<wire::Listed<'_>> = state
            .sessions
            .iter()
            .map(|s| wire::Listed {
                id: s.id,
                name: &s.name,
                transport: s.transport,
            })
            .collect();
        listed.sort_unstable_by_key(|l| l.id);
        listed.truncate(wire::MAX_ROSTER);
        let frame = wire::roster(lamport, &listed, state.room, state.sessions[pos].transport);
        self.deliver_to(&mut state, pos, frame);
        self.settle(&mut state);
    }

    /// Applies the session's token bucket at hub time `now`. Returns false when the message must
    /// not go on: it was refused with a private notice, or the session was disconnected for
    /// flooding.
    fn within_rate(
        &self,
        state: &mut State,
        pos: usize,
        lamport: u64,
        now: Instant,
        recipient: u64,
        text: &str,
    ) -> bool {
        let limit = self.config.rate;
        if limit.is_none() {
            return true;
        }
        match state.sessions[pos].bucket.take(limit, now) {
            Verdict::Pass => true,
            Verdict::Refuse => {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                let l = limit.unwrap_or_default();
                let why = format!(
                    "rate limit: at most {} messages per second (bursts of {}); message dropped",
                    l.per_second, l.burst
                );
                self.refuse_text(state, pos, lamport, recipient, &why, text);
                false
            }
            Verdict::Flood(n) => {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                self.stats.flood_disconnects.fetch_add(1, Ordering::Relaxed);
                let err = SessionError::Flooding(n);
                state.sessions[pos].outbox.end(Ending::Error(err.clone()));
                self.remove(state, pos, lamport, &LeaveReason::Violation(err.reason()));
                false
            }
        }
    }

    /// Refuses input privately: a SERVER notice of kind ERROR to the sender alone.
    fn refuse_text(
        &self,
        state: &mut State,
        pos: usize,
        lamport: u64,
        recipient: u64,
        why: &str,
        text: &str,
    ) {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        let s = &state.sessions[pos];
        if self.audit.enabled() {
            let mut r = self.audit_for(s, lamport, "reject");
            r.reason = Some(why.to_owned());
            r.len = (!text.is_empty()).then(|| text.chars().count());
            r.recipient = (recipient != 0).then_some(recipient);
            self.audit.record(r);
        }
        let frame = Delivery {
            lamport,
            kind: Kind::Error,
            from: SERVER_NAME,
            sender_id: 0,
            recipient_id: recipient,
            subject: "",
            text: why,
            participants: state.room,
        }
        .encode(s.transport);
        self.deliver_to(state, pos, frame);
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
            let lamport = if timestamp <= crate::clock::MAX_PEER_TIMESTAMP {
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

    /// Removes session `id`; its leave is announced to everyone left. Returns false if it was
    /// already gone, so each participant leaves exactly once however many paths try.
    pub(crate) fn leave(&self, id: u64, reason: LeaveReason, timestamp: u64) -> bool {
        let mut state = self.lock();
        let Some(&pos) = state.index.get(&id) else {
            return false;
        };
        let lamport = self.clock.observe(timestamp);
        self.remove(&mut state, pos, lamport, &reason);
        self.settle(&mut state);
        true
    }
}

pub(crate) use fanout::notice;
