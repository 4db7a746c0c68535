//! The script's steps, played against the hub: each event first goes through the model (what
//! must happen), then to the hub, and what the hub did is checked against the prediction.

use super::model::{Bucket, Expect, Expected, Verdict};
use super::script::{Claim, Input, Opening, Step, Whom, small_id};
use super::{MAX_PEERS, SHUTDOWN, Slot, World, model};
use crate::frame::Frame;
use crate::peer::Peer;
use chitty::clock::MAX_PEER_TIMESTAMP;
use chitty::hub::outbox::Ending;
use chitty::hub::rules::same_name;
use chitty::hub::{Event, Flow, SessionError, Target, Transport, UserInfo};
use futures_util::FutureExt as _;
use std::borrow::Cow;
use std::collections::HashSet;
use std::time::Duration;

/// What the model expects of one event, worked out before the hub sees it.
enum Prediction {
    /// Nothing the model follows (the session's own rules, which `event_validation` checks).
    Nothing,
    /// The session is past its join deadline: the event ends it.
    TimedOut,
    /// A join, with this outcome.
    Join(Result<(), SessionError>),
    /// A message that reaches the hub: its bucket decides, at Lamport time `lamport`.
    Bucket { lamport: u64, recipient: u64 },
}

impl World {
    fn slot(&mut self, who: u8) -> Option<usize> {
        (!self.slots.is_empty()).then(|| usize::from(who) % self.slots.len())
    }

    fn listed(&self, id: u64) -> bool {
        self.hub.users().iter().any(|u| u.id == id)
    }

    pub(super) fn step(&mut self, step: &Step<'_>) {
        match *step {
            Step::Connect {
                websocket,
                opening,
                pace,
            } => self.connect(websocket, opening, pace),
            Step::Send { who, stamp, input } => {
                let Some(i) = self.slot(who) else { return };
                let timestamp = stamp.get(self.hub.clock().now());
                self.send(i, timestamp, input);
            }
            Step::Advance(span) => {
                let ticks = span.ticks();
                self.model.now += ticks;
                self.time.advance(model::duration(ticks));
            }
            Step::Timers => self.timers(),
            Step::Drop { who } => {
                if let Some(i) = self.slot(who) {
                    self.slots[i].peer.handle = None;
                }
            }
            Step::Disconnect { who } => {
                if let Some(i) = self.slot(who)
                    && let Some(h) = self.slots[i].peer.handle.as_mut()
                {
                    h.disconnect();
                    assert!(h.is_ended());
                }
            }
            Step::Violation { who } => {
                if let Some(i) = self.slot(who)
                    && let Some(h) = self.slots[i].peer.handle.as_mut()
                {
                    h.violation(SessionError::BadFrame("fuzz".into()));
                    assert!(h.is_ended());
                }
            }
            Step::Kick { target, ban } => {
                let name;
                let who = match target {
                    Whom::Name(n) => {
                        name = n.get();
                        Target::Name(name)
                    }
                    Whom::Id(n) => Target::Id(small_id(n)),
                };
                let seconds = ban.map(|b| b.seconds());
                let kicked = self
                    .hub
                    .kick(who, "fuzz", seconds.map(Duration::from_secs), "fuzz")
                    .now_or_never()
                    .expect("a single node kicks at once")
                    .expect("a single node needs no stream");
                if let Some(info) = kicked {
                    assert!(
                        !self.listed(info.id),
                        "user {} still listed after its kick",
                        info.id
                    );
                    // Only a name in the room can be banned.
                    if let Some(seconds) = seconds
                        && !info.name.is_empty()
                    {
                        self.model.ban(&info.name, seconds);
                    }
                }
            }
            Step::Announce { text } => {
                let before = self.hub.clock().now();
                let lamport = self
                    .hub
                    .announce(&text.get(), "fuzz")
                    .now_or_never()
                    .expect("a single node announces at once")
                    .expect("a single node needs no stream");
                assert_eq!(lamport, before + 1);
            }
            Step::Shutdown => self.shutdown(),
        }
    }

    /// A new session, opened as the script says.
    fn connect(&mut self, websocket: bool, opening: Opening<'_>, pace: u8) {
        if self.slots.len() >= MAX_PEERS {
            return;
        }
        let transport = if websocket {
            Transport::WebSocket
        } else {
            Transport::Grpc
        };
        let users = self.hub.users();
        let max = self.hub.config().max_participants;
        let bucket = self.bucket();
        let mut slot = Slot {
            peer: Peer::new(&self.hub, transport),
            pace: 1 + usize::from(pace % 6),
            name: None,
            gone_at: None,
            leaves_seen: HashSet::new(),
            connected: self.model.now,
            bucket: None,
            ends: None,
            active: None,
        };
        match opening {
            Opening::Nothing => {}
            Opening::Join(n) => {
                let want = self.model.join(n.get(), &users, max);
                let flow = slot
                    .peer
                    .handle()
                    .handle(0, Event::Join { username: n.get() });
                slot.joined(want, flow, n.get(), bucket);
            }
            Opening::Direct => {
                let want = self.model.connect(&users, max);
                let h = slot.peer.handle();
                let got = h
                    .connect_direct()
                    .now_or_never()
                    .expect("a single node registers at once");
                assert_eq!(got.as_ref().err(), want.as_ref().err(), "direct connect");
                assert_eq!(h.is_ended(), want.is_err());
                match want {
                    Ok(()) => slot.bucket = bucket,
                    Err(e) => slot.ends = Some(Ending::Error(e)),
                }
            }
        }
        self.slots.push(slot);
    }

