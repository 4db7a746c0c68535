//! The checks run as the script goes: every frame a writer drains against everything observed
//! so far and against the model's expectations, the hub's bookkeeping after every step, and at
//! the end, that nothing was lost.

use super::model::Expect;
use super::{World, model};
use crate::frame::Frame;
use chitty::hub::outbox::Ending;
use chitty::hub::rules::SERVER_NAME;
use chitty::pb::chat_message::Kind;
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;

impl World {
    pub(super) fn drain_all(&mut self) {
        for i in 0..self.slots.len() {
            self.drain(i);
        }
    }

    /// Drains slot `i` and checks every new frame against what is known so far.
    pub(super) fn drain(&mut self, i: usize) {
        let now = self.hub.clock().now();
        self.slots[i].peer.note_id();
        let new = self.slots[i].peer.drain().to_vec();
        for f in new {
            assert!(f.timestamp <= now, "{f:?} is ahead of the clock at {now}");
            self.observe(i, f);
        }
        let slot = &self.slots[i];
        if let (Some(want), Some(got)) = (&slot.ends, &slot.peer.ending) {
            assert_eq!(got, want, "slot {i} ended otherwise than the model says");
        }
        // The hub lists a session exactly while its outbox has not ended.
        if let Some(id) = slot.peer.id {
            let listed = self.hub.users().iter().any(|u| u.id == id);
            assert_eq!(
                listed,
                slot.peer.ending.is_none(),
                "slot {i} (user {id}) listed: {listed}, ending: {:?}",
                slot.peer.ending
            );
        }
    }

    fn observe(&mut self, i: usize, f: Frame) {
        let slot = &self.slots[i];
        let me = slot.peer.id;
        let first = &slot.peer.frames[0];
        let is_first = first.timestamp == f.timestamp;
        // A session's first frame introduces it: its own join, or its welcome.
        assert!(
            matches!(first.kind, Kind::Join | Kind::Welcome) && Some(first.sender_id) == me,
            "slot {i} (user {me:?}) began with {first:?}"
        );
        // The shutdown notice also goes to direct-message-only sessions.
        if f.is_broadcast() && f.kind != Kind::Shutdown {
            let joined = slot.peer.frames.iter().any(|g| {
                g.kind == Kind::Join && Some(g.sender_id) == me && g.timestamp <= f.timestamp
            });
            assert!(joined, "a broadcast outside the room: {f:?}");
        }
        self.check_expected(i, &f);
        // Who received an earlier frame at this time privately, if one did.
        let by_id = self
            .record
            .events
            .get(&f.timestamp)
            .and_then(|(_, by)| *by)
            .and_then(|j| self.slots[j].peer.id);
        let slot = &mut self.slots[i];
        let me = slot.peer.id;
        let record = &mut self.record;
        let private = (!f.is_broadcast()).then_some(i);
        match record.events.get(&f.timestamp) {
            // A direct message's two copies, the recipient's and the sender's, share it.
            Some((seen, Some(by))) if f.kind == Kind::Direct && *by != i => {
                let ids = [me, by_id];
                assert!(
                    seen == &f
                        && f.sender_id != f.recipient_id
                        && ids.contains(&Some(f.sender_id))
                        && ids.contains(&Some(f.recipient_id)),
                    "Lamport time {} names two deliveries: {seen:?} to {by:?} and {f:?} to {i}",
                    f.timestamp
                );
            }
            Some((seen, by)) => {
                assert!(
                    private.is_none() && by.is_none() && seen == &f,
                    "Lamport time {} names two deliveries: {seen:?} to {by:?} and {f:?} to {private:?}",
                    f.timestamp
                );
            }
            None => {
                record.events.insert(f.timestamp, (f.clone(), private));
            }
        }
        match f.kind {
            Kind::Welcome => {
                assert!(is_first, "a welcome after other frames: {f:?}");
                assert_eq!(Some(f.recipient_id), me);
            }
            Kind::Direct => assert!(
                me == Some(f.recipient_id) || me == Some(f.sender_id),
                "misdelivered: {f:?}"
            ),
            Kind::Roster => {
                assert_eq!(f.from, SERVER_NAME);
                let ids: Vec<u64> = f.roster.iter().map(|(id, _, _)| *id).collect();
                assert!(
                    ids.is_sorted_by(|a, b| a < b),
                    "a roster out of order: {f:?}"
                );
                assert!(
                    me.is_some_and(|me| ids.contains(&me)),
                    "a roster without its asker: {f:?}"
                );
                for (id, name, _) in &f.roster {
                    if let Some((joined, joined_as)) = record.joins.get(id) {
                        assert!(*joined < f.timestamp && joined_as == name, "{f:?}");
                    }
                    if let Some(left) = record.leaves.get(id) {
                        assert!(f.timestamp < *left, "a roster lists user {id}, gone: {f:?}");
                    }
                }
            }
            Kind::Error | Kind::Notice | Kind::Shutdown => {
                assert_eq!(f.from, SERVER_NAME);
                assert_eq!(f.sender_id, 0);
            }
            Kind::Join => {
                assert!(!f.subject.is_empty() && f.participants >= 1, "{f:?}");
                let (t, name) = record
                    .joins
                    .entry(f.sender_id)
                    .or_insert((f.timestamp, f.subject.clone()));
                assert_eq!(
                    (*t, &*name),
                    (f.timestamp, &f.subject),
                    "two joins for one id"
                );
                if let Some(leave) = record.leaves.get(&f.sender_id) {
                    assert!(f.timestamp < *leave, "joined after leaving: {f:?}");
                }
                for spoke in record.spoke.get(&f.sender_id).into_iter().flatten() {
                    assert!(f.timestamp < *spoke, "spoke before joining: {f:?}");
                }
            }
            Kind::Leave => {
                assert_ne!(Some(f.sender_id), me, "a participant saw its own leave");
                assert!(
                    slot.leaves_seen.insert(f.sender_id),
                    "slot {i} saw user {} leave twice: {f:?}",
                    f.sender_id
                );
                let t = record.leaves.entry(f.sender_id).or_insert(f.timestamp);
                assert_eq!(*t, f.timestamp, "user {} left twice", f.sender_id);
                if let Some((joined, name)) = record.joins.get(&f.sender_id) {
                    assert!(*joined < f.timestamp);
                    assert_eq!(name, &f.subject);
                }
                for spoke in record.spoke.get(&f.sender_id).into_iter().flatten() {
                    assert!(*spoke < f.timestamp, "spoke after leaving: {f:?}");
                }
            }
            Kind::Message => {
                assert_ne!(f.from, SERVER_NAME);
            }
        }
        if matches!(f.kind, Kind::Message | Kind::Direct) {
            if let Some(leave) = record.leaves.get(&f.sender_id) {
                assert!(f.timestamp < *leave, "spoke after leaving: {f:?}");
            }
            if let Some((joined, _)) = record.joins.get(&f.sender_id) {
                assert!(*joined < f.timestamp, "spoke before joining: {f:?}");
            }
            record
                .spoke
                .entry(f.sender_id)
                .or_default()
                .push(f.timestamp);
        }
    }

