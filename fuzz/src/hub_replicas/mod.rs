//! The replica property of the cluster's hubs, driven by arbitrary scripts. Two or three hubs,
//! each `Hub::replicate`d as one node and brought up with `Hub::node_up`, serve sessions on both
//! transports: joins (racing for one name on different nodes), direct-message-only
//! registrations, broadcasts, direct messages, roster requests, leaves and broken connections,
//! kicks with and without bans, unbans and announcements from any node's operator, heartbeats,
//! nodes declared lost and coming up again, backlogs small enough to overflow.
//!
//! The script also plays the stream: each node's queued events (the receiver `replicate`
//! returned) wait until a `Feed` step moves some of them into the one sequence, so the input
//! decides how the nodes' events interleave, and every node applies each message as it is
//! appended, in that one order. A join is `Pending` until the stream has applied it: its
//! session is polled (`poll_joined`, on a no-op waker) after every step, as are the operators'
//! calls and `node_up`. Two more replicas apply the same sequence at their own pace: an
//! observer with no sessions of its own, and a late one that starts from another replica's
//! `snapshot()` part-way through (the observer's half-way, if the script takes none) and
//! applies the rest. Messages that are not chitty's, and messages delivered again, are in the
//! sequence too.
//!
//! Once the script is over and the stream drained (every queue empty, every wait decided), it
//! checks (in [`checks`]):
//! - every replica has the same Lamport clock, the same `snapshot()` (but for `connected_ms`,
//!   each node's own display of the connection time) and the same `nodes()`, and no session
//!   belongs to a node incarnation the cluster no longer has;
//! - a session of a node is listed exactly while its outbox has not ended;
//! - each participant's frames carry strictly increasing Lamport times, none ahead of its
//!   node's clock;
//! - over the part of the stream two participants were both in the room, they read the same
//!   broadcasts (same Lamport times, senders and texts, in the same order), byte for byte when
//!   they use the same transport, whichever node they are on; and one Lamport time names one
//!   broadcast everywhere.
//!
//! With `CHITTY_FUZZ_DEBUG` set in the environment, each input's script is printed first.

mod checks;
mod script;
mod stream;

use crate::peer::Peer;
use chitty::audit::Auditor;
use chitty::hub::{
    Event, Flow, Hub, HubConfig, ManualTime, Outbound, Outgoing, ReplicaError, SessionError,
    SessionHandle, Target, Transport, UserInfo,
};
use script::{NAMES, Script, Step, TEXTS};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use stream::Lagging;

const MAX_PEERS: usize = 12;

/// What `node_up` and the waits for the stream are given; the runtime's timers never run, so
/// only the stream decides.
const PATIENCE: Duration = Duration::from_secs(5);

type Waiting<T> = Pin<Box<dyn Future<Output = T>>>;

/// One node: its hub, the queue its events wait in for the stream, and its `node_up`.
struct Node {
    hub: Arc<Hub>,
    out: Outbound,
    /// Events taken from `out` but not yet in the stream (what `Outbound::gather` left over).
    held: VecDeque<Outgoing>,
    up: Option<Waiting<Result<u64, ReplicaError>>>,
}

/// One session, on one node.
struct Slot {
    node: usize,
    peer: Peer,
    /// A direct-only registration the stream has not applied yet; it holds the handle.
    connecting: Option<Waiting<(SessionHandle, Result<u64, SessionError>)>>,
    /// A join the stream has not applied yet: the transport reads nothing meanwhile.
    joining: bool,
    pace: usize,
}

/// What an operator's call came to.
enum Done {
    Kicked(Option<UserInfo>),
    Unbanned,
    Announced(u64),
}

struct World {
    nodes: Vec<Node>,
    observer: Lagging,
    late: Option<Lagging>,
    /// The stream: each message's payload, and whether the replicas took it as an event.
    stream: Vec<(Vec<u8>, bool)>,
    slots: Vec<Slot>,
    ops: Vec<Waiting<Result<Done, ReplicaError>>>,
    step: usize,
}