    /// A fresh bucket for a session starting now, if the rate limit is on.
    fn bucket(&self) -> Option<Bucket> {
        let rate = self.model.limits.rate?;
        Some(Bucket::new(rate, self.model.now))
    }

    /// What the model expects of `input` from slot `i` at `timestamp`.
    fn predict(&self, i: usize, timestamp: u64, input: &Input<'_>, claimed: &str) -> Prediction {
        let slot = &self.slots[i];
        let Some(h) = slot.peer.handle.as_ref() else {
            return Prediction::Nothing;
        };
        if h.is_ended() || timestamp > MAX_PEER_TIMESTAMP {
            return Prediction::Nothing;
        }
        let Some(id) = h.id() else {
            if self.model.past_deadline(slot.connected) {
                return Prediction::TimedOut;
            }
            return match input {
                Input::Join(n) => {
                    let max = self.hub.config().max_participants;
                    Prediction::Join(self.model.join(n.get(), &self.hub.users(), max))
                }
                _ => Prediction::Nothing,
            };
        };
        let recipient = match *input {
            // A roster request counts against the bucket like a broadcast.
            Input::Broadcast { .. } | Input::Roster => 0,
            Input::Direct { recipient, .. } => small_id(recipient).max(1),
            _ => return Prediction::Nothing,
        };
        let own = slot.name.as_deref().unwrap_or_default();
        let impersonates = !claimed.is_empty() && !same_name(claimed, own);
        // A session the hub removed (cut off, kicked, flooded) is not listed; its events are
        // dropped before they take a Lamport time.
        if impersonates || !self.listed(id) {
            return Prediction::Nothing;
        }
        let lamport = self.hub.clock().now().max(timestamp) + 1;
        Prediction::Bucket { lamport, recipient }
    }

