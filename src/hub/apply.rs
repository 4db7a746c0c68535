//! The deterministic half of every hub operation: [`Accepted`], an event its origin has already
//! decided to let in, and [`Hub::apply`], which gives it its Lamport time, its id and its place
//! in the room, and delivers its frames.
//!
//! Each operation is split in two. Its origin (`hub::origin` for what participants send,
//! `hub::operator` for the admin calls) decides alone what only the node the event entered
//! through can decide: it reads the hub's time, and checks the text and name rules, the token
//! bucket and its flood limit, the join deadline (in `session`) and whether the node is shutting
//! down. What it lets through (or refuses: a refusal is an event too, since its notice takes a
//! Lamport time and a place in the sender's order) is an `Accepted`: plain values and borrowed
//! text, with any time the outcome depends on carried inside. `apply` then reads only the hub's
//! state and the event: `L = max(previous L, client timestamp) + 1` for a participant's event,
//! `previous L + 1` for an operator's; the next user id; the name table (a join whose folded name
//! is taken is refused: the first join in order wins); the bans, judged at the time the event
//! carries; the frames, the room log's append and the audit record. So two hubs in the same state
//! fed the same events make byte-identical frames, with the same Lamport times, names and ids
//! (the tests below check it).
//!
//! On a single node the two halves run back to back under the one hub lock, with no copy and no
//! allocation between them: exactly what each operation did before the split. In a cluster
//! (`hub::replica`, ARCHITECTURE.md, "The cluster") the JetStream stream is between them: the
//! origin decides and publishes the `Accepted` as a `ClusterEvent`, and every node, the origin
//! included, applies the stream in stream order, so the hubs are replicas of one state machine.
//! What differs in a cluster, so that replicas agree: a session's id is the stream sequence of
//! its opening event (`Hub::new_id`); the times events carry come from the origin's wall clock
//! in the event; the participant limit is checked at the origin; a slow consumer's removal is
//! asked of the stream (`settle`); only the origin audits. The fan-out histogram
//! (`Hub::broadcast`) reads the system's clock to measure its own work, which decides nothing.

use super::outbox::Outbox;
use super::rules::{self, SERVER_NAME};
use super::wire::{self, Delivery};
use super::{
    BanInfo, Bucket, Hub, LeaveReason, Session, SessionError, Shown, State, Target, Transport,
    UserInfo,
};
use crate::audit::Record;
use crate::pb::chat_message::Kind;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub(crate) use super::accepted::{Accepted, Applied, Opening};

