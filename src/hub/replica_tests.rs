//! The replica property through the hub's own interfaces: what one node publishes, applied in
//! the same order by two hubs, leaves them in the same state with the same Lamport times, and
//! the node that holds a participant delivers its frames.

use super::outbox::{Outbox, OutboxReader, Taken};
use super::replica::StreamEvent;
use super::{
    Hub, HubConfig, JoinRequest, ManualTime, Outbound, Outgoing, SessionError, Target, Transport,
};
use crate::audit::Auditor;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

fn hub() -> Arc<Hub> {
    Hub::new(
        HubConfig {
            rate: None,
            ..HubConfig::default()
        },
        Auditor::disabled(),
    )
}

/// Applies everything `out` holds, as stream messages from `seq` on, to every hub in `hubs`.
fn apply_all(out: &mut Outbound, seq: &mut u64, hubs: &[&Arc<Hub>]) {
    while let Some(o) = out.try_recv() {
        apply_batch(&[o], seq, hubs);
    }
}

/// Applies `batch` as the next stream message to every hub in `hubs`.
fn apply_batch(batch: &[Outgoing], seq: &mut u64, hubs: &[&Arc<Hub>]) {
    *seq += 1;
    let payload = Outgoing::joined(batch);
    for h in hubs {
        h.apply_stream(StreamEvent {
            seq: *seq,
            stream_ms: 1_000 + *seq,
            payload: &payload,
        })
        .expect("a chitty event");
    }
}

/// A join on `h`, waiting for the stream's answer (the caller feeds the stream meanwhile).
async fn join(h: &Arc<Hub>, name: &'static str, outbox: &Outbox) -> Result<u64, SessionError> {
    let peer: Arc<str> = "p".into();
    let now = h.time.now();
    let joining = Hub::join(
        h,
        JoinRequest {
            username: name,
            timestamp: 0,
            transport: Transport::Grpc,
            peer: &peer,
            outbox,
            connected_at: now,
            now,
        },
    );
    match joining {
        super::origin::Joining::Done(r) => r,
        super::origin::Joining::Waiting(w) => w.await,
    }
}

/// Two nodes up, `a` first: the stream's first two messages.
async fn two_nodes(
    a: &Arc<Hub>,
    b: &Arc<Hub>,
    out_a: &mut Outbound,
    out_b: &mut Outbound,
    seq: &mut u64,
) {
    let (up_a, up_b) = (
        a.node_up(Duration::from_secs(1)),
        b.node_up(Duration::from_secs(1)),
    );
    let ups = async {
        tokio::task::yield_now().await;
        apply_all(out_a, seq, &[a, b]);
        apply_all(out_b, seq, &[a, b]);
    };
    let (ia, ib, ()) = tokio::join!(up_a, up_b, ups);
    assert_eq!((ia.unwrap(), ib.unwrap()), (1, 2));
}

fn frames(reader: &mut OutboxReader) -> Vec<u8> {
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut all = Vec::new();
    while let std::task::Poll::Ready(Taken::Frames) =
        reader.poll_take(&mut cx, usize::MAX, |f| all.extend_from_slice(f))
    {}
    all
}

