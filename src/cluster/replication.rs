//! The node's half of replication over NATS: the publisher (the hub's queue of events to the
//! room's stream, with a bounded window of publishes awaiting their acknowledgement), the
//! applier (an ordered push consumer reading the stream in order into the hub), and the
//! membership tasks: heartbeats, declaring silent nodes lost, snapshots in the bucket, and the
//! grace a node gives NATS before it ends its sessions. The hub decides everything else
//! (`hub::replica`).

use super::{Cluster, ClusterError};
use crate::hub::{Hub, Outbound, Outgoing, SessionError, Snapshot, StreamEvent};
use async_nats::jetstream::{self, consumer, context::PublishErrorKind, message::PublishMessage};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Stream messages awaiting their acknowledgement, at most: enough to keep the stream busy at
/// chat rates and beyond (a publish is acknowledged in well under a millisecond on a LAN),
/// while bounding what a publish error makes the node send again.
const WINDOW: usize = 1024;

/// The key of the snapshot in the cluster's bucket.
pub const SNAPSHOT_KEY: &str = "snapshot";

/// How often a node writes a snapshot at least, if anything was applied since the last one.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(5);

/// How often a node looks whether a snapshot is due: sooner than `SNAPSHOT_EVERY` once
/// `SNAPSHOT_EVENTS` were applied, so a busy stream leaves a late node little to replay.
const SNAPSHOT_CHECK: Duration = Duration::from_millis(250);

/// Events applied since the last snapshot that make the next one due at once.
const SNAPSHOT_EVENTS: u64 = 20_000;

/// How long a starting node waits for its own `NodeUp` to come back from the stream.
const UP_PATIENCE: Duration = Duration::from_secs(10);

/// The replication's figures, for metrics and `chittyctl clock`.
#[derive(Debug, Default)]
pub struct ReplicationStats {
    /// Events published and acknowledged.
    pub published: AtomicU64,
    /// Events whose publish failed (or came after one that failed), sent again.
    pub republished: AtomicU64,
    /// Time from publish to acknowledgement of the last stream message, in microseconds.
    pub publish_micros: AtomicU64,
    /// Stream messages applied.
    pub applied: AtomicU64,
    /// Stream messages not yet delivered to this node, as the last one said.
    pub pending: AtomicU64,
    /// Seconds the last applied message waited between being stored and applied, in
    /// microseconds.
    pub lag_micros: AtomicU64,
    /// Stream messages that were not chitty events, skipped.
    pub undecodable: AtomicU64,
    /// Time from publish to acknowledgement of every stream message.
    pub publish_latency: crate::metric::Histogram,
}

/// The running replication: stops with its tokens.
pub struct Replication {
    /// Figures.
    pub stats: Arc<ReplicationStats>,
    /// Ends the publisher once the shutdown's last events are queued.
    publisher_stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Replication {
    /// Lets the publisher send what is queued (the shutdown's leaves) and stop, then waits for
    /// every task, at most `patience`.
    pub async fn finish(self, patience: Duration) {
        self.publisher_stop.cancel();
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(patience, all).await.is_err() {
            tracing::warn!("cluster: replication tasks did not end within {patience:?}");
        }
    }
}

/// Makes `hub` a replica of the cluster's room: loads the latest snapshot, starts applying the
/// stream after it, starts publishing, and announces this node; returns once the node is a
/// member. `address` is where it serves participants; `link` follows the NATS connection
/// (`Cluster::supervise`); `stop` ends the membership tasks.
pub async fn start(
    cluster: &Cluster,
    hub: &Arc<Hub>,
    address: &str,
    link: watch::Receiver<bool>,
    stop: CancellationToken,
) -> Result<Replication, ClusterError> {
    let config = cluster.config().clone();
    let stats = Arc::new(ReplicationStats::default());
    let snapshot = load_snapshot(cluster).await;
    let start_at = match &snapshot {
        Some(s) => {
            hub.restore(s);
            tracing::info!(
                "cluster: starting from the snapshot at stream sequence {} ({} sessions, Lamport \
                 time {})",
                s.seq,
                s.sessions.len(),
                s.lamport
            );
            s.seq + 1
        }
        None => 1,
    };
    let outgoing = hub.replicate(&config.node, address);
    let stream = cluster
        .jetstream()
        .get_stream(config.name.as_str())
        .await
        .map_err(|e| ClusterError::NoAnswer {
            doing: format!("opening the stream {}", config.name),
            reason: e.to_string(),
        })?;
    let consumer = stream
        .create_consumer(consumer::push::OrderedConfig {
            deliver_subject: cluster.client.new_inbox(),
            filter_subject: format!("{}.ev.>", config.name),
            deliver_policy: if start_at <= 1 {
                consumer::DeliverPolicy::All
            } else {
                consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start_at,
                }
            },
            ..Default::default()
        })
        .await
        .map_err(|e| ClusterError::NoAnswer {
            doing: format!("reading the stream {}", config.name),
            reason: e.to_string(),
        })?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| ClusterError::NoAnswer {
            doing: format!("reading the stream {}", config.name),
            reason: e.to_string(),
        })?;
    let publisher_stop = CancellationToken::new();
    let mut tasks = vec![
        tokio::spawn(apply(
            Arc::clone(hub),
            messages,
            Arc::clone(&stats),
            stop.clone(),
        )),
        tokio::spawn(publish(
            cluster.jetstream().clone(),
            format!("{}.ev.{}", config.name, config.node),
            outgoing,
            Arc::clone(&stats),
            publisher_stop.clone(),
        )),
    ];
    let incarnation = hub
        .node_up(UP_PATIENCE)
        .await
        .map_err(|e| ClusterError::NoAnswer {
            doing: "announcing this node".into(),
            reason: e.to_string(),
        })?;
    tracing::info!(
        "cluster: node {:?} is a member (incarnation {incarnation}); the room is replicated \
         through stream {:?}",
        config.node,
        config.name
    );
    tasks.push(tokio::spawn(membership(
        Arc::clone(hub),
        config.node_timeout,
        stop.clone(),
    )));
    tasks.push(tokio::spawn(snapshots(
        Arc::clone(hub),
        cluster.bucket().clone(),
        stop.clone(),
    )));
    tasks.push(tokio::spawn(grace(
        Arc::clone(hub),
        link,
        config.grace,
        stop,
    )));
    Ok(Replication {
        stats,
        publisher_stop,
        tasks,
    })
}

