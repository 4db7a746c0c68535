//! The replica property through the hub's own interfaces: what one node publishes, applied in
//! the same order by two hubs, leaves them in the same state with the same Lamport times, and
//! the node that holds a participant delivers its frames.

use super::outbox::{OutboxReader, Taken};
use super::replica::StreamEvent;
use super::{Hub, HubConfig, JoinRequest, Transport};
use crate::audit::Auditor;
use std::sync::Arc;

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
fn apply_all(out: &mut super::Outbound, seq: &mut u64, hubs: &[&Arc<Hub>]) {
    while let Some(o) = out.try_recv() {
        *seq += 1;
        for h in hubs {
            h.apply_stream(StreamEvent {
                seq: *seq,
                stream_ms: 1_000 + *seq,
                payload: &o.payload,
            })
            .expect("a chitty event");
        }
    }
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
    let (up_a, up_b) = (
        a.node_up(std::time::Duration::from_secs(1)),
        b.node_up(std::time::Duration::from_secs(1)),
    );
    let ups = async {
        tokio::task::yield_now().await;
        apply_all(&mut out_a, &mut seq, &[&a, &b]);
        apply_all(&mut out_b, &mut seq, &[&a, &b]);
    };
    let (ia, ib, ()) = tokio::join!(up_a, up_b, ups);
    assert_eq!((ia.unwrap(), ib.unwrap()), (1, 2));

    // A participant on a, one on b, the same name raced from both.
    let (ox_a, mut rx_a) = a.outbox(Transport::Grpc);
    let (ox_b, mut rx_b) = b.outbox(Transport::WebSocket);
    let (ox_c, _rx_c) = b.outbox(Transport::Grpc);
    let peer: Arc<str> = "p".into();
    let now = a.time.now();
    let join = |h: &Arc<Hub>, name: &'static str, outbox| {
        let h = Arc::clone(h);
        let peer = Arc::clone(&peer);
        async move {
            match Hub::join(
                &h,
                JoinRequest {
                    username: name,
                    timestamp: 0,
                    transport: Transport::Grpc,
                    peer: &peer,
                    outbox,
                    connected_at: now,
                    now,
                },
            ) {
                super::origin::Joining::Done(r) => r,
                super::origin::Joining::Waiting(w) => w.await,
            }
        }
    };
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