#[tokio::test]
async fn two_replicas_fed_one_stream_agree() {
    let (a, b) = (hub(), hub());
    let mut out_a = a.replicate("a", "a:1");
    let mut out_b = b.replicate("b", "b:1");
    let mut seq = 0;
    // Both come up: each node's NodeUp, in one order.
    two_nodes(&a, &b, &mut out_a, &mut out_b, &mut seq).await;

    // A participant on a, one on b, the same name raced from both.
    let (ox_a, mut rx_a) = a.outbox(Transport::Grpc);
    let (ox_b, mut rx_b) = b.outbox(Transport::WebSocket);
    let (ox_c, _rx_c) = b.outbox(Transport::Grpc);
    let ja = join(&a, "ann", &ox_a);
    let jb = join(&b, "ANN", &ox_b);
    let jc = join(&b, "bo", &ox_c);
    let feed = async {
        tokio::task::yield_now().await;
        apply_all(&mut out_a, &mut seq, &[&a, &b]);
        apply_all(&mut out_b, &mut seq, &[&a, &b]);
    };
    let (ra, rb, rc, ()) = tokio::join!(ja, jb, jc, feed);
    let ann = ra.expect("the first join in stream order wins");
    assert!(
        matches!(rb, Err(super::SessionError::NameTaken(_))),
        "{rb:?}"
    );
    let bo = rc.expect("bo joins");
    assert_eq!(
        (ann, bo),
        (3, 5),
        "ids are the opening events' stream sequences"
    );

    // Messages from both nodes, interleaved in the stream.
    for i in 0..5 {
        a.message(ann, 0, &format!("a{i}"));
        b.message(bo, 7, &format!("b{i}"));
    }
    apply_all(&mut out_b, &mut seq, &[&a, &b]);
    apply_all(&mut out_a, &mut seq, &[&a, &b]);
    a.direct(ann, 0, bo, "psst");
    apply_all(&mut out_a, &mut seq, &[&a, &b]);

    assert_eq!(a.clock().now(), b.clock().now());
    let roster = |h: &Arc<Hub>| {
        let mut u: Vec<_> = h
            .users()
            .into_iter()
            .map(|u| (u.id, u.name, u.joined_lamport))
            .collect();
        u.sort();
        u
    };
    assert_eq!(roster(&a), roster(&b));
    // Everything but the connection time, which each node shows from its own clock.
    let replicated = |h: &Arc<Hub>| {
        let mut s = h.snapshot();
        s.sessions.iter_mut().for_each(|s| s.connected_ms = 0);
        (s.seq, s.lamport, s.sessions, s.bans, s.nodes)
    };
    assert_eq!(replicated(&a), replicated(&b));
    // Only the node that holds a participant delivers to it: ann's frames on a, none on b.
    assert!(!frames(&mut rx_a).is_empty());
    assert!(frames(&mut rx_b).is_empty(), "the losing join got nothing");
    let names = |h: &Arc<Hub>| {
        h.nodes()
            .into_iter()
            .map(|n| (n.name, n.incarnation, n.participants))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&a),
        vec![("a".to_owned(), 1, 1), ("b".to_owned(), 2, 1)]
    );
    assert_eq!(names(&a), names(&b));
}

#[tokio::test]
async fn a_participant_who_finds_the_queue_to_the_stream_full_is_cut_off_and_its_leave_queued() {
    let a = hub();
    let mut out = a.replicate("a", "a:1");
    let mut seq = 0;
    let up = a.node_up(std::time::Duration::from_secs(1));
    let feed = async {
        tokio::task::yield_now().await;
        apply_all(&mut out, &mut seq, &[&a]);
    };
    let (up, ()) = tokio::join!(up, feed);
    up.unwrap();
    let (outbox, mut reader) = a.outbox(Transport::Grpc);
    let peer: Arc<str> = "p".into();
    let now = a.time.now();
    let joining = Hub::join(
        &a,
        JoinRequest {
            username: "flood",
            timestamp: 0,
            transport: Transport::Grpc,
            peer: &peer,
            outbox: &outbox,
            connected_at: now,
            now,
        },
    );
    let super::origin::Joining::Waiting(joining) = joining else {
        panic!("a cluster's join waits for the stream");
    };
    let feed = async {
        tokio::task::yield_now().await;
        apply_all(&mut out, &mut seq, &[&a]);
    };
    let (id, ()) = tokio::join!(joining, feed);
    let id = id.unwrap();
    // Nothing takes the events off the queue: it fills.
    for i in 0..super::MAX_QUEUED {
        a.message(id, 0, &format!("m{i}"));
    }
    a.message(id, 0, "one too many");
    let mut queued = Vec::new();
    while let Some(o) = out.try_recv() {
        queued.push(o);
    }
    // Every message that found room, then the leave: nothing dropped silently.
    assert_eq!(queued.len(), super::MAX_QUEUED + 1);
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let ended = loop {
        match reader.poll_take(&mut cx, usize::MAX, |_| {}) {
            std::task::Poll::Ready(Taken::Frames) => continue,
            std::task::Poll::Ready(Taken::Ended(ending)) => break ending,
            std::task::Poll::Pending => panic!("the session must have ended"),
        }
    };
    assert!(
        matches!(&ended, super::outbox::Ending::Error(super::SessionError::Unavailable(why)) if why.contains("queue")),
        "{ended:?}"
    );
}

