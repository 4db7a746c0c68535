//! Fan-out and removal: how a delivery reaches every outbox, what a full outbox means, and how a
//! session leaves. All of it runs under the hub lock, called from the hub's operations.

use super::outbox::{self, Ending};
use super::rules::SERVER_NAME;
use super::wire::Delivery;
use super::{Hub, LeaveReason, SessionError, State, Transport};
use crate::pb::chat_message::Kind;
use bytes::Bytes;
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
        if s.outbox.is_some() {
            state.by_transport[s.transport.index()] -= 1;
        }
        if s.in_room {
            state.names.remove(&s.key);
            state.room -= 1;
            if s.outbox.is_some() {
                match s.transport {
                    Transport::Grpc => state.room_grpc -= 1,
                    Transport::WebSocket => state.room_json -= 1,
                }
            }
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
            LeaveReason::NodeLost => Ending::Error(SessionError::Unavailable(
                "this node was taken out of the cluster; reconnect".into(),
            )),
        };
        if let Some(outbox) = &s.outbox {
            outbox.end(ending);
        }
        if self.auditing(state) {
            let mut r = self.audit_for(&s, lamport, "leave");
            r.reason = Some(match reason {
                LeaveReason::Kick(why) => format!("kick: {why}"),
                LeaveReason::Violation(code) => format!("violation: {code}"),
                other => other.code().to_owned(),
            });
            self.audited(state, r);
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
            LeaveReason::NodeLost => text.push_str(" (its node left the cluster)"),
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

    /// Fan-out: encodes `d` once per wire form in use and appends it once to the room log,
    /// which every participant's writer reads with its own cursor.
    pub(super) fn broadcast(&self, state: &mut State, d: &Delivery<'_>) {
        // The histogram measures how long the work really took, so it reads the system's
        // clock: it is a measurement, not a decision, and the hub's time may be standing still.
        let started = Instant::now();
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let grpc = if state.room_grpc > 0 {
            d.protobuf()
        } else {
            Bytes::new()
        };
        let json = if state.room_json > 0 {
            d.json()
        } else {
            Bytes::new()
        };
        let (_, scan_due) = self.log.append(grpc, json);
        if scan_due {
            self.scan(state);
        }
        self.stats.deliveries.fetch_add(
            u64::from(state.room_grpc + state.room_json),
            Ordering::Relaxed,
        );
        self.stats.fanout.observe(started.elapsed());
    }

    /// THE overflow rule, the one place it is decided: a participant whose backlog (broadcasts
    /// it has not read plus private frames queued) exceeds the bound is not reading fast
    /// enough. Nobody waits for it and nothing is dropped from the middle of its stream (that
    /// would break the ordering contract for it); it is cut off as a slow consumer once the
    /// current operation is done (`settle`), its backlog is freed, and its leave is announced.
    ///
    /// Broadcasts are checked by this scan of every cursor, every `scan_every` appends (see
    /// `RoomLog::new`), so a reader may run up to one scan interval past the bound before it is
    /// found; the ring is sized so that it still never misses a frame. Private frames are
    /// checked as they are pushed (`deliver_to`).
    pub(super) fn scan(&self, state: &mut State) {
        let head = self.log.head();
        for s in state.sessions.iter().filter(|s| s.in_room && !s.leaving) {
            if let Some(outbox) = &s.outbox
                && outbox.behind(head) > outbox.capacity()
            {
                state.overflowed.push(s.id);
            }
        }
    }

    /// Pushes one frame to one session, under the same overflow rule as `scan`.
    pub(super) fn deliver_to(&self, state: &mut State, pos: usize, frame: bytes::Bytes) {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let s = &mut state.sessions[pos];
        // A session of another node of the cluster: that node delivers.
        let Some(outbox) = &s.outbox else {
            return;
        };
        if s.leaving {
            return;
        }
        // The same rule as `scan`, for a frame to this session alone.
        match outbox.push(frame) {
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
        if state.cluster.replicated() {
            // In a cluster a removal takes a Lamport time, which only the stream may hand out:
            // the session's outbox ends here, now, so it reads nothing more, and its leave is
            // asked of the stream like any other (`replica`).
            return self.settle_replicated(state);
        }
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