    /// Checks frame `f`, received by slot `i`, against what the model expects at its time.
    fn check_expected(&self, i: usize, f: &Frame) {
        let Some(expected) = self.model.expect.get(&f.timestamp) else {
            return;
        };
        match &expected.what {
            Expect::Passed => assert!(
                !(f.kind == Kind::Error && f.text.starts_with("rate limit")),
                "slot {i} got a rate-limit refusal for a message its bucket let through: {f:?}"
            ),
            Expect::Refused { slot, frame } => {
                assert_eq!(i, *slot, "slot {i} got slot {slot}'s refusal {f:?}");
                assert_eq!(f, frame, "the refusal");
            }
            Expect::Flood { slot, id } => {
                assert_ne!(i, *slot, "the flooder received {f:?} after its flood");
                assert!(
                    f.kind == Kind::Leave && f.sender_id == *id,
                    "slot {i} got {f:?} where user {id}'s leave for flooding was due"
                );
            }
            Expect::Shutdown(frame) => assert_eq!(f, frame, "slot {i}'s shutdown notice"),
        }
    }

    /// Every expected frame reached the slots it had to, unless they were cut off.
    pub(super) fn check_reach(&self) {
        for (t, expected) in &self.model.expect {
            for &i in &expected.reach {
                let peer = &self.slots[i].peer;
                if matches!(peer.ending, Some(Ending::Error(_))) {
                    continue;
                }
                assert!(
                    peer.frames.iter().any(|f| f.timestamp == *t),
                    "slot {i} (ended {:?}) never got {:?} at {t}",
                    peer.ending,
                    expected.what
                );
            }
        }
    }