#[tokio::test]
async fn events_sent_together_as_one_stream_message_apply_as_if_sent_one_by_one() {
    let (a, b) = (hub(), hub());
    let mut out_a = a.replicate("a", "a:1");
    let mut out_b = b.replicate("b", "b:1");
    let mut seq = 0;
    two_nodes(&a, &b, &mut out_a, &mut out_b, &mut seq).await;
    let (ox_ann, mut rx_ann) = a.outbox(Transport::Grpc);
    let (ox_bo, mut rx_bo) = b.outbox(Transport::Grpc);
    let feed = async {
        tokio::task::yield_now().await;
        apply_all(&mut out_a, &mut seq, &[&a, &b]);
        apply_all(&mut out_b, &mut seq, &[&a, &b]);
    };
    let (ann, bo, ()) = tokio::join!(join(&a, "ann", &ox_ann), join(&b, "bo", &ox_bo), feed);
    let (ann, bo) = (ann.unwrap(), bo.unwrap());
    frames(&mut rx_ann);
    frames(&mut rx_bo);

    // Ten messages and a direct message from a, gathered the way the publisher does: one
    // stream message.
    for i in 0..10 {
        a.message(ann, 0, &format!("m{i}"));
    }
    a.direct(ann, 0, bo, "psst");
    let first = out_a.try_recv().unwrap();
    let mut again = VecDeque::new();
    let batch = out_a.gather(first, &mut again);
    assert_eq!((batch.len(), again.len()), (11, 0));
    let clock = a.clock().now();
    apply_batch(&batch, &mut seq, &[&a, &b]);
    assert_eq!(
        a.clock().now(),
        clock + 11,
        "each event its own Lamport time"
    );
    assert_eq!(b.clock().now(), a.clock().now());
    let got = frames(&mut rx_bo);
    let text = String::from_utf8_lossy(&got);
    let at: Vec<usize> = (0..10)
        .map(|i| {
            text.find(&format!("m{i}"))
                .expect("every message delivered")
        })
        .chain([text.find("psst").expect("the direct message delivered")])
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "in the origin's order");

    // Two joins queued together: the second opens the next message, so each session's id is
    // its own message's sequence.
    let (ox_cy, _rx_cy) = a.outbox(Transport::Grpc);
    let (ox_di, _rx_di) = a.outbox(Transport::Grpc);
    let mut sizes = Vec::new();
    let feed = async {
        tokio::task::yield_now().await;
        while let Some(first) = again.pop_front().or_else(|| out_a.try_recv()) {
            let batch = out_a.gather(first, &mut again);
            sizes.push(batch.len());
            apply_batch(&batch, &mut seq, &[&a, &b]);
        }
    };
    let (cy, di, ()) = tokio::join!(join(&a, "cy", &ox_cy), join(&a, "di", &ox_di), feed);
    assert_eq!(sizes, [1, 1], "one event taking the sequence per message");
    assert_eq!((cy.unwrap(), di.unwrap()), (seq - 1, seq));
    assert_eq!(a.users().len(), 4);
    assert_eq!(b.clock().now(), a.clock().now());
}

