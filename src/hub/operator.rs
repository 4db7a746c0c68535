//! What an operator does to the hub (through the admin service or a signal): kick a session
//! (and ban its name), list and lift bans, announce something to everyone, shut down.

use super::apply::Accepted;
use super::outbox::Ending;
use super::wire::Delivery;
use super::{BanInfo, Hub, SessionError, Target, UserInfo, notice};
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
        let event = Accepted::Kick {
            target: who,
            reason,
            ban,
            actor,
            at: self.shown(),
        };
        let kicked = self.apply(&mut state, event);
        self.settle(&mut state);
        kicked.kicked()
    }

    /// The bans in force, soonest to end first.
    pub fn bans(&self) -> Vec<BanInfo> {
        let at = self.shown();
        self.lock().bans.list(at.now, at.wall)
    }

    /// Lifts the ban on `name` (any form of it: `Bob` lifts a ban on `bob`); `None` if there is
    /// none in force. `actor` says who did it, for the audit trail.
    pub fn unban(&self, name: &str, actor: &str) -> Option<BanInfo> {
        let mut state = self.lock();
        let event = Accepted::Unban {
            name,
            actor,
            at: self.shown(),
        };
        self.apply(&mut state, event).unbanned()
    }

    /// A SERVER notice to everyone in the room; returns its Lamport time.
    pub fn announce(&self, text: &str, actor: &str) -> u64 {
        let mut state = self.lock();
        let announced = self.apply(&mut state, Accepted::Announce { text, actor });
        self.settle(&mut state);
        announced.announced()
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