    /// The time-driven figures after a step: the counters, the uptime, and each session's
    /// connection and last activity times.
    fn check_time(&mut self) {
        let stats = self.hub.stats();
        let model = &self.model;
        assert_eq!(
            stats.rate_limited.load(Relaxed),
            model.rate_limited,
            "rate_limited"
        );
        assert_eq!(
            stats.flood_disconnects.load(Relaxed),
            model.floods,
            "floods"
        );
        assert_eq!(
            stats.join_timeouts.load(Relaxed),
            model.join_timeouts,
            "join timeouts"
        );
        assert_eq!(self.hub.uptime(), model::duration(model.now), "uptime");
        let at = |tick: u64| crate::wall_start() + model::duration(tick);
        for u in self.hub.users() {
            let now = self.model.now;
            let Some(slot) = self.slots.iter_mut().find(|s| s.peer.id == Some(u.id)) else {
                continue;
            };
            assert_eq!(
                u.connected_at,
                at(slot.connected),
                "user {}'s connection time",
                u.id
            );
            // A session is active when it joins (or registers) and whenever a message of its
            // is accepted; steps are checked one by one, so a change happened now.
            let (tick, sent) = slot.active.get_or_insert((now, u.sent));
            if u.sent != *sent {
                assert!(u.sent > *sent, "user {}'s sent count went back", u.id);
                *tick = now;
                *sent = u.sent;
            }
            assert_eq!(u.last_active, at(*tick), "user {}'s last activity", u.id);
        }
    }

    /// Checks the hub's bookkeeping after a step.
    pub(super) fn check_step(&mut self) {
        let now = self.hub.clock().now();
        assert!(
            now >= self.clock,
            "the clock went from {} to {now}",
            self.clock
        );
        self.clock = now;
        let users = self.hub.users();
        let ids: HashSet<u64> = users.iter().map(|u| u.id).collect();
        assert_eq!(ids.len(), users.len(), "duplicate ids: {users:?}");
        let names: Vec<&str> = users
            .iter()
            .map(|u| u.name.as_str())
            .filter(|n| !n.is_empty())
            .collect();
        let unique: HashSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "duplicate names: {names:?}");
        assert_eq!(self.hub.participants() as usize, names.len());
        assert!(users.len() <= self.hub.config().max_participants);
        for slot in &mut self.slots {
            slot.peer.note_id();
            let Some(id) = slot.peer.id else { continue };
            if ids.contains(&id) {
                assert!(slot.peer.ending.is_none(), "user {id} listed after its end");
                let handle = slot.peer.handle.as_ref();
                assert!(
                    handle.is_some_and(|h| !h.is_ended()),
                    "user {id} listed after its handle ended"
                );
            } else if slot.gone_at.is_none() {
                slot.gone_at = Some(now);
            }
        }
        for u in &users {
            let ours = self
                .slots
                .iter()
                .filter(|s| s.peer.id == Some(u.id))
                .count();
            assert_eq!(ours, 1, "user {} is not one of the sessions", u.id);
        }
        self.check_time();
    }

    /// No loss: a participant that ended cleanly received every broadcast that anyone received
    /// between its join and its leave. One that was cut off (its queued frames dropped) has no
    /// gap up to the last frame it got: nothing is ever skipped in the middle of a stream.
    pub(super) fn check_no_loss(&self) {
        let mut broadcasts: Vec<u64> = self
            .record
            .events
            .iter()
            .filter(|(_, (f, _))| f.is_broadcast())
            .map(|(t, _)| *t)
            .collect();
        broadcasts.sort_unstable();
        for (i, slot) in self.slots.iter().enumerate() {
            let frames = &slot.peer.frames;
            // The window opens at its own join; a session that never joined has none.
            let own_join = frames
                .iter()
                .find(|f| f.kind == Kind::Join && Some(f.sender_id) == slot.peer.id);
            let (Some(id), Some(first), Some(last)) = (slot.peer.id, own_join, frames.last())
            else {
                continue;
            };
            let end = if matches!(slot.peer.ending, Some(Ending::Error(_))) {
                last.timestamp + 1
            } else {
                let left = self.record.leaves.get(&id).copied();
                left.into_iter()
                    .chain(slot.gone_at)
                    .min()
                    .unwrap_or(u64::MAX)
            };
            let got: HashSet<u64> = slot.peer.frames.iter().map(|f| f.timestamp).collect();
            let window = |t: &&u64| (first.timestamp..end).contains(*t);
            for t in broadcasts.iter().filter(window) {
                assert!(
                    got.contains(t),
                    "slot {i} (user {id}, in the room from {} to {end}) missed {:?}",
                    first.timestamp,
                    self.record.events[t].0
                );
            }
        }
    }
}