#[tokio::test]
async fn a_stream_message_with_two_joins_opens_the_first_and_refuses_the_second_everywhere() {
    let (a, b) = (hub(), hub());
    let mut out_a = a.replicate("a", "a:1");
    let mut out_b = b.replicate("b", "b:1");
    let mut seq = 0;
    two_nodes(&a, &b, &mut out_a, &mut out_b, &mut seq).await;
    let (ox_ann, _rx_ann) = a.outbox(Transport::Grpc);
    let (ox_bo, _rx_bo) = a.outbox(Transport::Grpc);
    // Written by something other than chittyd's publisher: both joins in one message.
    let feed = async {
        tokio::task::yield_now().await;
        let both = [out_a.try_recv().unwrap(), out_a.try_recv().unwrap()];
        apply_batch(&both, &mut seq, &[&a, &b]);
    };
    let (ann, bo, ()) = tokio::join!(join(&a, "ann", &ox_ann), join(&a, "bo", &ox_bo), feed);
    assert_eq!(ann.unwrap(), 3, "the first takes the message's sequence");
    assert!(matches!(bo, Err(SessionError::Unavailable(_))), "{bo:?}");
    let names = |h: &Arc<Hub>| {
        h.users()
            .into_iter()
            .map(|u| (u.id, u.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a), vec![(3, "ann".to_owned())]);
    assert_eq!(names(&b), names(&a));
    assert_eq!(a.clock().now(), b.clock().now());
}

#[tokio::test]
async fn a_ban_decided_on_one_node_runs_on_the_hubs_time_on_every_node() {
    // Both hubs on a clock far from the system's: a ban stamped with the system clock would
    // end decades from now on these hubs.
    let wall = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let (ta, tb) = (
        Arc::new(ManualTime::new(wall)),
        Arc::new(ManualTime::new(wall)),
    );
    let config = || HubConfig {
        rate: None,
        ..HubConfig::default()
    };
    let a = Hub::with_time(config(), Auditor::disabled(), ta.clone());
    let b = Hub::with_time(config(), Auditor::disabled(), tb.clone());
    let mut out_a = a.replicate("a", "a:1");
    let mut out_b = b.replicate("b", "b:1");
    let mut seq = 0;
    two_nodes(&a, &b, &mut out_a, &mut out_b, &mut seq).await;
    let (ox, _rx) = b.outbox(Transport::Grpc);
    let feed = |out_a: &mut Outbound, out_b: &mut Outbound, seq: &mut u64| {
        apply_all(out_a, seq, &[&a, &b]);
        apply_all(out_b, seq, &[&a, &b]);
    };
    let joined = async {
        tokio::task::yield_now().await;
        feed(&mut out_a, &mut out_b, &mut seq);
    };
    let (ann, ()) = tokio::join!(join(&b, "ann", &ox), joined);
    ann.unwrap();

    // An operator on a bans ann, who is on b, for a minute.
    let kicked = async {
        tokio::task::yield_now().await;
        feed(&mut out_a, &mut out_b, &mut seq);
    };
    let ban = Some(Duration::from_secs(60));
    let (kick, ()) = tokio::join!(a.kick(Target::Name("ann"), "spam", ban, "op"), kicked);
    assert!(kick.unwrap().is_some(), "ann was there to kick");
    for h in [&a, &b] {
        let bans = h.bans();
        assert_eq!(bans.len(), 1);
        assert_eq!(
            (bans[0].since, bans[0].until),
            (wall, wall + Duration::from_secs(60)),
            "on the hubs' own time"
        );
    }

    // A minute later on the hubs' clocks, the ban is over on both nodes: ann joins again.
    ta.advance(Duration::from_secs(61));
    tb.advance(Duration::from_secs(61));
    assert!(a.bans().is_empty() && b.bans().is_empty());
    let (ox, _rx) = b.outbox(Transport::Grpc);
    let rejoined = async {
        tokio::task::yield_now().await;
        feed(&mut out_a, &mut out_b, &mut seq);
    };
    let (again, ()) = tokio::join!(join(&b, "ann", &ox), rejoined);
    again.expect("the ban ended a minute later on the hubs' time");
}
