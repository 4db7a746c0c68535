//! The hub's session state machine driven by arbitrary scripts: up to eight sessions on both
//! transports (some direct-only) join, chat, send direct messages, ask for the roster, leave,
//! break the protocol, are
//! dropped (a disconnect), kicked and banned, overflow small backlogs, and see the server shut
//! down, with arbitrary names, texts, recipients and Lamport timestamps. Each session's writer
//! drains its outbox at its own pace (every step, or every few), so slow consumers happen too.
//!
//! Time is the script's: the hub runs on a [`ManualTime`] that only `Advance` steps move (by a
//! quarter second to hours), with the rate limit on (small bursts, so that refusals, refills and
//! floods all happen; off one script in eight), bans from seconds to centuries, and the join
//! deadline, which the script's `Timers` step enforces as the gRPC transport does, late, so that
//! events arriving past the deadline reach the hub first.
//!
//! After every step it checks the ordering contract and the bookkeeping:
//! - each session's timestamps strictly increase, and none is ahead of the hub clock, which
//!   never goes back;
//! - a Lamport time names one event: every observer of a broadcast got the same frame, and a
//!   private frame (error, welcome, roster) went to one session only, and a direct message to
//!   its recipient and, as its copy, to its sender. With the previous point
//!   this is "every participant sees the broadcasts in the same order". The shutdown notice is
//!   the one event that is both: the room's broadcast and, at the same time, the same frame to
//!   each direct-message-only session;
//! - broadcasts reach only sessions that have seen their own join, direct messages only their
//!   recipient and sender, and a session's first frame is its welcome;
//! - a roster is in id order, lists its asker, and lists nobody before their join or after
//!   their leave, under the name they joined with;
//! - a participant joins at most once and leaves at most once (each observer sees its leave at
//!   most once, all at one time), never speaks after its leave nor sees its own leave;
//! - the hub's user list and participant count agree with each other and with the outboxes: a
//!   session is listed exactly when its outbox has not ended;
//! - no loss: a participant that ended cleanly (or is still there) received every broadcast
//!   anyone received between its own join and its leave, and one that was cut off has no gap up to
//!   its last frame;
//! - once every handle is dropped, the hub is empty; and nothing panics.
//!
//! And the time-driven rules, against the model in [`model`]: every message that reaches the
//! hub from a live session goes through its token bucket, exactly as the model's bucket says; a
//! refused message is one private ERROR with the rate-limit text, to its sender alone; a flood
//! ends the sender with `Flooding`, it receives nothing more, and its leave (the only thing at
//! that time) reaches everyone in the room; a banned name is refused with the seconds left until
//! its ban ends and joins normally after; an event from a session past its join deadline ends
//! it with `JoinTimeout` whatever the event, as do the late timers; every join and
//! direct-message-only registration succeeds or fails exactly as the rules say; the counters of
//! refusals, floods and join timeouts, the uptime, and each session's connection and last
//! activity times agree with the model.
//!
//! With `CHITTY_FUZZ_DEBUG` set in the environment, each input's script is printed first, which
//! turns a failing input into a readable reproducer.

mod checks;
mod model;
mod script;
mod steps;

use crate::frame::Frame;
use crate::peer::Peer;
use chitty::audit::Auditor;
use chitty::hub::outbox::Ending;
use chitty::hub::{Hub, ManualTime};
use model::{Bucket, Limits, Model};
use script::Script;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

const MAX_PEERS: usize = 8;

/// One session and what the checks know about it.
struct Slot {
    peer: Peer,
    /// Its writer drains after every `pace`-th step.
    pace: usize,
    /// The name it joined the room with, once it has.
    name: Option<String>,
    /// The hub clock when the hub was first seen without it.
    gone_at: Option<u64>,
    /// Whose leaves it has seen.
    leaves_seen: HashSet<u64>,
    /// The tick its session started (the join deadline counts from here).
    connected: u64,
    /// Its token bucket, once it has joined or registered (with the rate limit on).
    bucket: Option<Bucket>,
    /// How the model says its session ends, once it knows.
    ends: Option<Ending>,
    /// Its last activity (tick) and messages sent, as the user list last showed them.
    active: Option<(u64, u64)>,
}

/// Everything observed so far, across sessions.
#[derive(Default)]
struct Record {
    /// Lamport time to the event it names, and for private frames the slot that got it.
    events: HashMap<u64, (Frame, Option<usize>)>,
    /// User id to its join time and name.
    joins: HashMap<u64, (u64, String)>,
    /// User id to its leave time.
    leaves: HashMap<u64, u64>,
    /// User id to the times of the messages it sent.
    spoke: HashMap<u64, Vec<u64>>,
    /// The Lamport time of the shutdown notice, once the server shut down.
    shutdown: Option<u64>,
}

struct World {
    hub: Arc<Hub>,
    time: Arc<ManualTime>,
    slots: Vec<Slot>,
    record: Record,
    model: Model,
    clock: u64,
}

/// The shutdown notice's text.
const SHUTDOWN: &str = "fuzz shutdown";

/// Runs one input; panics if an invariant breaks.
pub fn check(data: &[u8]) {
    let Ok(script) = Script::read(data) else {
        return;
    };
    if std::env::var_os("CHITTY_FUZZ_DEBUG").is_some() {
        eprintln!("{script:#?}");
    }
    let backlog = 1 + usize::from(script.backlog % 8);
    let max = 2 + usize::from(script.max_participants % 7);
    let limits = Limits::of(&script);
    let time = Arc::new(ManualTime::new(crate::wall_start()));
    let mut w = World {
        hub: Hub::with_time(
            limits.config(backlog, max),
            Auditor::disabled(),
            time.clone(),
        ),
        time,
        slots: Vec::new(),
        record: Record::default(),
        model: Model::new(limits),
        clock: 0,
    };
    for (n, step) in (1..).zip(&script.steps) {
        w.step(step);
        for i in 0..w.slots.len() {
            if n % w.slots[i].pace == 0 {
                w.drain(i);
            }
        }
        w.check_step();
    }
    // Every connection goes away, one at a time with the writers keeping up (so the teardown
    // itself makes no slow consumers); the hub must end up empty, and every writer told so.
    w.drain_all();
    for i in 0..w.slots.len() {
        w.slots[i].peer.handle = None;
        w.drain_all();
        w.check_step();
    }
    assert!(w.hub.users().is_empty(), "sessions left after every drop");
    assert_eq!(w.hub.participants(), 0);
    for (i, slot) in w.slots.iter().enumerate() {
        assert!(slot.peer.ending.is_some(), "slot {i} never ended");
        if let Some(want) = &slot.ends {
            assert_eq!(slot.peer.ending.as_ref(), Some(want), "slot {i}'s ending");
        }
    }
    w.check_no_loss();
    w.check_reach();
}
