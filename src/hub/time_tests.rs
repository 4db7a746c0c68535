//! The hub's time-dependent decisions, driven by a [`ManualTime`] through the hub's own
//! interface (sessions, their outboxes, the operator's calls): the rate limit and the flood
//! rule, bans that end, the join deadline, the uptime and the times the admin service shows.

use super::outbox::{Ending, MAX_RUN_BYTES, OutboxReader, Taken};
use super::{
    Event, Flow, Hub, HubConfig, ManualTime, RateLimit, SessionError, SessionHandle, Target,
    Transport,
};
use crate::audit::Auditor;
use crate::pb::{self, chat_message::Kind};
use prost::Message;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

const EPOCH: Duration = Duration::from_secs(1_700_000_000);

fn hub(rate: Option<RateLimit>) -> (Arc<Hub>, Arc<ManualTime>) {
    let time = Arc::new(ManualTime::new(SystemTime::UNIX_EPOCH + EPOCH));
    let config = HubConfig {
        backlog: 64,
        rate,
        join_deadline: Duration::from_secs(5),
        ..HubConfig::default()
    };
    let hub = Hub::with_time(config, Auditor::disabled(), time.clone());
    (hub, time)
}

/// A gRPC session and its writer's end.
struct Peer {
    session: SessionHandle,
    reader: OutboxReader,
}

impl Peer {
    fn new(hub: &Arc<Hub>) -> Peer {
        let (outbox, reader) = hub.outbox(Transport::Grpc);
        let session = SessionHandle::new(Arc::clone(hub), Transport::Grpc, "test".into(), outbox);
        Peer { session, reader }
    }

    fn joined(hub: &Arc<Hub>, name: &str) -> Peer {
        let mut p = Peer::new(hub);
        assert_eq!(p.join(name), Flow::Continue, "{name} could not join");
        p.take();
        p
    }

    fn join(&mut self, name: &str) -> Flow {
        self.session.handle(0, Event::Join { username: name })
    }

    fn say(&mut self, text: &str) -> Flow {
        let event = Event::Message {
            username: "",
            text,
            recipient: 0,
        };
        self.session.handle(0, event)
    }

    /// What is waiting, and the ending if the stream is over.
    fn take(&mut self) -> (Vec<pb::ChatMessage>, Option<Ending>) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut got = Vec::new();
        loop {
            let polled = self.reader.poll_take(&mut cx, MAX_RUN_BYTES, |f| {
                got.push(pb::ChatMessage::decode(f.clone()).expect("a ChatMessage"));
            });
            match polled {
                Poll::Ready(Taken::Frames) => {}
                Poll::Ready(Taken::Ended(ending)) => return (got, Some(ending)),
                Poll::Pending => return (got, None),
            }
        }
    }
}

fn kinds(frames: &[pb::ChatMessage]) -> Vec<Kind> {
    frames.iter().map(|m| m.kind()).collect()
}

#[test]
fn the_rate_limit_refuses_privately_refills_with_time_and_ends_a_flood() {
    let limit = RateLimit {
        per_second: 2.0,
        burst: 2,
        flood: 3,
    };
    let (hub, time) = hub(Some(limit));
    let mut alice = Peer::joined(&hub, "alice");
    let mut bob = Peer::joined(&hub, "bob");
    alice.take();
    for text in ["one", "two", "three"] {
        assert_eq!(alice.say(text), Flow::Continue);
    }
    let (got, _) = alice.take();
    assert_eq!(kinds(&got), [Kind::Message, Kind::Message, Kind::Error]);
    assert_eq!(
        got[2].message,
        "rate limit: at most 2 messages per second (bursts of 2); message dropped"
    );
    let (got, _) = bob.take();
    assert_eq!(
        kinds(&got),
        [Kind::Message, Kind::Message],
        "the refusal is alice's alone"
    );

    // Half a second refills one message at 2 per second.
    time.advance(Duration::from_millis(500));
    alice.say("four");
    assert_eq!(kinds(&alice.take().0), [Kind::Message]);
    // Two more refusals within the window make three: a flood.
    alice.say("five");
    assert_eq!(kinds(&alice.take().0), [Kind::Error]);
    assert_eq!(
        alice.say("six"),
        Flow::Continue,
        "the hub ends it, not the handle"
    );
    assert_eq!(
        alice.take(),
        (vec![], Some(Ending::Error(SessionError::Flooding(3))))
    );
    let (got, _) = bob.take();
    assert_eq!(kinds(&got), [Kind::Message, Kind::Leave]);
    assert_eq!(got[1].subject, "alice");
    assert_eq!(hub.stats().rate_limited.load(Relaxed), 3);
    assert_eq!(hub.stats().flood_disconnects.load(Relaxed), 1);
    assert_eq!(hub.participants(), 1);
}

