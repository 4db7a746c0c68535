//! The hub's session state machine driven by arbitrary scripts: up to eight sessions on both
//! transports (some direct-only) join, chat, send direct messages, leave, break the protocol, are
//! dropped (a disconnect), kicked and banned, overflow small backlogs, and see the server shut
//! down, with arbitrary names, texts, recipients and Lamport timestamps. Each session's writer
//! drains its outbox at its own pace (every step, or every few), so slow consumers happen too.
//!
//! After every step it checks the ordering contract and the bookkeeping:
//! - each session's timestamps strictly increase, and none is ahead of the hub clock, which
//!   never goes back;
//! - a Lamport time names one event: every observer of a broadcast got the same frame, and a
//!   private frame (error, direct, welcome) went to one session only. With the previous point
//!   this is "every participant sees the broadcasts in the same order";
//! - broadcasts reach only sessions in the room, direct messages only their recipient, and a
//!   session's first frame is its own join or its welcome;
//! - a participant joins at most once and leaves at most once (each observer sees its leave at
//!   most once, all at one time), never speaks after its leave nor sees its own leave;
//! - the hub's user list and participant count agree with each other and with the outboxes: a
//!   session is listed exactly when its outbox has not ended;
//! - no loss: a participant that ended cleanly (or is still there) received every broadcast
//!   anyone received between its join and its leave, and one that was cut off has no gap up to
//!   its last frame;
//! - once every handle is dropped, the hub is empty; and nothing panics.
//!
//! With `CHITTY_FUZZ_DEBUG` set in the environment, each input's script is printed first, which
//! turns a failing input into a readable reproducer.

use crate::frame::Frame;
use crate::peer::Peer;
use arbitrary::{Arbitrary, Unstructured};
use chitty::clock::MAX_PEER_TIMESTAMP;
use chitty::hub::outbox::Ending;
use chitty::hub::rules::SERVER_NAME;
use chitty::hub::{Event, Flow, Hub, SessionError, Target, Transport};
use chitty::pb::chat_message::Kind;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const MAX_PEERS: usize = 8;
const MAX_STEPS: usize = 128;

const NAMES: [&str; 10] = [
    "alice",
    "bob",
    "carol",
    "dave",
    "SERVER",
    "server",
    "",
    "a b",
    "sixteen_chars_ok",
    "seventeen_chars_x",
];

/// Mostly valid messages; the rest break one rule each.
const TEXTS: [&str; 8] = [
    "hi",
    "hello, world",
    "日本語",
    "SERVER",
    "¡olé! 😀",
    "",
    "red \u{1b}[31m",
    "\u{9b}2J",
];

/// Characters of 1 to 4 bytes, repeated around the length limit by `Text::Repeat`.
const WIDE: [char; 4] = ['a', 'é', '語', '😀'];

#[derive(Debug)]
struct Script<'a> {
    backlog: u8,
    max_participants: u8,
    steps: Vec<Step<'a>>,
}

impl<'a> Script<'a> {
    /// Reads steps until the input runs out: no length prefix or continuation flags, so that
    /// every byte counts and a mutation rarely cuts a script short.
    fn read(data: &'a [u8]) -> arbitrary::Result<Script<'a>> {
        let mut u = Unstructured::new(data);
        let mut script = Script {
            backlog: u.arbitrary()?,
            max_participants: u.arbitrary()?,
            steps: Vec::new(),
        };
        while !u.is_empty() && script.steps.len() < MAX_STEPS {
            script.steps.push(u.arbitrary()?);
        }
        Ok(script)
    }
}

/// A string of at most `max` bytes (the valid UTF-8 prefix of what the input has there), so that
/// one string cannot swallow the rest of the script.
fn short<'a>(u: &mut Unstructured<'a>, max: u8) -> arbitrary::Result<&'a str> {
    let len = usize::from(u8::arbitrary(u)? % max.max(1));
    let bytes = u.bytes(len.min(u.len()))?;
    Ok(match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    })
}