/// Runs one script and checks the replica property; panics on a violation.
pub fn check(data: &[u8]) {
    let Ok(script) = Script::read(data) else {
        return;
    };
    if std::env::var_os("CHITTY_FUZZ_DEBUG").is_some() {
        eprintln!("{script:#?}");
    }
    // The waits for the stream set tokio timers, so a runtime is entered; it never runs them.
    let _runtime = runtime().enter();
    let mut world = World::new(&script);
    world.bring_up(script.first_up);
    for step in &script.steps {
        world.run(step);
        world.step += 1;
        world.settle();
    }
    world.finish();
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime")
    })
}

fn node_name(i: usize) -> String {
    format!("n{i}")
}

fn poll<T>(f: &mut Waiting<T>) -> Poll<T> {
    f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

impl World {
    fn new(script: &Script) -> World {
        let time = Arc::new(ManualTime::new(crate::wall_start()));
        let config = HubConfig {
            backlog: script.backlog,
            max_participants: 64,
            rate: None,
            ..HubConfig::default()
        };
        let hub = |name: &str| {
            let hub = Hub::with_time(config.clone(), Auditor::disabled(), time.clone());
            let out = hub.replicate(name, &format!("{name}:7000"));
            (hub, out)
        };
        let nodes = (0..script.nodes)
            .map(|i| {
                let (hub, out) = hub(&node_name(i));
                Node {
                    hub,
                    out,
                    held: VecDeque::new(),
                    up: None,
                }
            })
            .collect();
        let (hub, out) = hub("observer");
        World {
            nodes,
            observer: Lagging {
                hub,
                out,
                cursor: 0,
                from: 0,
            },
            late: None,
            stream: Vec::new(),
            slots: Vec::new(),
            ops: Vec::new(),
            step: 0,
        }
    }

    /// Every node announces itself; the `NodeUp`s enter the stream from `first` on, in turn.
    fn bring_up(&mut self, first: usize) {
        for i in 0..self.nodes.len() {
            self.up(i);
        }
        self.settle();
        let n = self.nodes.len();
        for k in 0..n {
            self.feed((first + k) % n, usize::MAX);
        }
        self.settle();
        for (i, node) in self.nodes.iter().enumerate() {
            assert!(node.up.is_none(), "n{i} is not up after its NodeUp");
            assert_ne!(node.hub.incarnation(), 0, "n{i} has no incarnation");
        }
    }

    /// Starts node `i`'s `node_up`, unless one is waiting or it is a member.
    fn up(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.up.is_some() || node.hub.incarnation() != 0 {
            return;
        }
        let hub = Arc::clone(&node.hub);
        node.up = Some(Box::pin(async move { hub.node_up(PATIENCE).await }));
    }

    fn run(&mut self, step: &Step) {
        let n = self.nodes.len();
        let node = |i: u8| usize::from(i) % n;
        match *step {
            Step::Open {
                node: i,
                websocket,
                direct_only,
                name,
                stamp,
                pace,
            } => self.open(node(i), websocket, direct_only, name, stamp, pace),
            Step::Say { who, text, stamp } => self.message(who, None, text, stamp),
            Step::Direct {
                who,
                to,
                text,
                stamp,
            } => self.message(who, Some(to), text, stamp),
            Step::Roster { who } => self.send(who, script::Stamp::Zero, Event::Roster),
            Step::Leave { who } => {
                self.send(who, script::Stamp::Zero, Event::Leave { username: "" });
            }
            Step::Drop { who } => {
                if let Some(slot) = self.slot(who) {
                    slot.connecting = None;
                    slot.joining = false;
                    slot.peer.handle = None;
                }
            }
            Step::Kick { node: i, .. }
            | Step::Unban { node: i, .. }
            | Step::Announce { node: i, .. } => self.operate(node(i), step),
            Step::Heartbeat { node: i } => self.nodes[node(i)].hub.heartbeat(),
            Step::Lost { by, node: i } => self.lost(node(by), node(i)),
            Step::Up { node: i } => self.up(node(i)),
            Step::Feed { node: i, count } => self.feed(node(i), 1 + usize::from(count % 16)),
            Step::FeedMore { node: i, count } => self.feed(node(i), usize::from(count)),
            Step::Batch { node: i, count } => self.batch(node(i), 1 + usize::from(count % 64)),
            Step::Garbage { bytes } => self.append(bytes.to_vec()),
            Step::Observe { count } => self.observe(1 + usize::from(count % 32)),
            Step::Snapshot { from } => self.snapshot(usize::from(from)),
            Step::Redeliver { hub, back } => self.redeliver(usize::from(hub), back),
        }
    }

    /// An operator's call on node `i`: it waits for the stream, and is polled with the rest.
    fn operate(&mut self, i: usize, step: &Step) {
        let hub = Arc::clone(&self.nodes[i].hub);
        let op: Waiting<Result<Done, ReplicaError>> = match *step {
            Step::Kick {
                by_id, whom, ban, ..
            } => {
                let id = self.id_of(whom);
                let name = NAMES[usize::from(whom) % NAMES.len()];
                let ban = ban.map(|b| Duration::from_secs(1 + u64::from(b) * 60));
                Box::pin(async move {
                    let target = if by_id {
                        Target::Id(id)
                    } else {
                        Target::Name(name)
                    };
                    hub.kick(target, "fuzz", ban, "op").await.map(Done::Kicked)
                })
            }
            Step::Unban { name, .. } => {
                let name = NAMES[usize::from(name) % NAMES.len()];
                Box::pin(async move { hub.unban(name, "op").await.map(|_| Done::Unbanned) })
            }
            Step::Announce { text, .. } => {
                let text = TEXTS[usize::from(text) % TEXTS.len()];
                Box::pin(async move { hub.announce(text, "op").await.map(Done::Announced) })
            }
            _ => return,
        };
        self.ops.push(op);
    }

    /// A broadcast from the session `who` names, or a direct message to the one `to` names.
    fn message(&mut self, who: u8, to: Option<u8>, text: u8, stamp: script::Stamp) {
        let text = TEXTS[usize::from(text) % TEXTS.len()];
        let recipient = to.map_or(0, |to| self.id_of(to));
        let event = Event::Message {
            username: "",
            text,
            recipient,
        };
        self.send(who, stamp, event);
    }

    /// A new session on node `i` that joins, or registers for direct messages only.
    fn open(
        &mut self,
        i: usize,
        websocket: bool,
        direct_only: bool,
        name: u8,
        stamp: script::Stamp,
        pace: u8,
    ) {
        if self.slots.len() >= MAX_PEERS {
            return;
        }
        let hub = &self.nodes[i].hub;
        let transport = if websocket {
            Transport::WebSocket
        } else {
            Transport::Grpc
        };
        let mut slot = Slot {
            node: i,
            peer: Peer::new(hub, transport),
            connecting: None,
            joining: false,
            pace: 1 + usize::from(pace % 3),
        };
        if direct_only {
            let mut h = slot.peer.handle.take().expect("a new handle");
            slot.connecting = Some(Box::pin(async move {
                let id = h.connect_direct().await;
                (h, id)
            }));
        } else {
            let username = NAMES[usize::from(name) % NAMES.len()];
            let timestamp = stamp.at(hub.clock().now());
            let h = slot.peer.handle();
            let flow = h.handle(timestamp, Event::Join { username });
            slot.joining = flow == Flow::Continue && h.id().is_none();
        }
        self.slots.push(slot);
    }

    /// The slot `who` names, if there is any.
    fn slot(&mut self, who: u8) -> Option<&mut Slot> {
        let n = self.slots.len();
        (n > 0).then(|| &mut self.slots[usize::from(who) % n])
    }

    /// The id of the session `who` names, or `who` itself as an id when it has none.
    fn id_of(&mut self, who: u8) -> u64 {
        self.slot(who)
            .and_then(|s| s.peer.id)
            .unwrap_or(u64::from(who))
    }

    /// One event from the session `who` names, as its transport would hand it over: never
    /// while its join or registration waits, nor after it ended.
    fn send(&mut self, who: u8, stamp: script::Stamp, event: Event<'static>) {
        let Some(slot) = self.slot(who) else { return };
        if slot.joining || slot.connecting.is_some() {
            return;
        }
        let Some(h) = slot.peer.handle.as_mut() else {
            return;
        };
        if h.is_ended() {
            return;
        }
        let timestamp = stamp.at(h.hub().clock().now());
        h.handle(timestamp, event);
    }

    /// Node `by` declares node `i`'s current incarnation lost, as its membership task would.
    fn lost(&mut self, by: usize, i: usize) {
        if by == i {
            return;
        }
        let name = node_name(i);
        let hub = &self.nodes[by].hub;
        if let Some(node) = hub.nodes().into_iter().find(|n| n.name == name) {
            hub.declare_lost(&node);
        }
    }

    /// Polls every wait once (a no-op waker: the stream's progress is what decides them), then
    /// lets each writer whose turn it is drain its outbox.
    fn settle(&mut self) {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if let Some(up) = &mut node.up
                && let Poll::Ready(r) = poll(up)
            {
                let incarnation = r.expect("node_up answers once its NodeUp is applied");
                assert_eq!(incarnation, node.hub.incarnation(), "n{i}'s incarnation");
                node.up = None;
            }
        }
        let mut cx = Context::from_waker(Waker::noop());
        for slot in &mut self.slots {
            if let Some(connecting) = &mut slot.connecting
                && let Poll::Ready((h, _)) = poll(connecting)
            {
                slot.peer.handle = Some(h);
                slot.connecting = None;
            }
            if slot.joining
                && let Some(h) = &mut slot.peer.handle
                && h.poll_joined(&mut cx).is_ready()
            {
                slot.joining = false;
            }
            slot.peer.note_id();
        }
        let nodes = &self.nodes;
        self.ops.retain_mut(|op| match poll(op) {
            Poll::Pending => true,
            Poll::Ready(done) => {
                checks::operated(nodes, done.expect("the stream applies every operation"));
                false
            }
        });
        for i in 0..self.slots.len() {
            if self.step.is_multiple_of(self.slots[i].pace) {
                self.drain(i);
            }
        }
    }

    /// Drains slot `i`'s outbox; nothing it got is ahead of its node's clock.
    fn drain(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let now = self.nodes[slot.node].hub.clock().now();
        for f in slot.peer.drain() {
            assert!(
                f.timestamp <= now,
                "slot {i} got {f:?}, ahead of the clock at {now}"
            );
        }
    }

    /// Drains the stream until nothing is left to publish or to decide, brings the lagging
    /// replicas to its end, and checks that every replica agrees.
    fn finish(&mut self) {
        for round in 0.. {
            assert!(round < 1000, "the stream never drains");
            let before = self.stream.len();
            for i in 0..self.nodes.len() {
                self.feed(i, usize::MAX);
            }
            self.step = 0;
            self.settle();
            if self.stream.len() == before
                && self
                    .nodes
                    .iter()
                    .all(|n| n.out.is_empty() && n.held.is_empty())
            {
                break;
            }
        }
        if self.late.is_none() {
            let half = self.stream.len() / 2;
            self.observer.catch_up(&self.stream, half);
            self.snapshot(self.nodes.len());
        }
        let end = self.stream.len();
        self.observer.catch_up(&self.stream, end);
        if let Some(late) = &mut self.late {
            late.catch_up(&self.stream, end);
        }
        checks::agree(self);
    }
}