impl Hub {
    /// Applies one accepted event, under the hub lock, then removes whoever it overflowed. This
    /// is what a replica will run for each event of the stream.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn apply_event(&self, event: Accepted<'_>) -> Applied {
        let mut state = self.lock();
        let applied = self.apply(&mut state, event);
        self.settle(&mut state);
        applied
    }

    /// Applies one accepted event: deterministic given the state and the event.
    pub(super) fn apply(&self, state: &mut State, event: Accepted<'_>) -> Applied {
        match event {
            Accepted::Join {
                opening,
                timestamp,
                username,
                key,
                at,
            } => Applied::Opened(self.apply_join(state, opening, timestamp, username, key, at)),
            Accepted::Connect { opening, at } => {
                Applied::Opened(self.apply_connect(state, opening, at))
            }
            Accepted::Message {
                id,
                timestamp,
                text,
                at,
            } => {
                self.apply_message(state, id, timestamp, text, at);
                Applied::Done
            }
            Accepted::Direct {
                id,
                timestamp,
                recipient,
                text,
                at,
            } => {
                self.apply_direct(state, id, timestamp, recipient, text, at);
                Applied::Done
            }
            Accepted::Roster { id, timestamp } => {
                self.apply_roster(state, id, timestamp);
                Applied::Done
            }
            Accepted::Refuse {
                id,
                timestamp,
                recipient,
                why,
                chars,
            } => {
                if let Some(&pos) = state.index.get(&id) {
                    let lamport = self.clock.observe(timestamp);
                    self.refuse_text(state, pos, lamport, recipient, &why, chars);
                }
                Applied::Done
            }
            Accepted::Leave {
                id,
                timestamp,
                reason,
            } => Applied::Left(self.apply_leave(state, id, timestamp, &reason)),
            Accepted::Kick {
                target,
                reason,
                ban,
                actor,
                at,
            } => Applied::Kicked(self.apply_kick(state, target, reason, ban, actor, at)),
            Accepted::Unban { name, actor, at } => {
                Applied::Unbanned(self.apply_unban(state, name, actor, at))
            }
            Accepted::Announce { text, actor } => {
                Applied::Announced(self.apply_announce(state, text, actor))
            }
        }
    }

    /// Admits a participant into the room, if its name is free and not banned at `at`, and
    /// announces it to everyone, itself included.
    fn apply_join(
        &self,
        state: &mut State,
        opening: Opening<'_>,
        timestamp: u64,
        username: &str,
        key: String,
        at: Instant,
    ) -> Result<u64, SessionError> {
        if let Some(left) = state.bans.check(&key, at) {
            // Rounded up, so never "another 0 s"; a whole number of seconds stays itself.
            let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            return Err(SessionError::Banned {
                name: username.to_owned(),
                seconds,
            });
        }
        if state.names.contains_key(&key) {
            return Err(SessionError::NameTaken(username.to_owned()));
        }
        // In a cluster each node holds its own participants to the limit, as it admits them.
        if !state.cluster.replicated() && state.sessions.len() >= self.config.max_participants {
            return Err(SessionError::Full(self.config.max_participants));
        }
        // The welcome takes the first time, the join the next: the session's first frame is
        // its welcome, and its own join follows with a later time.
        let welcomed = self.clock.observe(timestamp);
        let lamport = self.clock.tick();
        let id = self.new_id(state);
        let pos = state.sessions.len();
        state.index.insert(id, pos);
        state.names.insert(key.clone(), id);
        state.room += 1;
        if opening.outbox.is_some() {
            match opening.transport {
                Transport::Grpc => state.room_grpc += 1,
                Transport::WebSocket => state.room_json += 1,
            }
            state.by_transport[opening.transport.index()] += 1;
        }
        // In the room from here: its own join is the first broadcast it reads.
        let room_from = opening.outbox.map_or(0, Outbox::enter_room);
        state.sessions.push(Session {
            name: username.to_owned(),
            key,
            in_room: true,
            room_from,
            ..self.opened(state, id, opening, lamport, at)
        });
        self.stats.joins.fetch_add(1, Ordering::Relaxed);
        // Pushed before the join is appended, so it comes first.
        let frame = wire::welcome(welcomed, id, state.room, &self.config, opening.transport);
        self.deliver_to(state, pos, frame);
        if self.auditing(state) {
            let s = &state.sessions[state.index[&id]];
            self.audited(state, self.audit_for(s, lamport, "join"));
        }
        let text = format!("Participant {username} joined Chitty-Chat at Lamport time {lamport}");
        let room = state.room;
        self.broadcast(
            state,
            &Delivery {
                lamport,
                kind: Kind::Join,
                from: SERVER_NAME,
                sender_id: id,
                recipient_id: 0,
                subject: username,
                text: &text,
                participants: room,
            },
        );
        Ok(id)
    }

    /// A session just opened at Lamport time `lamport`, outside the room and without a name (a
    /// join adds both): what a join and a direct-only registration share.
    pub(super) fn opened(
        &self,
        state: &State,
        id: u64,
        opening: Opening<'_>,
        lamport: u64,
        at: Instant,
    ) -> Session {
        Session {
            id,
            name: String::new(),
            key: String::new(),
            transport: opening.transport,
            peer: Arc::clone(opening.peer),
            outbox: opening.outbox.cloned(),
            origin: state.cluster.applying.origin,
            leaving: false,
            in_room: false,
            room_from: 0,
            connected_at: opening.connected_at,
            joined_lamport: lamport,
            sent: 0,
            received: 0,
            last_active: at,
            bucket: Bucket::new(self.config.rate, at),
        }
    }

    /// Registers a direct-message-only session: an id from the one sequence and a welcome
    /// carrying it, but no broadcasts.
    fn apply_connect(
        &self,
        state: &mut State,
        opening: Opening<'_>,
        at: Instant,
    ) -> Result<u64, SessionError> {
        if !state.cluster.replicated() && state.sessions.len() >= self.config.max_participants {
            return Err(SessionError::Full(self.config.max_participants));
        }
        let lamport = self.clock.tick();
        let id = self.new_id(state);
        let pos = state.sessions.len();
        state.index.insert(id, pos);
        if opening.outbox.is_some() {
            state.by_transport[opening.transport.index()] += 1;
        }
        let session = self.opened(state, id, opening, lamport, at);
        state.sessions.push(session);
        self.stats.joins.fetch_add(1, Ordering::Relaxed);
        if self.auditing(state) {
            self.audited(
                state,
                self.audit_for(&state.sessions[pos], lamport, "connect"),
            );
        }
        let frame = wire::welcome(lamport, id, state.room, &self.config, opening.transport);
        self.deliver_to(state, pos, frame);
        Ok(id)
    }

    /// A broadcast: encoded once per wire form in use, appended once to the room log.
    fn apply_message(&self, state: &mut State, id: u64, timestamp: u64, text: &str, at: Instant) {
        let Some(&pos) = state.index.get(&id) else {
            return;
        };
        let lamport = self.clock.observe(timestamp);
        let s = &mut state.sessions[pos];
        s.sent += 1;
        s.last_active = at;
        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        let s = &state.sessions[pos];
        if self.auditing(state) {
            let mut r = self.audit_for(s, lamport, "message");
            r.len = Some(text.chars().count());
            r.text = self.audit.with_text().then(|| text.to_owned());
            self.audited(state, r);
        }
        let name = s.name.clone();
        let room = state.room;
        self.broadcast(
            state,
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
    }

    /// A direct message to its recipient, if connected at this point of the order (else a
    /// refusal to the sender), and its copy to the sender.
    fn apply_direct(
        &self,
        state: &mut State,
        id: u64,
        timestamp: u64,
        recipient: u64,
        text: &str,
        at: Instant,
    ) {
        let Some(&pos) = state.index.get(&id) else {
            return;
        };
        let lamport = self.clock.observe(timestamp);
        let Some(&to) = state.index.get(&recipient) else {
            let why = format!("user {recipient} is not connected");
            self.refuse_text(state, pos, lamport, recipient, &why, text.chars().count());
            return;
        };
        let s = &mut state.sessions[pos];
        s.sent += 1;
        s.last_active = at;
        self.stats.direct_in.fetch_add(1, Ordering::Relaxed);
        let (s, r) = (&state.sessions[pos], &state.sessions[to]);
        if self.auditing(state) {
            let mut rec = self.audit_for(s, lamport, "direct");
            rec.recipient = Some(recipient);
            rec.recipient_user = (!r.name.is_empty()).then(|| r.name.clone());
            rec.len = Some(text.chars().count());
            rec.text = self.audit.with_text().then(|| text.to_owned());
            self.audited(state, rec);
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
        // Encoded only for the ends on this node: in a cluster the other end's node delivers.
        let frame = r.outbox.is_some().then(|| delivery.encode(r.transport));
        // The sender gets it back with the same time: its proof that the message was accepted
        // and went to a recipient that was online (one to a user who is not gets an ERROR).
        let echo = (to != pos && s.outbox.is_some()).then(|| match &frame {
            Some(frame) if s.transport == r.transport => frame.clone(),
            _ => delivery.encode(s.transport),
        });
        if let Some(frame) = frame {
            self.deliver_to(state, to, frame);
        }
        if let Some(echo) = echo {
            self.deliver_to(state, pos, echo);
        }
    }

    /// Who is online, for the asker alone: exactly the joins and leaves before it in the order.
    fn apply_roster(&self, state: &mut State, id: u64, timestamp: u64) {
        let Some(&pos) = state.index.get(&id) else {
            return;
        };
        let lamport = self.clock.observe(timestamp);
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
        self.deliver_to(state, pos, frame);
    }

    /// Refuses input privately: a SERVER notice of kind ERROR to the sender alone.
    fn refuse_text(
        &self,
        state: &mut State,
        pos: usize,
        lamport: u64,
        recipient: u64,
        why: &str,
        chars: usize,
    ) {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        let s = &state.sessions[pos];
        if self.auditing(state) {
            let mut r = self.audit_for(s, lamport, "reject");
            r.reason = Some(why.to_owned());
            r.len = (chars > 0).then_some(chars);
            r.recipient = (recipient != 0).then_some(recipient);
            self.audited(state, r);
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

    /// Removes session `id` and announces its leave; false if it was already gone, so each
    /// participant leaves exactly once however many paths try.
    fn apply_leave(
        &self,
        state: &mut State,
        id: u64,
        timestamp: u64,
        reason: &LeaveReason,
    ) -> bool {
        let Some(&pos) = state.index.get(&id) else {
            return false;
        };
        let lamport = self.clock.observe(timestamp);
        self.remove(state, pos, lamport, reason);
        true
    }

    /// Removes the session `target` names, and bans its name from `at` if asked to.
    fn apply_kick(
        &self,
        state: &mut State,
        target: Target<'_>,
        reason: &str,
        ban: Option<Duration>,
        actor: &str,
        at: Shown,
    ) -> Option<UserInfo> {
        let id = match target {
            Target::Name(name) => *state.names.get(&rules::fold(name))?,
            Target::Id(id) => id,
        };
        let &pos = state.index.get(&id)?;
        let name = state.sessions[pos].name.clone();
        let s = &state.sessions[pos];
        let info = s.info(self.log.head(), at);
        let lamport = self.clock.tick();
        self.stats.kicks.fetch_add(1, Ordering::Relaxed);
        if self.auditing(state) {
            let mut r = self.audit_for(s, lamport, "kick");
            r.reason = Some(reason.to_owned());
            r.actor = Some(actor.to_owned());
            r.count = ban.map(|d| d.as_secs());
            self.audited(state, r);
        }
        if let Some(ban) = ban.filter(|_| !name.is_empty()) {
            state.bans.insert(&name, ban, at.now, reason, actor);
            self.save_bans(state, at);
        }
        let lamport = self.clock.tick();
        self.remove(state, pos, lamport, &LeaveReason::Kick(reason.to_owned()));
        Some(info)
    }

    /// Lifts the ban on any form of `name`, if one is in force at `at`.
    fn apply_unban(
        &self,
        state: &mut State,
        name: &str,
        actor: &str,
        at: Shown,
    ) -> Option<BanInfo> {
        let lifted = state.bans.remove(&rules::fold(name), at.now, at.wall)?;
        let lamport = self.clock.tick();
        if self.auditing(state) {
            let mut r = Record::new(lamport, "unban");
            r.user = Some(lifted.name.clone());
            r.actor = Some(actor.to_owned());
            r.count = Some(
                lifted
                    .until
                    .duration_since(at.wall)
                    .unwrap_or_default()
                    .as_secs(),
            );
            self.audited(state, r);
        }
        self.save_bans(state, at);
        Some(lifted)
    }

    /// Hands the ban set to the state thread, under the lock, so that sets are saved in the
    /// order of the changes.
    fn save_bans(&self, state: &mut State, at: Shown) {
        if self.keeper.path().is_some() {
            self.keeper.save_bans(state.bans.saved(at.now, at.wall));
        }
    }

    /// A SERVER notice to everyone in the room; returns its Lamport time.
    fn apply_announce(&self, state: &mut State, text: &str, actor: &str) -> u64 {
        let lamport = self.clock.tick();
        if self.auditing(state) {
            let mut r = Record::new(lamport, "announce");
            r.actor = Some(actor.to_owned());
            r.len = Some(text.chars().count());
            r.text = Some(text.to_owned());
            self.audited(state, r);
        }
        let room = state.room;
        self.broadcast(state, &super::notice(lamport, text, room));
        lamport
    }
}