#[derive(Debug)]
enum Step<'a> {
    /// A new session, opened the way `opening` says. Its writer drains the outbox after every
    /// `pace % 6 + 1`-th step: a slow one falls behind.
    Connect {
        websocket: bool,
        opening: Opening<'a>,
        pace: u8,
    },
    /// One event from one session.
    Send {
        who: u8,
        stamp: Stamp,
        input: Input<'a>,
    },
    /// The transport drops the handle (a broken connection).
    Drop { who: u8 },
    /// The transport sees the input end.
    Disconnect { who: u8 },
    /// The transport detects abuse (an oversized or unreadable frame).
    Violation { who: u8 },
    /// An operator removes someone, perhaps with a ban.
    Kick {
        target: Whom<'a>,
        ban_minutes: Option<u16>,
    },
    /// An operator's notice to the room.
    Announce { text: Text<'a> },
    /// The server shuts down.
    Shutdown,
}

/// Weighted by hand (a derived enum picks variants evenly): mostly events, so that scripts get
/// somewhere before their sessions end, and rarely a shutdown, which ends everything.
impl<'a> Arbitrary<'a> for Step<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=149 => Step::Send {
                who: u.arbitrary()?,
                stamp: u.arbitrary()?,
                input: u.arbitrary()?,
            },
            150..=184 => Step::Connect {
                websocket: u.arbitrary()?,
                opening: u.arbitrary()?,
                pace: u.arbitrary()?,
            },
            185..=194 => Step::Drop {
                who: u.arbitrary()?,
            },
            195..=204 => Step::Disconnect {
                who: u.arbitrary()?,
            },
            205..=214 => Step::Violation {
                who: u.arbitrary()?,
            },
            215..=229 => Step::Kick {
                target: u.arbitrary()?,
                ban_minutes: u.arbitrary()?,
            },
            230..=252 => Step::Announce {
                text: u.arbitrary()?,
            },
            253..=255 => Step::Shutdown,
        })
    }
}

/// What a new session does first.
#[derive(Debug, Clone, Copy)]
enum Opening<'a> {
    /// Nothing yet: its first event decides.
    Nothing,
    /// It joins the room at once, as `?username=` does on WebSocket.
    Join(Name<'a>),
    /// It registers as a direct-message-only user, as a WebSocket user without a name does.
    Direct,
}

/// Weighted by hand: most sessions join, so that the room fills up.
impl<'a> Arbitrary<'a> for Opening<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=39 => Opening::Nothing,
            40..=199 => Opening::Join(u.arbitrary()?),
            200..=255 => Opening::Direct,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Stamp {
    Zero,
    Small(u8),
    /// The hub clock's time.
    Now,
    /// Ahead of the hub clock by this much.
    Ahead(u16),
    /// Around the largest accepted timestamp.
    Limit(i8),
    Any(u64),
}

/// Weighted by hand: mostly honest clocks; one beyond the limit ends the session.
impl<'a> Arbitrary<'a> for Stamp {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=59 => Stamp::Zero,
            60..=119 => Stamp::Small(u.arbitrary()?),
            120..=179 => Stamp::Now,
            180..=234 => Stamp::Ahead(u.arbitrary()?),
            235..=247 => Stamp::Limit(u.arbitrary()?),
            248..=255 => Stamp::Any(u.arbitrary()?),
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Input<'a> {
    Join(Name<'a>),
    Broadcast {
        claim: Claim<'a>,
        text: Text<'a>,
    },
    Direct {
        claim: Claim<'a>,
        text: Text<'a>,
        recipient: u8,
    },
    Leave(Claim<'a>),
    Empty,
    Invalid {
        reason: Text<'a>,
        recipient: u8,
    },
}

/// Weighted by hand: mostly messages; the events that end a session (a second join among them)
/// are rarer, so that the room fills up.
impl<'a> Arbitrary<'a> for Input<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=19 => Input::Join(u.arbitrary()?),
            20..=159 => Input::Broadcast {
                claim: u.arbitrary()?,
                text: u.arbitrary()?,
            },
            160..=209 => Input::Direct {
                claim: u.arbitrary()?,
                text: u.arbitrary()?,
                recipient: u.arbitrary()?,
            },
            210..=224 => Input::Leave(u.arbitrary()?),
            225..=234 => Input::Empty,
            235..=255 => Input::Invalid {
                reason: u.arbitrary()?,
                recipient: u.arbitrary()?,
            },
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Name<'a> {
    Pool(u8),
    Raw(&'a str),
}

/// Weighted by hand: mostly names from the pool, which clash and get reused.
impl<'a> Arbitrary<'a> for Name<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=191 => Name::Pool(u.arbitrary()?),
            192..=255 => Name::Raw(short(u, 24)?),
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Claim<'a> {
    /// An empty username: "me".
    Me,
    /// The name the session joined with.
    Own,
    Other(Name<'a>),
}

/// Weighted by hand: a claim of another name ends the session, so it is the rare one.
impl<'a> Arbitrary<'a> for Claim<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=119 => Claim::Me,
            120..=229 => Claim::Own,
            230..=255 => Claim::Other(u.arbitrary()?),
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Text<'a> {
    Pool(u8),
    /// One of `WIDE`, 120 to 135 times: both sides of the 128-character limit.
    Repeat(u8, u8),
    Raw(&'a str),
}

impl<'a> Arbitrary<'a> for Text<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? {
            0..=169 => Text::Pool(u.arbitrary()?),
            170..=209 => Text::Repeat(u.arbitrary()?, u.arbitrary()?),
            210..=255 => Text::Raw(short(u, 160)?),
        })
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Whom<'a> {
    Name(Name<'a>),
    Id(u8),
}

impl<'a> Name<'a> {
    fn get(self) -> &'a str {
        match self {
            Name::Pool(i) => NAMES[usize::from(i) % NAMES.len()],
            Name::Raw(s) => s,
        }
    }
}

