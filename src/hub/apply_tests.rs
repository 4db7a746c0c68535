//! `apply` is deterministic: two hubs fed the same accepted events, as two nodes will be fed the
//! cluster's stream, deliver byte-identical frames with the same Lamport times, ids and names,
//! and end in the same state, whatever their own clocks say. Each hub here has its own sessions
//! and outboxes, and its own `ManualTime`, which never moves: every time a decision depends on
//! comes from the events.

use super::apply::{Accepted, Applied, Opening};
use super::outbox::{Ending, MAX_RUN_BYTES, Outbox, OutboxReader, Taken};
use super::{Hub, HubConfig, LeaveReason, ManualTime, SessionError, Target, Transport};
use crate::audit::Auditor;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

/// One step of a script, naming sessions by their slot.
#[derive(Clone)]
enum Step {
    /// Slot, name, client timestamp, milliseconds after the start.
    Join(usize, &'static str, u64, u64),
    /// A direct-only registration.
    Connect(usize),
    /// Slot, client timestamp, text.
    Say(usize, u64, &'static str),
    /// From, to, text.
    Direct(usize, usize, &'static str),
    /// A direct message to an id nobody has.
    DirectToNobody(usize),
    Roster(usize),
    Refuse(usize, &'static str),
    Leave(usize, LeaveReason),
    /// Name, ban, milliseconds after the start.
    Kick(&'static str, Option<Duration>, u64),
    /// Name, milliseconds after the start.
    Unban(&'static str, u64),
    Announce(&'static str),
}

/// A session as the replicated state has it: id, name, join time, sent, received.
type Listed = (u64, String, u64, u64, u64);

/// One node's hub, its sessions' ends, and what each session has received.
struct Replica {
    hub: Arc<Hub>,
    peer: Arc<str>,
    outboxes: Vec<(Transport, Outbox, OutboxReader)>,
    ids: Vec<Option<u64>>,
    /// Every frame each slot received, in order, as bytes on the wire.
    frames: Vec<Vec<Vec<u8>>>,
    endings: Vec<Option<Ending>>,
    /// What each step applied as, in words.
    results: Vec<String>,
}

/// A fixed instant every event's time counts from, the same for both replicas.
fn start() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

impl Replica {
    fn new(slots: usize) -> Replica {
        // Each replica's own clock stands still at its own reading: apply must not use it.
        let time = Arc::new(ManualTime::new(SystemTime::UNIX_EPOCH));
        let config = HubConfig {
            backlog: 256,
            ..HubConfig::default()
        };
        let hub = Hub::with_time(config, Auditor::disabled(), time);
        let outboxes = (0..slots)
            .map(|i| {
                let transport = if i % 2 == 0 {
                    Transport::Grpc
                } else {
                    Transport::WebSocket
                };
                let (tx, rx) = hub.outbox(transport);
                (transport, tx, rx)
            })
            .collect();
        Replica {
            hub,
            peer: Arc::from("192.0.2.1:4000"),
            outboxes,
            ids: vec![None; slots],
            frames: vec![Vec::new(); slots],
            endings: vec![None; slots],
            results: Vec::new(),
        }
    }

    fn opening(&self, slot: usize) -> Opening<'_> {
        let (transport, outbox, _) = &self.outboxes[slot];
        Opening {
            transport: *transport,
            peer: &self.peer,
            outbox: Some(outbox),
            connected_at: start(),
        }
    }

    fn id(&self, slot: usize) -> u64 {
        self.ids[slot].expect("the script names a session that has an id")
    }

    /// The step as this replica's accepted event.
    fn event(&self, step: &Step) -> Accepted<'_> {
        let at = |ms: u64| start() + Duration::from_millis(ms);
        match *step {
            Step::Join(slot, username, timestamp, ms) => Accepted::Join {
                opening: self.opening(slot),
                timestamp,
                username,
                key: super::rules::fold(username),
                at: at(ms),
            },
            Step::Connect(slot) => Accepted::Connect {
                opening: self.opening(slot),
                at: at(0),
            },
            Step::Say(slot, timestamp, text) => Accepted::Message {
                id: self.id(slot),
                timestamp,
                text,
                at: at(0),
            },
            Step::Direct(from, to, text) => Accepted::Direct {
                id: self.id(from),
                timestamp: 0,
                recipient: self.id(to),
                text,
                at: at(0),
            },
            Step::DirectToNobody(from) => Accepted::Direct {
                id: self.id(from),
                timestamp: 0,
                recipient: 999,
                text: "anyone there?",
                at: at(0),
            },
            Step::Roster(slot) => Accepted::Roster {
                id: self.id(slot),
                timestamp: 0,
            },
            Step::Refuse(slot, why) => Accepted::Refuse {
                id: self.id(slot),
                timestamp: 0,
                recipient: 0,
                why: why.into(),
                chars: 0,
            },
            Step::Leave(slot, ref reason) => Accepted::Leave {
                id: self.id(slot),
                timestamp: 0,
                reason: reason.clone(),
            },
            Step::Kick(name, ban, ms) => Accepted::Kick {
                target: Target::Name(name),
                reason: "spam",
                ban,
                actor: "uid=0",
                at: super::Shown {
                    now: at(ms),
                    wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                },
            },
            Step::Unban(name, ms) => Accepted::Unban {
                name,
                actor: "uid=0",
                at: super::Shown {
                    now: at(ms),
                    wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                },
            },
            Step::Announce(text) => Accepted::Announce {
                text,
                actor: "uid=0",
            },
        }
    }

    /// Applies the step, records what it came to, and drains every outbox.
    fn apply(&mut self, step: &Step) {
        let applied = self.hub.apply_event(self.event(step));
        if let (Step::Join(slot, ..) | Step::Connect(slot), Applied::Opened(Ok(id))) =
            (step, &applied)
        {
            self.ids[*slot] = Some(*id);
        }
        let result = match applied {
            // A session's times are shown from the replica's own clock; the rest must agree.
            Applied::Kicked(Some(info)) => format!(
                "kicked {} {} {} {}",
                info.id, info.name, info.joined_lamport, info.sent
            ),
            other => format!("{other:?}"),
        };
        self.results.push(result);
        let mut cx = Context::from_waker(Waker::noop());
        for (slot, (_, _, reader)) in self.outboxes.iter_mut().enumerate() {
            let frames = &mut self.frames[slot];
            loop {
                match reader.poll_take(&mut cx, MAX_RUN_BYTES, |f| frames.push(f.to_vec())) {
                    Poll::Ready(Taken::Frames) => {}
                    Poll::Ready(Taken::Ended(ending)) => {
                        self.endings[slot] = Some(ending);
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
    }

    /// The replicated state: the clock and every session but its times.
    fn state(&self) -> (u64, u32, Vec<Listed>) {
        let mut users: Vec<_> = self
            .hub
            .users()
            .into_iter()
            .map(|u| (u.id, u.name, u.joined_lamport, u.sent, u.received))
            .collect();
        users.sort();
        (self.hub.clock().now(), self.hub.participants(), users)
    }
}

/// Feeds `script` to two replicas in step and checks they agree after every event.
fn replay(slots: usize, script: &[Step]) -> (Replica, Replica) {
    let (mut a, mut b) = (Replica::new(slots), Replica::new(slots));
    for (n, step) in script.iter().enumerate() {
        a.apply(step);
        b.apply(step);
        assert_eq!(a.results, b.results, "step {n} applied differently");
        assert_eq!(a.ids, b.ids, "step {n} handed out different ids");
        assert_eq!(a.frames, b.frames, "step {n} delivered different bytes");
        assert_eq!(a.endings, b.endings, "step {n} ended sessions differently");
        assert_eq!(a.state(), b.state(), "step {n} left different states");
    }
    (a, b)
}

#[test]
fn two_hubs_fed_the_same_events_deliver_the_same_bytes_and_times() {
    let hour = Duration::from_secs(3600);
    let script = [
        Step::Join(0, "alice", 5, 0),
        Step::Join(1, "Bob", 0, 0),
        // From another node, after Bob's in the order: the name is taken.
        Step::Join(2, "bob", 40, 1),
        Step::Connect(3),
        Step::Say(0, 100, "hello"),
        Step::Say(1, 0, "hi alice"),
        Step::Direct(3, 0, "psst"),
        Step::Direct(0, 1, "across transports"),
        Step::DirectToNobody(1),
        Step::Roster(1),
        Step::Refuse(0, "not JSON"),
        Step::Announce("maintenance at noon"),
        Step::Kick("ALICE", Some(Duration::from_secs(60)), 10_000),
        // Banned at the time the joins carry: 50 s left, then free once the ban has ended.
        Step::Join(4, "Alice", 0, 20_000),
        Step::Join(5, "alice", 0, 70_000),
        Step::Kick("bob", Some(hour), 80_000),
        Step::Unban("BOB", 90_000),
        Step::Join(6, "bob", 7, 90_000),
        Step::Say(6, 1_000, "back"),
        Step::Leave(6, LeaveReason::Leave),
        Step::Leave(3, LeaveReason::Disconnect),
        Step::Leave(3, LeaveReason::Disconnect),
    ];
    let (a, _) = replay(7, &script);

    // What the events came to, by the rules, on both.
    let opened = |n: usize| a.results[n].as_str();
    assert!(opened(0).starts_with("Opened(Ok("), "{}", opened(0));
    assert_eq!(
        opened(2),
        format!(
            "{:?}",
            Applied::Opened(Err(SessionError::NameTaken("bob".into())))
        )
    );
    let banned = SessionError::Banned {
        name: "Alice".into(),
        seconds: 50,
    };
    assert_eq!(opened(13), format!("{:?}", Applied::Opened(Err(banned))));
    assert!(
        opened(14).starts_with("Opened(Ok("),
        "the ban ended at 70 s"
    );
    assert!(opened(16).starts_with("Unbanned(Some("), "{}", opened(16));
    assert!(opened(17).starts_with("Opened(Ok("), "unbanned");
    assert_eq!(opened(21), "Left(false)", "a session leaves once");
    assert_eq!(a.ids[2], None, "a refused join takes no id");
    assert_eq!(
        a.endings[0],
        Some(Ending::Error(SessionError::Kicked("spam".into())))
    );
    // Lamport times: alice's welcome at max(0, 5) + 1, her join next, and "hello" at
    // max(previous, 100) + 1 whatever came between.
    let (clock, participants, users) = a.state();
    assert_eq!(participants, 1, "alice, back after her ban");
    assert_eq!(users.len(), 1);
    assert!(
        clock > 1_000,
        "bob's message at 1,000 moved every replica's clock"
    );
}

#[test]
fn racing_joins_with_one_name_the_first_in_order_wins_on_every_replica() {
    // Two nodes' sessions (slots 0 and 1) race for "carol"; whichever the stream puts first
    // wins on both replicas, and the other is refused on both.
    for (first, second) in [(0, 1), (1, 0)] {
        let script = [
            Step::Join(first, "carol", 3, 0),
            Step::Join(second, "Carol", 3, 0),
            Step::Say(first, 0, "mine"),
        ];
        let (a, b) = replay(2, &script);
        for r in [&a, &b] {
            assert!(r.results[0].starts_with("Opened(Ok("));
            assert_eq!(
                r.results[1],
                format!(
                    "{:?}",
                    Applied::Opened(Err(SessionError::NameTaken("Carol".into())))
                )
            );
            assert!(r.ids[first].is_some() && r.ids[second].is_none());
            assert!(r.frames[second].is_empty(), "the loser saw nothing");
            assert_eq!(r.state().2[0].1, "carol");
        }
    }
}
