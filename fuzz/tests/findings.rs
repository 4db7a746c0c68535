//! Findings of the fuzzing work, each as the smallest test that failed before its fix: they
//! stay as regression tests. A new finding goes here `#[ignore]`d until it is fixed.

use chitty::audit::Auditor;
use chitty::hub::outbox::Ending;
use chitty::hub::rules::check_username;
use chitty::hub::{
    Event, Flow, Hub, HubConfig, ManualTime, SessionError, StreamEvent, Target, Transport,
};
use chitty::pb::chat_message::Kind;
use chitty_fuzz::peer::Peer;
use futures_util::FutureExt as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// `Hub::kick` adds the ban to `Instant::now()` with `+`, which panics when the sum does not fit
/// (the admin service passes `ban_seconds` straight through, so `ban_seconds: u64::MAX` does it).
/// The panic comes after the kick was counted and audited but before the participant is
/// removed: the trail says "kick", the participant is still connected, and the admin call dies.
#[test]
fn a_very_long_ban_kicks_instead_of_panicking() {
    let hub = chitty_fuzz::hub(8, 8);
    let _alice = chitty_fuzz::joined(&hub, Transport::Grpc, "alice");
    let kicked = catch_unwind(AssertUnwindSafe(|| {
        hub.kick(
            Target::Name("alice"),
            "spam",
            Some(Duration::from_secs(u64::MAX)),
            "operator",
        )
        .now_or_never()
    }));
    assert!(kicked.is_ok(), "Hub::kick panicked");
    assert!(hub.users().is_empty(), "alice is still connected");
}

/// The rules refuse whitespace and control characters, but not invisible format characters
/// (Unicode category Cf: zero-width space U+200B, the bidirectional overrides U+202A..U+202E,
/// U+2060, U+FEFF, the soft hyphen U+00AD). So `SERVER` followed by a zero-width space is a
/// valid username: it is not `SERVER` byte for byte, yet every terminal and browser shows it as
/// `SERVER`, and its messages read like the server's notices. The same trick copies any
/// participant's name.
#[test]
fn a_username_that_displays_as_server_is_refused() {
    let accepted: Vec<&str> = [
        "SERVER\u{200b}",
        "\u{2060}SERVER",
        "SER\u{ad}VER",
        "\u{feff}server",
    ]
    .into_iter()
    .filter(|name| check_username(name).is_ok())
    .collect();
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
}

/// `Hub::shutdown` broadcasts its notice, then discards the list of sessions whose backlog
/// overflowed on it (`state.overflowed.clear()`) and ends every session cleanly. A participant
/// that was not keeping up therefore misses the notice, and its stream still ends with a clean
/// status (gRPC OK, WebSocket 1000) as if it had received everything, where the ordering
/// contract promises a slow consumer `RESOURCE_EXHAUSTED` rather than a silent skip.
#[test]
fn a_full_backlog_at_shutdown_is_not_a_clean_end() {
    let hub = chitty_fuzz::hub(1, 8);
    let mut alice = chitty_fuzz::joined(&hub, Transport::Grpc, "alice");
    // bob's join notice fills alice's one-frame backlog.
    let _bob = chitty_fuzz::joined(&hub, Transport::Grpc, "bob");
    hub.shutdown("going down");
    let frames = alice.drain().to_vec();
    let got_notice = frames.iter().any(|f| f.kind == Kind::Shutdown);
    let slow = matches!(
        alice.ending,
        Some(Ending::Error(SessionError::SlowConsumer(_)))
    );
    assert!(
        got_notice || slow,
        "alice got {frames:?} and ended {:?}",
        alice.ending
    );
}

/// The WebSocket frame parser derives `Deserialize` for `Incoming`, and serde's derived
/// deserializer also accepts a struct as an array of its fields in declaration order. So
/// `[2, "hello"]` is taken as a direct message to user 2 and `[0, "hi", 5]` as a broadcast with
/// timestamp 5, although the protocol defines only objects and promises an error frame for
/// anything else ("a wrong type").
#[test]
fn a_json_array_is_not_a_frame() {
    for frame in [r#"[2, "hello"]"#, r#"[0, "hi", 5]"#] {
        let parsed = chitty::server::websocket::parse(frame);
        assert!(parsed.is_err(), "{frame} was accepted as {parsed:?}");
    }
}

/// `Hub::join` told a banned name how long its ban still lasts as `(until - now).as_secs() + 1`:
/// with a whole number of seconds left it said one too many ("banned for another 11 s" with 10
/// left), where `SessionError::Banned` promises the seconds rounded up. With the wall clock's
/// nanoseconds a whole number is rare; once `hub_sessions` drove time in whole seconds it was
/// not (its inputs: `corpus/hub_sessions/ban-ends-and-the-name-rejoins` and `4d549415…`).
#[test]
fn a_ban_with_whole_seconds_left_says_just_those() {
    let time = Arc::new(ManualTime::new(chitty_fuzz::wall_start()));
    let hub = Hub::with_time(HubConfig::default(), Auditor::disabled(), time.clone());
    let _alice = chitty_fuzz::joined(&hub, Transport::Grpc, "alice");
    let ban = Some(Duration::from_secs(60));
    let kicked = hub.kick(Target::Name("alice"), "spam", ban, "op");
    let kicked = kicked.now_or_never().expect("a single node kicks at once");
    assert!(kicked.expect("a single node needs no stream").is_some());
    time.advance(Duration::from_secs(50));
    let mut again = Peer::new(&hub, Transport::Grpc);
    again.handle().handle(0, Event::Join { username: "alice" });
    again.drain();
    let banned = SessionError::Banned {
        name: "alice".into(),
        seconds: 10,
    };
    assert_eq!(again.ending, Some(Ending::Error(banned)));
}