impl<'a> Text<'a> {
    fn get(self) -> Cow<'a, str> {
        match self {
            Text::Pool(i) => Cow::Borrowed(TEXTS[usize::from(i) % TEXTS.len()]),
            Text::Repeat(c, n) => {
                let c = WIDE[usize::from(c) % WIDE.len()];
                Cow::Owned(std::iter::repeat_n(c, 120 + usize::from(n % 16)).collect())
            }
            Text::Raw(s) => Cow::Borrowed(s),
        }
    }
}

impl Stamp {
    fn get(self, now: u64) -> u64 {
        match self {
            Stamp::Zero => 0,
            Stamp::Small(n) => u64::from(n),
            Stamp::Now => now,
            Stamp::Ahead(n) => now + u64::from(n),
            Stamp::Limit(d) => MAX_PEER_TIMESTAMP.wrapping_add_signed(i64::from(d % 3)),
            Stamp::Any(n) => n,
        }
    }
}

/// Small ids, so that direct messages and kicks by id often hit someone.
fn small_id(n: u8) -> u64 {
    u64::from(n % 12)
}

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
    slots: Vec<Slot>,
    record: Record,
    clock: u64,
}

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
    let mut w = World {
        hub: crate::hub(backlog, max),
        slots: Vec::new(),
        record: Record::default(),
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
    }
    w.check_no_loss();
}

impl World {
    fn slot(&mut self, who: u8) -> Option<usize> {
        (!self.slots.is_empty()).then(|| usize::from(who) % self.slots.len())
    }