/// The latest snapshot in the bucket, if there is one that can be read.
async fn load_snapshot(cluster: &Cluster) -> Option<Snapshot> {
    match cluster.bucket().get(SNAPSHOT_KEY).await {
        Ok(Some(bytes)) => match decode_snapshot(&bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cluster: ignoring an unreadable snapshot: {e}");
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("cluster: cannot read the snapshot: {e}; replaying the stream");
            None
        }
    }
}

/// Applies the stream, in order, until `stop`.
async fn apply(
    hub: Arc<Hub>,
    mut messages: consumer::push::Ordered,
    stats: Arc<ReplicationStats>,
    stop: CancellationToken,
) {
    let mut batch: Vec<async_nats::jetstream::Message> = Vec::with_capacity(APPLY_BATCH);
    loop {
        let first = tokio::select! {
            () = stop.cancelled() => return,
            m = messages.next() => m,
        };
        // What else the consumer has ready joins the batch, never waiting for more: after each
        // round of what is ready, one yield lets the connection's reader hand over what it has
        // read meanwhile; the batch closes when a round brings nothing, or at APPLY_BATCH. Under
        // load the writers then wake once for a burst (and write it in one go); alone, a message
        // is applied after one yield.
        let mut next = Some(first);
        loop {
            while let Some(message) = next.take() {
                match message {
                    Some(Ok(m)) => batch.push(m),
                    Some(Err(e)) => {
                        // The ordered consumer recreates itself after a gap or a reconnect,
                        // from the last sequence it delivered.
                        tracing::debug!("cluster: reading the stream: {e}");
                    }
                    None => {
                        tracing::warn!("cluster: the stream's consumer ended");
                        return;
                    }
                }
                if batch.len() < APPLY_BATCH {
                    next = messages.next().now_or_never();
                }
            }
            if batch.len() >= APPLY_BATCH {
                break;
            }
            tokio::task::yield_now().await;
            next = messages.next().now_or_never();
            if next.is_none() {
                break;
            }
        }
        let mut stored_ns = 0;
        let events: Vec<StreamEvent<'_>> = batch
            .iter()
            .filter_map(|m| {
                let info = m.info().ok()?;
                stored_ns = info.published.unix_timestamp_nanos();
                stats.pending.store(info.pending, Ordering::Relaxed);
                Some(StreamEvent {
                    seq: info.stream_sequence,
                    stream_ms: u64::try_from(stored_ns / 1_000_000).unwrap_or(0),
                    payload: &m.payload,
                })
            })
            .collect();
        for part in lock_holds(&events) {
            for e in hub.apply_stream_batch(part) {
                stats.undecodable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("cluster: {e}");
            }
        }
        stats
            .applied
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        drop(events);
        batch.clear();
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let lag = u64::try_from((now_ns - stored_ns).max(0) / 1000).unwrap_or(0);
        stats.lag_micros.store(lag, Ordering::Relaxed);
    }
}

