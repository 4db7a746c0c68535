//! The input, read as a script: how many nodes, the backlog, the order the nodes' `NodeUp`s
//! reach the stream, then steps until the input runs out.

use arbitrary::{Arbitrary, Unstructured};

pub(super) const MAX_STEPS: usize = 160;

/// Few names, several spellings of one: joins of `ann` on two nodes race for one name.
pub(super) const NAMES: [&str; 8] = ["ann", "ANN", "Ann", "bo", "cy", "SERVER", "", "a b"];

/// Mostly valid texts; the last two break the rules and are refused at their origin.
pub(super) const TEXTS: [&str; 6] = ["hi", "hello, world", "日本語", "¡olé! 😀", "", "\u{1b}[2J"];

#[derive(Debug)]
pub(super) struct Script {
    /// Two or three nodes.
    pub nodes: usize,
    /// Each node's backlog: small ones overflow, and the leave of a slow consumer goes through
    /// the stream.
    pub backlog: usize,
    /// Which node's `NodeUp` goes first into the stream (the others follow in turn).
    pub first_up: usize,
    pub steps: Vec<Step>,
}

impl Script {
    /// Reads steps until the input runs out, so that every byte counts.
    pub fn read(data: &[u8]) -> arbitrary::Result<Script> {
        let mut u = Unstructured::new(data);
        let nodes = 2 + usize::from(u8::arbitrary(&mut u)? % 2);
        let backlog = [4, 16, 64, 1024][usize::from(u8::arbitrary(&mut u)? % 4)];
        let first_up = usize::from(u8::arbitrary(&mut u)?) % nodes;
        let mut script = Script {
            nodes,
            backlog,
            first_up,
            steps: Vec::new(),
        };
        while !u.is_empty() && script.steps.len() < MAX_STEPS {
            script.steps.push(u.arbitrary()?);
        }
        Ok(script)
    }
}

/// One step. `node`, `who` and `to` are taken modulo what there is.
#[derive(Debug, Arbitrary)]
pub(super) enum Step {
    /// A new session on `node` joins as `NAMES[name]`, or registers for direct messages only;
    /// its writer drains after every `pace % 3 + 1`-th step.
    Open {
        node: u8,
        websocket: bool,
        direct_only: bool,
        name: u8,
        stamp: Stamp,
        pace: u8,
    },
    /// A broadcast from a session.
    Say { who: u8, text: u8, stamp: Stamp },
    /// A direct message from one session to another's id (or an id nobody has).
    Direct {
        who: u8,
        to: u8,
        text: u8,
        stamp: Stamp,
    },
    /// A roster request.
    Roster { who: u8 },
    /// A session leaves.
    Leave { who: u8 },
    /// A session's connection breaks (the transport drops its handle).
    Drop { who: u8 },
    /// An operator on `node` kicks a name or a session's id, perhaps with a ban.
    Kick {
        node: u8,
        by_id: bool,
        whom: u8,
        ban: Option<u8>,
    },
    /// An operator on `node` lifts a ban.
    Unban { node: u8, name: u8 },
    /// An operator on `node` announces something.
    Announce { node: u8, text: u8 },
    /// A node says it is alive.
    Heartbeat { node: u8 },
    /// Node `by` declares node `node`'s incarnation lost.
    Lost { by: u8, node: u8 },
    /// A node that was declared lost comes up again.
    Up { node: u8 },
    /// Up to `count` of `node`'s queued events go into the stream, and every node applies them.
    Feed { node: u8, count: u8 },
    /// The same, another weight.
    FeedMore { node: u8, count: u8 },
    /// At least `count` of `node`'s queued events go into the stream as batches, each message
    /// as many as the publisher would send together (`Outbound::gather`).
    Batch { node: u8, count: u8 },
    /// A message that is not chitty's goes into the stream.
    Garbage { bytes: [u8; 3] },
    /// The replicas that lag (the observer, and the late one once it exists) apply up to
    /// `count` more of the stream.
    Observe { count: u8 },
    /// The late replica starts from the snapshot of node `from` (or the observer's), once.
    Snapshot { from: u8 },
    /// One replica is handed the last `back` messages again (a consumer recreated).
    Redeliver { hub: u8, back: u8 },
}

/// A participant's Lamport timestamp: mostly none, sometimes ahead of the clock.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub(super) enum Stamp {
    Zero,
    Ahead(u8),
    Far,
}

impl Stamp {
    /// The timestamp for a clock at `now`.
    pub fn at(self, now: u64) -> u64 {
        match self {
            Stamp::Zero => 0,
            Stamp::Ahead(n) => now + u64::from(n),
            Stamp::Far => 1 << 40,
        }
    }
}