    /// One event from slot `i`.
    fn send(&mut self, i: usize, timestamp: u64, input: Input<'_>) {
        let own = self.slots[i].name.clone().unwrap_or_default();
        let claim = |c: Claim<'_>| match c {
            Claim::Me => String::new(),
            Claim::Own => own.clone(),
            Claim::Other(n) => n.get().to_owned(),
        };
        // The owned parts first, so that the event can borrow them.
        let (username, text) = match input {
            Input::Join(n) => (n.get().to_owned(), Cow::Borrowed("")),
            Input::Broadcast { claim: c, text } | Input::Direct { claim: c, text, .. } => {
                (claim(c), text.get())
            }
            Input::Leave(c) => (claim(c), Cow::Borrowed("")),
            Input::Empty | Input::Roster => (String::new(), Cow::Borrowed("")),
            Input::Invalid { reason, .. } => (String::new(), reason.get()),
        };
        let event = match input {
            Input::Join(_) => Event::Join {
                username: &username,
            },
            Input::Broadcast { .. } => Event::Message {
                username: &username,
                text: &text,
                recipient: 0,
            },
            Input::Direct { recipient, .. } => Event::Message {
                username: &username,
                text: &text,
                recipient: small_id(recipient).max(1),
            },
            Input::Leave(_) => Event::Leave {
                username: &username,
            },
            Input::Empty => Event::Empty,
            Input::Roster => Event::Roster,
            Input::Invalid { recipient, .. } => Event::Invalid {
                reason: &text,
                recipient: small_id(recipient),
            },
        };
        let prediction = self.predict(i, timestamp, &input, &username);
        let Some(h) = self.slots[i].peer.handle.as_mut() else {
            return;
        };
        let (was_ended, id) = (h.is_ended(), h.id());
        let flow = h.handle(timestamp, event);
        if timestamp > MAX_PEER_TIMESTAMP {
            assert!(h.is_ended(), "a timestamp of {timestamp} was accepted");
        }
        if was_ended {
            assert!(h.is_ended(), "an ended session came back");
        }
        if id.is_none() && h.id().is_some() {
            assert!(
                matches!(prediction, Prediction::Join(Ok(()))),
                "{input:?} joined against the rules"
            );
        }
        match prediction {
            Prediction::Nothing => {}
            Prediction::TimedOut => {
                assert_eq!(flow, Flow::Ended, "{input:?} past the join deadline");
                self.slots[i].ends = Some(self.model.join_timeout());
            }
            Prediction::Join(want) => {
                let bucket = self.bucket();
                self.slots[i].joined(want, flow, &username, bucket);
            }
            Prediction::Bucket { lamport, recipient } => {
                let id = id.expect("a message that reached the hub came from a session with an id");
                self.bucket_decided(i, id, lamport, recipient);
            }
        }
    }

    /// Slot `i` (user `id`) sent a message that reached the hub at Lamport time `lamport`: its
    /// bucket decides, and the model says what that must look like.
    fn bucket_decided(&mut self, i: usize, id: u64, lamport: u64, recipient: u64) {
        // Later times may follow at once (slow consumers cut off by this event's frames).
        assert!(
            self.hub.clock().now() >= lamport,
            "a message that reached the hub took no time"
        );
        let Some(rate) = self.model.limits.rate else {
            self.model.expect.insert(
                lamport,
                Expected {
                    what: Expect::Passed,
                    reach: Vec::new(),
                },
            );
            return;
        };
        let now = self.model.now;
        let bucket = self.slots[i]
            .bucket
            .as_mut()
            .expect("a session in the hub has a bucket");
        let expected = match bucket.take(rate, now) {
            Verdict::Pass => Expected {
                what: Expect::Passed,
                reach: Vec::new(),
            },
            Verdict::Refuse => {
                self.model.rate_limited += 1;
                let frame = Frame::error(lamport, recipient, &rate.refusal());
                Expected {
                    what: Expect::Refused { slot: i, frame },
                    reach: vec![i],
                }
            }
            Verdict::Flood(n) => {
                self.model.rate_limited += 1;
                self.model.floods += 1;
                self.slots[i].ends = Some(Ending::Error(SessionError::Flooding(n)));
                assert!(!self.listed(id), "user {id} still listed after its flood");
                // Everyone else in the room hears of its leave.
                let users = self.hub.users();
                let reach = if self.slots[i].name.is_some() {
                    self.in_room(&users)
                } else {
                    Vec::new()
                };
                Expected {
                    what: Expect::Flood { slot: i, id },
                    reach,
                }
            }
        };
        self.model.expect.insert(lamport, expected);
    }

    /// The slots whose sessions are in the room, per `users`.
    fn in_room(&self, users: &[UserInfo]) -> Vec<usize> {
        let room: HashSet<u64> = users
            .iter()
            .filter(|u| !u.name.is_empty())
            .map(|u| u.id)
            .collect();
        (0..self.slots.len())
            .filter(|&i| self.slots[i].peer.id.is_some_and(|id| room.contains(&id)))
            .collect()
    }

    /// The transports' join timers fire for every session past its deadline that has not
    /// joined.
    fn timers(&mut self) {
        for i in 0..self.slots.len() {
            let connected = self.slots[i].connected;
            let Some(h) = self.slots[i].peer.handle.as_mut() else {
                continue;
            };
            if h.is_ended() || h.id().is_some() || !self.model.past_deadline(connected) {
                continue;
            }
            h.violation(SessionError::JoinTimeout(self.model.limits.join_deadline()));
            assert!(h.is_ended());
            self.slots[i].ends = Some(self.model.join_timeout());
        }
    }

    /// The server shuts down: every session gets the same notice at one Lamport time.
    fn shutdown(&mut self) {
        let first = !self.model.closing;
        if first {
            let lamport = self.hub.clock().now() + 1;
            self.record.shutdown = Some(lamport);
            // Everyone in the hub, in the room or not.
            let listed: HashSet<u64> = self.hub.users().iter().map(|u| u.id).collect();
            let reach = (0..self.slots.len())
                .filter(|&i| self.slots[i].peer.id.is_some_and(|id| listed.contains(&id)))
                .collect();
            let frame = Frame::shutdown(lamport, SHUTDOWN);
            self.model.expect.insert(
                lamport,
                Expected {
                    what: Expect::Shutdown(frame),
                    reach,
                },
            );
            self.model.closing = true;
        }
        let ended = self.hub.shutdown(SHUTDOWN);
        if !first {
            assert_eq!(ended, 0, "a second shutdown ended sessions");
        }
        assert!(self.hub.users().is_empty());
        assert_eq!(self.hub.participants(), 0);
    }
}

impl Slot {
    /// Checks a join's outcome against `want` and notes what the model now knows; `bucket` is
    /// the one a session that joins now starts with.
    fn joined(
        &mut self,
        want: Result<(), SessionError>,
        flow: Flow,
        name: &str,
        bucket: Option<Bucket>,
    ) {
        let h = self.peer.handle();
        match want {
            Ok(()) => {
                assert_eq!(flow, Flow::Continue, "the join as {name:?} failed");
                assert!(h.id().is_some(), "joined without an id");
                self.name = Some(name.to_owned());
                self.bucket = bucket;
            }
            Err(e) => {
                assert_eq!(
                    flow,
                    Flow::Ended,
                    "the join as {name:?} did not fail with {e}"
                );
                assert!(h.is_ended());
                self.ends = Some(Ending::Error(e));
            }
        }
    }
}