/// Nodes of a cluster in one process, with the stream played by hand: `feed(i)` appends node
/// `i`'s queued events to the stream, and every node applies them in that order.
struct Cluster {
    hubs: Vec<Arc<Hub>>,
    outs: Vec<chitty::hub::Outbound>,
    seq: u64,
}

impl Cluster {
    /// `n` nodes, `n0` to `n{n-1}`, each up (their `NodeUp`s in node order).
    fn up(n: usize) -> Cluster {
        let time = Arc::new(ManualTime::new(chitty_fuzz::wall_start()));
        let (hubs, outs) = (0..n)
            .map(|i| {
                let hub = Hub::with_time(HubConfig::default(), Auditor::disabled(), time.clone());
                let out = hub.replicate(&format!("n{i}"), "127.0.0.1:1");
                (hub, out)
            })
            .unzip();
        let mut cluster = Cluster { hubs, outs, seq: 0 };
        for i in 0..n {
            let hub = Arc::clone(&cluster.hubs[i]);
            let mut up = Box::pin(async move { hub.node_up(Duration::from_secs(5)).await });
            assert!(poll(&mut up).is_pending());
            cluster.feed(i);
            assert!(
                matches!(poll(&mut up), Poll::Ready(Ok(_))),
                "n{i} is not up"
            );
        }
        cluster
    }

    fn feed(&mut self, i: usize) {
        while let Some(out) = self.outs[i].try_recv() {
            self.seq += 1;
            for hub in &self.hubs {
                let msg = StreamEvent {
                    seq: self.seq,
                    stream_ms: self.seq,
                    payload: &out.payload,
                };
                hub.apply_stream(msg).expect("a chitty event");
            }
        }
    }
}

fn poll<F: std::future::Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    f.poll_unpin(&mut Context::from_waker(Waker::noop()))
}

/// A runtime to enter: the waits for the stream set tokio timers (which never run here).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
}

/// `Hub::apply_stream` opened a session for any join, and answered its origin only if the event
/// carried the node's *current* incarnation. A join published just before the cluster declared
/// its node lost, and ordered after that `NodeLost` in the stream, therefore opened a session on
/// every node for an incarnation already removed: nothing would ever remove it, and it held its
/// name for good, while its origin, unanswered, waited out the stream's patience and told the
/// participant the cluster was unreachable (found by `hub_replicas`).
#[test]
fn a_join_from_a_node_declared_lost_opens_no_session() {
    let rt = runtime();
    let _rt = rt.enter();
    let mut cluster = Cluster::up(2);
    let mut ann = Peer::new(&cluster.hubs[1], Transport::Grpc);
    let flow = ann.handle().handle(0, Event::Join { username: "ann" });
    assert_eq!(flow, Flow::Continue);
    let n1 = cluster.hubs[0].nodes().into_iter().find(|n| n.name == "n1");
    cluster.hubs[0].declare_lost(&n1.expect("n1 is a member"));
    cluster.feed(0);
    cluster.feed(1);
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(ann.handle().poll_joined(&mut cx), Poll::Ready(Flow::Ended));
    ann.drain();
    assert!(
        matches!(
            ann.ending,
            Some(Ending::Error(SessionError::Unavailable(_)))
        ),
        "{:?}",
        ann.ending
    );
    for hub in &cluster.hubs {
        assert!(hub.users().is_empty(), "{:?}", hub.users());
    }
    // The name is free: a participant of n0 takes it.
    let mut again = Peer::new(&cluster.hubs[0], Transport::Grpc);
    assert_eq!(
        again.handle().handle(0, Event::Join { username: "ann" }),
        Flow::Continue
    );
    cluster.feed(0);
    assert_eq!(
        again.handle().poll_joined(&mut cx),
        Poll::Ready(Flow::Continue)
    );
}

/// The same unanswered origin for an operator: an announcement made on a node the cluster had
/// declared lost was applied by every node, and the call reported that the stream did not
/// apply it in time (found by `hub_replicas`).
#[test]
fn an_operator_on_a_node_declared_lost_hears_the_outcome() {
    let rt = runtime();
    let _rt = rt.enter();
    let mut cluster = Cluster::up(2);
    let n1 = cluster.hubs[0].nodes().into_iter().find(|n| n.name == "n1");
    cluster.hubs[0].declare_lost(&n1.expect("n1 is a member"));
    cluster.feed(0);
    assert_eq!(cluster.hubs[1].incarnation(), 0);
    let hub = Arc::clone(&cluster.hubs[1]);
    let mut announce = Box::pin(async move { hub.announce("hello", "op").await });
    assert!(poll(&mut announce).is_pending());
    cluster.feed(1);
    match poll(&mut announce) {
        Poll::Ready(Ok(lamport)) => assert_eq!(lamport, cluster.hubs[0].clock().now()),
        other => panic!("the announcement came to {other:?}"),
    }
}
