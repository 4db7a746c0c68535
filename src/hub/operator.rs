//! What an operator does to the hub (through the admin service or a signal): kick a session,
//! announce something to everyone, shut down.

use super::outbox::Ending;
use super::wire::Delivery;
use super::{Hub, LeaveReason, MAX_BAN, SessionError, Target, UserInfo, notice};
use crate::audit::Record;
use crate::pb::chat_message::Kind;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Hub {
    /// Removes an operator-chosen session (`None` if there is none), optionally banning its name
    /// for a while. `actor` says who did it, for the audit trail.
    pub fn kick(
        &self,
        who: Target<'_>,
        reason: &str,
        ban: Option<Duration>,
        actor: &str,
    ) -> Option<UserInfo> {
        let mut state = self.lock();
        let id = match who {
            Target::Name(name) => *state.names.get(name)?,
            Target::Id(id) => id,
        };
        let &pos = state.index.get(&id)?;
        let name = state.sessions[pos].name.clone();
        let s = &state.sessions[pos];
        let at = self.shown();
        let info = s.info(self.log.head(), at);
        let lamport = self.clock.tick();
        self.stats.kicks.fetch_add(1, Ordering::Relaxed);
        if self.audit.enabled() {
            let mut r = self.audit_for(s, lamport, "kick");
            r.reason = Some(reason.to_owned());
            r.actor = Some(actor.to_owned());
            r.count = ban.map(|d| d.as_secs());
            self.audit.record(r);
        }
        if let Some(ban) = ban.filter(|_| !name.is_empty()) {
            let now = at.now;
            // A ban longer than the clock can represent is a ban for as long as it can.
            let until = now
                .checked_add(ban.min(MAX_BAN))
                .unwrap_or(now + Duration::from_secs(86_400));
            // Bans that have ended go as a new one comes, so the table holds little more than
            // the bans in force.
            state.bans.retain(|_, until| *until > now);
            state.bans.insert(name, until);
        }
        let lamport = self.clock.tick();
        self.remove(
            &mut state,
            pos,
            lamport,
            &LeaveReason::Kick(reason.to_owned()),
        );
        self.settle(&mut state);
        Some(info)
    }

    /// A SERVER notice to everyone in the room; returns its Lamport time.
    pub fn announce(&self, text: &str, actor: &str) -> u64 {
        let mut state = self.lock();
        let lamport = self.clock.tick();
        if self.audit.enabled() {
            let mut r = Record::new(lamport, "announce");
            r.actor = Some(actor.to_owned());
            r.len = Some(text.chars().count());
            r.text = Some(text.to_owned());
            self.audit.record(r);
        }
        let room = state.room;
        self.broadcast(&mut state, &notice(lamport, text, room));
        self.settle(&mut state);
        lamport
    }

    /// Begins shutdown: refuses new sessions, tells every session (a message of kind SHUTDOWN,
    /// the protocol's way of saying "reconnect later"), and ends every session cleanly (queued
    /// frames still go out). Returns how many sessions were ended.
    pub fn shutdown(&self, text: &str) -> usize {
        let mut state = self.lock();
        if state.closing {
            return 0;
        }
        state.closing = true;
        let lamport = self.clock.tick();
        let room = state.room;
        if self.audit.enabled() {
            let mut r = Record::new(lamport, "shutdown");
            r.count = Some(state.sessions.len() as u64);
            r.reason = Some(text.to_owned());
            self.audit.record(r);
        }
        let last = Delivery {
            kind: Kind::Shutdown,
            ..notice(lamport, text, room)
        };
        self.broadcast(&mut state, &last);
        // Direct-message-only sessions are not in the room; they get it privately, at the same
        // place in the order, so every session learns why its stream ends.
        for pos in 0..state.sessions.len() {
            if !state.sessions[pos].in_room {
                let frame = last.encode(state.sessions[pos].transport);
                self.deliver_to(&mut state, pos, frame);
            }
        }
        self.scan(&mut state);
        let sessions = std::mem::take(&mut state.sessions);
        // Those whose backlog could not take the notice were not keeping up: they end as slow
        // consumers, not cleanly, since their stream is missing what everyone else got.
        let overflowed = std::mem::take(&mut state.overflowed);
        state.index.clear();
        state.names.clear();
        state.room = 0;
        state.room_grpc = 0;
        state.by_transport = [0; 2];
        for s in &sessions {
            let lamport = self.clock.tick();
            let slow = overflowed.contains(&s.id);
            if self.audit.enabled() {
                let mut r = self.audit_for(s, lamport, "leave");
                r.reason = Some(if slow { "slow_consumer" } else { "shutdown" }.into());
                self.audit.record(r);
            }
            if slow {
                self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
                s.outbox.end(Ending::Error(SessionError::SlowConsumer(
                    self.config.backlog,
                )));
            } else {
                s.outbox.end(Ending::Clean);
            }
        }
        sessions.len()
    }
}
