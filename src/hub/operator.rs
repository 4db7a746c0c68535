//! What an operator does to the hub (through the admin service or a signal): kick a session
//! (and ban its name), list and lift bans, announce something to everyone, shut down.

use super::apply::{Accepted, Applied};
use super::origin::STREAM_PATIENCE;
use super::outbox::Ending;
use super::replica::ReplicaError;
use super::wire::Delivery;
use super::{BanInfo, Hub, SessionError, Target, UserInfo, notice};
use crate::audit::Record;
use crate::pb::chat_message::Kind;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Hub {
    /// Removes an operator-chosen session (`None` if there is none), optionally banning its name
    /// for a while. `actor` says who did it, for the audit trail.
    /// In a cluster it works on a participant of any node, and fails only when the stream does
    /// not apply it in time.
    pub async fn kick(
        &self,
        who: Target<'_>,
        reason: &str,
        ban: Option<Duration>,
        actor: &str,
    ) -> Result<Option<UserInfo>, ReplicaError> {
        let event = Accepted::Kick {
            target: who,
            reason,
            ban,
            actor,
            at: self.shown(),
        };
        Ok(self.operate(event).await?.kicked())
    }

    /// Applies an operator's event here (a single node) or through the stream (a cluster), and
    /// returns what it came to.
    async fn operate(&self, event: Accepted<'_>) -> Result<Applied, ReplicaError> {
        let waiting = {
            let mut state = self.lock();
            let Some(replica) = self.replica() else {
                let applied = self.apply(&mut state, event);
                self.settle(&mut state);
                return Ok(applied);
            };
            self.publish(&mut state, replica, &event, true)
        };
        let waiting = waiting.ok_or(ReplicaError::NotReplicated)?;
        self.outcome(waiting, STREAM_PATIENCE).await
    }

    /// The bans in force, soonest to end first.
    pub fn bans(&self) -> Vec<BanInfo> {
        let at = self.shown();
        self.lock().bans.list(at.now, at.wall)
    }

    /// Lifts the ban on `name` (any form of it: `Bob` lifts a ban on `bob`); `None` if there is
    /// none in force. `actor` says who did it, for the audit trail.
    pub async fn unban(&self, name: &str, actor: &str) -> Result<Option<BanInfo>, ReplicaError> {
        let event = Accepted::Unban {
            name,
            actor,
            at: self.shown(),
        };
        Ok(self.operate(event).await?.unbanned())
    }

    /// A SERVER notice to everyone in the room (on every node); returns its Lamport time.
    pub async fn announce(&self, text: &str, actor: &str) -> Result<u64, ReplicaError> {
        Ok(self
            .operate(Accepted::Announce { text, actor })
            .await?
            .announced())
    }

    /// Begins shutdown: refuses new sessions, tells every session (a message of kind SHUTDOWN,
    /// the protocol's way of saying "reconnect later"), and ends every session cleanly (queued
    /// frames still go out). Returns how many sessions were ended. In a cluster it does that
    /// for this node's sessions, and asks the stream for their leaves so the other nodes see
    /// them go; the notice's Lamport time is this node's own, since it leaves the cluster.
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
            r.count = Some((state.by_transport[0] + state.by_transport[1]).into());
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
        state.room_json = 0;
        state.by_transport = [0; 2];
        let replica = self.replica();
        let mut ended = 0;
        for s in &sessions {
            let Some(outbox) = &s.outbox else { continue };
            ended += 1;
            if let Some(replica) = replica {
                let leave = Accepted::Leave {
                    id: s.id,
                    timestamp: 0,
                    reason: super::LeaveReason::Shutdown,
                };
                self.publish(&mut state, replica, &leave, false);
            }
            let lamport = self.clock.tick();
            let slow = overflowed.contains(&s.id);
            if self.audit.enabled() {
                let mut r = self.audit_for(s, lamport, "leave");
                r.reason = Some(if slow { "slow_consumer" } else { "shutdown" }.into());
                self.audit.record(r);
            }
            if slow {
                self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
                outbox.end(Ending::Error(SessionError::SlowConsumer(
                    self.config.backlog,
                )));
            } else {
                outbox.end(Ending::Clean);
            }
        }
        ended
    }
}