    fn step(&mut self, step: &Step<'_>) {
        match *step {
            Step::Connect {
                websocket,
                opening,
                pace,
            } => {
                if self.slots.len() >= MAX_PEERS {
                    return;
                }
                let transport = if websocket {
                    Transport::WebSocket
                } else {
                    Transport::Grpc
                };
                let mut peer = Peer::new(&self.hub, transport);
                let mut name = None;
                if let Opening::Join(n) = opening {
                    let flow = peer.handle().handle(0, Event::Join { username: n.get() });
                    if flow == Flow::Continue {
                        assert!(peer.handle().id().is_some(), "joined without an id");
                        name = Some(n.get().to_owned());
                    }
                }
                if let Opening::Direct = opening {
                    match peer.handle().connect_direct() {
                        Ok(_) => assert!(!peer.handle().is_ended()),
                        Err(e) => {
                            assert!(
                                matches!(e, SessionError::Full(_) | SessionError::ShuttingDown),
                                "{e}"
                            );
                            assert!(peer.handle().is_ended());
                        }
                    }
                }
                self.slots.push(Slot {
                    peer,
                    pace: 1 + usize::from(pace % 6),
                    name,
                    gone_at: None,
                    leaves_seen: HashSet::new(),
                });
            }
            Step::Send { who, stamp, input } => {
                let Some(i) = self.slot(who) else { return };
                let timestamp = stamp.get(self.hub.clock().now());
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
                    Input::Empty => (String::new(), Cow::Borrowed("")),
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
                    Input::Invalid { recipient, .. } => Event::Invalid {
                        reason: &text,
                        recipient: small_id(recipient),
                    },
                };
                let Some(h) = self.slots[i].peer.handle.as_mut() else {
                    return;
                };
                let (was_ended, had_id) = (h.is_ended(), h.id().is_some());
                h.handle(timestamp, event);
                if timestamp > MAX_PEER_TIMESTAMP {
                    assert!(h.is_ended(), "a timestamp of {timestamp} was accepted");
                }
                if was_ended {
                    assert!(h.is_ended(), "an ended session came back");
                }
                if matches!(input, Input::Join(_)) && !had_id && h.id().is_some() {
                    self.slots[i].name = Some(username);
                }
            }
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
            Step::Kick {
                target,
                ban_minutes,
            } => {
                let name;
                let who = match target {
                    Whom::Name(n) => {
                        name = n.get();
                        Target::Name(name)
                    }
                    Whom::Id(n) => Target::Id(small_id(n)),
                };
                // Any length, up to u64::MAX seconds (the hub clamps what an Instant cannot hold).
                let ban = ban_minutes
                    .map(|m| Duration::from_secs(u64::from(m).wrapping_mul(0x0123_4567_89ab)));
                if let Some(info) = self.hub.kick(who, "fuzz", ban, "fuzz") {
                    assert!(
                        self.hub.users().iter().all(|u| u.id != info.id),
                        "user {} still listed after its kick",
                        info.id
                    );
                }
            }
            Step::Announce { text } => {
                let before = self.hub.clock().now();
                let lamport = self.hub.announce(&text.get(), "fuzz");
                assert_eq!(lamport, before + 1);
            }
            Step::Shutdown => {
                let first = self.record.shutdown.is_none();
                if first {
                    self.record.shutdown = Some(self.hub.clock().now() + 1);
                }
                let ended = self.hub.shutdown("fuzz shutdown");
                if !first {
                    assert_eq!(ended, 0, "a second shutdown ended sessions");
                }
                assert!(self.hub.users().is_empty());
                assert_eq!(self.hub.participants(), 0);
            }
        }
    }

    fn drain_all(&mut self) {
        for i in 0..self.slots.len() {
            self.drain(i);
        }
    }

    /// Drains slot `i` and checks every new frame against what is known so far.
    fn drain(&mut self, i: usize) {
        let now = self.hub.clock().now();
        self.slots[i].peer.note_id();
        let new = self.slots[i].peer.drain().to_vec();
        for f in new {
            assert!(f.timestamp <= now, "{f:?} is ahead of the clock at {now}");
            self.observe(i, f);
        }
        // The hub lists a session exactly while its outbox has not ended.
        let slot = &self.slots[i];
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
        let slot = &mut self.slots[i];
        let me = slot.peer.id;
        let first = &slot.peer.frames[0];
        let is_first = first.timestamp == f.timestamp;
        // A session's first frame introduces it: its own join, or its welcome.
        assert!(
            matches!(first.kind, Kind::Join | Kind::Welcome) && Some(first.sender_id) == me,
            "slot {i} (user {me:?}) began with {first:?}"
        );
        if f.is_broadcast() {
            assert_eq!(
                first.kind,
                Kind::Join,
                "a broadcast outside the room: {f:?}"
            );
        }
        let record = &mut self.record;
        let private = (!f.is_broadcast()).then_some(i);
        match record.events.get(&f.timestamp) {
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
            Kind::Direct => assert_eq!(Some(f.recipient_id), me, "misdelivered: {f:?}"),
            Kind::Error | Kind::Notice => {
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

    /// Checks the hub's bookkeeping after a step.
    fn check_step(&mut self) {
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
    }

    /// No loss: a participant that ended cleanly received every broadcast that anyone received
    /// between its join and its leave. One that was cut off (its queued frames dropped) has no
    /// gap up to the last frame it got: nothing is ever skipped in the middle of a stream.
    fn check_no_loss(&self) {
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
            let (Some(id), Some(first), Some(last)) = (slot.peer.id, frames.first(), frames.last())
            else {
                continue;
            };
            if first.kind != Kind::Join {
                continue;
            }
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