/// Stream messages read before they are applied, at most: enough to wake the writers once for
/// a burst.
const APPLY_BATCH: usize = 64;

/// Bytes of stream messages applied under one hold of the hub lock, at most (past the first
/// message): about a hundred events, so the lock is never held for long (an event's apply is a
/// few microseconds) even when the messages are full batches.
const APPLY_HOLD_BYTES: usize = 16 * 1024;

/// `events` cut into runs applied under one hold of the hub lock each (`APPLY_HOLD_BYTES`).
/// The writers are woken as each lock is released; applying the next run straight away, before
/// they get to run, still lets them write the whole burst at once.
fn lock_holds<'a, 'b>(
    events: &'a [StreamEvent<'b>],
) -> impl Iterator<Item = &'a [StreamEvent<'b>]> {
    let mut rest = events;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let n = rest
            .iter()
            .position(|e| {
                bytes += e.payload.len();
                bytes > APPLY_HOLD_BYTES
            })
            .map_or(rest.len(), |i| i.max(1));
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

/// Publishes the hub's events in the order they were queued, what has queued up together as
/// one stream message (`Outbound::gather`), with at most `WINDOW` messages awaiting their
/// acknowledgement. When a publish fails (NATS gone, an acknowledgement that timed out, a
/// stream leader lost in a failover), the messages published after it may have been stored
/// already, ahead of it: so every event from the failed message on is sent again, in order
/// (go-back-N), and every node applies each origin's events in their numbered order, once
/// (`ClusterEvent.counter`), skipping the copies that came too early or twice. On `stop` it
/// sends what is already queued and ends.
async fn publish(
    js: jetstream::Context,
    subject: String,
    mut outgoing: Outbound,
    stats: Arc<ReplicationStats>,
    stop: CancellationToken,
) {
    // Sent and awaiting their acknowledgement, in the order sent; `acks` resolves in that order.
    let mut in_flight: VecDeque<Vec<Outgoing>> = VecDeque::new();
    let mut acks = FuturesOrdered::new();
    // To send (again) before anything new: every event from the last failed message on.
    let mut again: VecDeque<Outgoing> = VecDeque::new();
    let mut stopping = false;
    loop {
        let next = if acks.len() >= WINDOW {
            None
        } else if let Some(out) = again.pop_front() {
            Some(out)
        } else if stopping {
            outgoing.try_recv()
        } else {
            tokio::select! {
                biased;
                Some((result, sent)) = acks.next(), if !acks.is_empty() => {
                    settle(result, sent, &stats, &mut in_flight, &mut again, &mut acks).await;
                    continue;
                }
                out = outgoing.recv() => out,
                () = stop.cancelled() => { stopping = true; continue; }
            }
        };
        let Some(first) = next else {
            if stopping && acks.is_empty() && again.is_empty() {
                return;
            }
            match acks.next().await {
                Some((result, sent)) => {
                    settle(result, sent, &stats, &mut in_flight, &mut again, &mut acks).await;
                }
                None if stopping => return,
                None => {}
            }
            continue;
        };
        let batch = outgoing.gather(first, &mut again);
        let payload = Outgoing::joined(&batch);
        let sent = Instant::now();
        match js
            .send_publish(subject.clone(), PublishMessage::build().payload(payload))
            .await
        {
            Ok(ack) => {
                in_flight.push_back(batch);
                acks.push_back(async move { (ack.await.map(|_| ()), sent) });
            }
            Err(e) => {
                if !matches!(e.kind(), PublishErrorKind::TimedOut) {
                    tracing::debug!("cluster: publishing: {e}; sending again");
                }
                in_flight.push_back(batch);
                go_back(&stats, &mut in_flight, &mut again, &mut acks).await;
            }
        }
    }
}

/// One acknowledgement, in the order sent: the oldest message in flight is stored, or it and
/// everything after it must be sent again.
async fn settle<F>(
    result: Result<(), jetstream::context::PublishError>,
    sent: Instant,
    stats: &ReplicationStats,
    in_flight: &mut VecDeque<Vec<Outgoing>>,
    again: &mut VecDeque<Outgoing>,
    acks: &mut FuturesOrdered<F>,
) where
    F: Future,
{
    match result {
        Ok(()) => {
            let events = in_flight.pop_front().map_or(0, |b| b.len());
            stats.published.fetch_add(events as u64, Ordering::Relaxed);
            let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
            stats.publish_micros.store(micros, Ordering::Relaxed);
            stats.publish_latency.observe(sent.elapsed());
        }
        Err(e) => {
            tracing::debug!("cluster: no acknowledgement: {e}; sending again from there");
            go_back(stats, in_flight, again, acks).await;
        }
    }
}

/// Goes back to the oldest unacknowledged message: its events and every later one are sent
/// again, in order (the acknowledgements still awaited no longer matter), after a pause that
/// keeps a publisher facing a stream without a leader from spinning.
async fn go_back<F>(
    stats: &ReplicationStats,
    in_flight: &mut VecDeque<Vec<Outgoing>>,
    again: &mut VecDeque<Outgoing>,
    acks: &mut FuturesOrdered<F>,
) where
    F: Future,
{
    *acks = FuturesOrdered::new();
    for batch in in_flight.drain(..).rev() {
        stats
            .republished
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for out in batch.into_iter().rev() {
            again.push_front(out);
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Heartbeats, and declaring silent nodes lost: every node watches every other, and the first
/// to notice publishes the `NodeLost` (a second one is applied as nothing). A node the cluster
/// declared lost (it was unheard too long) comes up again as a new incarnation.
async fn membership(hub: Arc<Hub>, timeout: Duration, stop: CancellationToken) {
    let every = (timeout / 5).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut declared: HashSet<u64> = HashSet::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !hub.serving() && hub.incarnation() == 0 {
            // Declared lost while away: the sessions it had are gone; come back as a new node.
            if let Err(e) = hub.node_up(UP_PATIENCE).await {
                tracing::warn!("cluster: coming up again: {e}");
            }
            continue;
        }
        hub.heartbeat();
        for node in hub.silent_nodes(timeout) {
            if declared.insert(node.incarnation) {
                tracing::warn!(
                    "cluster: node {:?} (incarnation {}) unheard for over {:?}: its \
                     participants leave",
                    node.name,
                    node.incarnation,
                    timeout
                );
                hub.declare_lost(&node);
            }
        }
    }
}

/// Writes the replicated state to the bucket every few seconds, when it moved: what a node
/// starting late loads instead of replaying the stream.
async fn snapshots(hub: Arc<Hub>, bucket: jetstream::kv::Store, stop: CancellationToken) {
    let mut written = 0;
    let mut last = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(SNAPSHOT_CHECK);
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (seq, _) = hub.applied();
        let due = seq.saturating_sub(written) >= SNAPSHOT_EVENTS
            || (seq != written && last.elapsed() >= SNAPSHOT_EVERY);
        if !due || !hub.serving() {
            continue;
        }
        last = tokio::time::Instant::now();
        let snapshot = hub.snapshot();
        let Ok(bytes) = encode_snapshot(&snapshot) else {
            continue;
        };
        let size = bytes.len();
        match bucket.put(SNAPSHOT_KEY, bytes.into()).await {
            Ok(_) => {
                written = snapshot.seq;
                if failing {
                    tracing::info!("cluster: writing the snapshot works again");
                    failing = false;
                }
            }
            Err(e) if !failing => {
                // Said once until it works again: a late node then replays more of the stream.
                failing = true;
                tracing::warn!(
                    "cluster: cannot write the snapshot ({size} bytes, {} sessions): {e}; nodes \
                     that start now replay the stream from the last snapshot written",
                    snapshot.sessions.len()
                );
            }
            Err(_) => {}
        }
    }
}

/// A snapshot as the bucket holds it: gzip-compressed JSON (the sessions' names and addresses
/// compress well, and NATS takes at most 1 MiB in one message by default).
fn encode_snapshot(snapshot: &Snapshot) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    serde_json::to_writer(&mut gz, snapshot)?;
    gz.flush()?;
    gz.finish()
}

/// A snapshot from the bucket's bytes.
fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, String> {
    let json = flate2::read::GzDecoder::new(bytes);
    serde_json::from_reader(json).map_err(|e| e.to_string())
}

/// Follows the NATS connection for the hub: while it is lost the node admits nothing; if it
/// stays lost for the grace, the node ends its sessions (UNAVAILABLE) so their clients
/// reconnect to another node, and their leaves are published when NATS is back (or the other
/// nodes declare this one lost).
async fn grace(
    hub: Arc<Hub>,
    mut link: watch::Receiver<bool>,
    grace: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = link.changed() => if changed.is_err() { return },
        }
        let up = *link.borrow_and_update();
        hub.set_link(up);
        if up {
            continue;
        }
        let back = tokio::time::timeout(grace, link.wait_for(|&up| up))
            .await
            .is_ok();
        if !back && !stop.is_cancelled() {
            let ended = hub.end_local_sessions(&SessionError::Unavailable(format!(
                "this node lost the cluster's NATS for over {}; reconnect, to another node",
                humantime::format_duration(grace)
            )));
            tracing::warn!(
                "cluster: NATS still lost after the grace of {grace:?}: ended {ended} sessions"
            );
        }
        hub.set_link(*link.borrow());
    }
}
