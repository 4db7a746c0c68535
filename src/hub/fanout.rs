//! Fan-out and removal: how a delivery reaches every outbox, what a full outbox means, and how a
//! session leaves. All of it runs under the hub lock, called from the hub's operations.

use super::outbox::{self, Ending};
use super::rules::SERVER_NAME;
use super::wire::Delivery;
use super::{Hub, LeaveReason, SessionError, State, Transport};
use crate::pb::chat_message::Kind;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Hub {
    /// Takes a session out of the hub, ends its outbox, and announces its leave (if it was in
    /// the room) to everyone left.
    pub(super) fn remove(&self, state: &mut State, pos: usize, lamport: u64, reason: &LeaveReason) {
        let s = state.sessions.swap_remove(pos);
        state.index.remove(&s.id);
        if let Some(moved) = state.sessions.get(pos) {
            state.index.insert(moved.id, pos);
        }
        if s.in_room {
            state.names.remove(&s.name);
            state.room -= 1;
        }
        let ending = match reason {
            LeaveReason::Leave | LeaveReason::Disconnect => Ending::Clean,
            LeaveReason::SlowConsumer => {
                Ending::Error(SessionError::SlowConsumer(self.config.backlog))
            }
            LeaveReason::Kick(why) => Ending::Error(SessionError::Kicked(why.clone())),
            LeaveReason::Shutdown => Ending::Clean,
            // The transport has already ended the outbox with the violation itself.
            LeaveReason::Violation(_) => Ending::Clean,
        };
        s.outbox.end(ending);
        if self.audit.enabled() {
            let mut r = self.audit_for(&s, lamport, "leave");
            r.reason = Some(match reason {
                LeaveReason::Kick(why) => format!("kick: {why}"),
                LeaveReason::Violation(code) => format!("violation: {code}"),
                other => other.code().to_owned(),
            });
            self.audit.record(r);
        }
        if !s.in_room {
            return;
        }
        let mut text = format!(
            "Participant {} left Chitty-Chat at Lamport time {lamport}",
            s.name
        );
        match reason {
            LeaveReason::SlowConsumer => text.push_str(" (disconnected: too slow to keep up)"),
            LeaveReason::Kick(why) => text.push_str(&format!(" (removed by an operator: {why})")),
            _ => {}
        }
        let room = state.room;
        self.broadcast(
            state,
            &Delivery {
                lamport,
                kind: Kind::Leave,
                from: SERVER_NAME,
                sender_id: s.id,
                recipient_id: 0,
                subject: &s.name,
                text: &text,
                participants: room,
            },
        );
    }

    /// Fan-out: encodes `d` once per wire form in use and pushes the same bytes to every
    /// participant in the room.
    pub(super) fn broadcast(&self, state: &mut State, d: &Delivery<'_>) {
        let started = Instant::now();
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let mut protobuf = None;
        let mut json = None;
        let mut delivered = 0;
        for s in state.sessions.iter_mut().filter(|s| s.in_room) {
            let frame = match s.transport {
                Transport::Grpc => protobuf.get_or_insert_with(|| d.protobuf()),
                Transport::WebSocket => json.get_or_insert_with(|| d.json()),
            };
            // THE overflow rule, the one place it is decided: a participant whose outbox is full
            // is not reading fast enough. Nobody waits for it and nothing is dropped from the
            // middle of its stream (that would break the ordering contract for it); it is cut
            // off as a slow consumer once this fan-out is done, its backlog is freed, and its
            // leave is announced.
            match s.outbox.push(frame.clone()) {
                Ok(()) => {
                    s.received += 1;
                    delivered += 1;
                }
                Err(outbox::Full) => state.overflowed.push(s.id),
            }
        }
        self.stats
            .deliveries
            .fetch_add(delivered, Ordering::Relaxed);
        self.stats.fanout.observe(started.elapsed());
    }

    /// Pushes one frame to one session, under the same overflow rule as `broadcast`.
    pub(super) fn deliver_to(&self, state: &mut State, pos: usize, frame: bytes::Bytes) {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let s = &mut state.sessions[pos];
        match s.outbox.push(frame) {
            Ok(()) => {
                s.received += 1;
                self.stats.deliveries.fetch_add(1, Ordering::Relaxed);
            }
            Err(outbox::Full) => state.overflowed.push(s.id),
        }
    }

    /// Removes every session that overflowed. Each removal announces a leave, which may overflow
    /// others; a work list (not recursion) keeps that bounded by the number of sessions.
    pub(super) fn settle(&self, state: &mut State) {
        while let Some(id) = state.overflowed.pop() {
            if let Some(&pos) = state.index.get(&id) {
                self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
                let lamport = self.clock.tick();
                self.remove(state, pos, lamport, &LeaveReason::SlowConsumer);
            }
        }
    }
}

/// A SERVER notice for everyone.
pub(crate) fn notice(lamport: u64, text: &str, participants: u32) -> Delivery<'_> {
    Delivery {
        lamport,
        kind: Kind::Notice,
        from: SERVER_NAME,
        sender_id: 0,
        recipient_id: 0,
        subject: "",
        text,
        participants,
    }
}