#[test]
fn refusals_in_an_earlier_flood_window_do_not_count() {
    let limit = RateLimit {
        per_second: 1.0,
        burst: 1,
        flood: 2,
    };
    let (hub, time) = hub(Some(limit));
    let mut alice = Peer::joined(&hub, "alice");
    time.advance(Duration::from_secs(11));
    alice.say("spends the token");
    alice.say("refused, the first of a new window");
    time.advance(Duration::from_millis(10_500));
    // Ten and a half seconds refilled the token; the refusal after it starts a new window.
    alice.say("passes");
    alice.say("refused, the first of the next window");
    let (got, ending) = alice.take();
    assert_eq!(
        kinds(&got),
        [Kind::Message, Kind::Error, Kind::Message, Kind::Error]
    );
    assert_eq!(ending, None, "two refusals, but in two windows");
}

#[test]
fn a_ban_refuses_the_name_until_it_ends() {
    let (hub, time) = hub(None);
    let _alice = Peer::joined(&hub, "alice");
    let kicked = hub.kick(
        Target::Name("alice"),
        "spam",
        Some(Duration::from_secs(60)),
        "op",
    );
    // A single node decides at once: the future is ready when first polled.
    let kicked = futures_util::FutureExt::now_or_never(kicked)
        .expect("decided at once")
        .expect("no stream to wait for");
    assert_eq!(kicked.map(|u| u.name), Some("alice".to_owned()));

    let banned = |seconds| {
        let name = "alice".into();
        Some(Ending::Error(SessionError::Banned { name, seconds }))
    };
    // Ten seconds left: ten, not eleven.
    time.advance(Duration::from_secs(50));
    let mut again = Peer::new(&hub);
    assert_eq!(again.join("alice"), Flow::Ended);
    assert_eq!(again.take().1, banned(10));
    // One and a half seconds left: rounded up.
    time.advance(Duration::from_millis(8_500));
    let mut again = Peer::new(&hub);
    assert_eq!(again.join("alice"), Flow::Ended);
    assert_eq!(again.take().1, banned(2));
    let _bob = Peer::joined(&hub, "bob");

    time.advance(Duration::from_millis(1_500));
    let mut later = Peer::new(&hub);
    assert_eq!(later.join("alice"), Flow::Continue, "the ban has ended");
}

#[test]
fn an_event_after_the_join_deadline_ends_the_session() {
    let (hub, time) = hub(None);
    let mut prompt = Peer::new(&hub);
    let mut late = Peer::new(&hub);
    let mut silent = Peer::new(&hub);
    time.advance(Duration::from_millis(4_999));
    assert_eq!(prompt.join("prompt"), Flow::Continue);
    time.advance(Duration::from_millis(1));
    assert_eq!(late.join("late"), Flow::Ended);
    let timeout = SessionError::JoinTimeout(Duration::from_secs(5));
    assert_eq!(late.take().1, Some(Ending::Error(timeout)));
    assert_eq!(hub.stats().join_timeouts.load(Relaxed), 1);
    // Whatever it sends: the deadline comes first.
    assert_eq!(silent.session.handle(0, Event::Empty), Flow::Ended);
    assert_eq!(hub.stats().join_timeouts.load(Relaxed), 2);
    assert_eq!(hub.participants(), 1);
}

#[test]
fn uptime_and_the_shown_times_come_from_the_hubs_time() {
    let (hub, time) = hub(None);
    let start = SystemTime::UNIX_EPOCH + EPOCH;
    time.advance(Duration::from_secs(10));
    let mut alice = Peer::new(&hub);
    time.advance(Duration::from_secs(2));
    alice.join("alice");
    time.advance(Duration::from_secs(3));
    alice.say("hello");
    time.advance(Duration::from_secs(4));
    assert_eq!(hub.uptime(), Duration::from_secs(19));
    let users = hub.users();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].connected_at, start + Duration::from_secs(10));
    assert_eq!(users[0].last_active, start + Duration::from_secs(15));
}
