//! Faults under traffic, against real nats-servers (never a mock): a chittyd node killed with
//! SIGKILL, the nats-server stopped and restarted (an outage shorter than the grace, then one
//! longer), one server of a three-server NATS cluster killed, and a node started late that
//! loads the roster from the snapshot. Senders keep talking throughout; receivers on every node
//! must lose nothing that was admitted, see it once, in one order, with the same Lamport times.

use super::{CHITTYD, until_status};
use chitty::cluster::replication::SNAPSHOT_KEY;
use chitty::pb::{self, chat_event, chat_message::Kind};
use chitty_testkit::nats::{self, NatsBinary, NatsCluster, NatsServer};
use chitty_testkit::process::DaemonCommand;
use chitty_testkit::time::wait_until;
use chitty_testkit::{PATIENCE, Raw, TestServer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// How long a node may take to catch up after the NATS server that held its consumer went: the
/// NATS client's ordered consumer notices a consumer gone with its server only when two of its
/// idle heartbeats (5 s apart, fixed in async-nats) are missed, then recreates it where it
/// stopped; and JetStream elects new leaders meanwhile.
const RECOVERY: Duration = Duration::from_secs(40);

/// How often a sender says something: steady traffic, well within what a debug build serves.
const PACE: Duration = Duration::from_millis(10);

/// The node timeout and grace of a node.
#[derive(Clone, Copy)]
struct Timing {
    node_timeout: Duration,
    grace: Duration,
}

/// What the process nodes are started with (`--cluster-node-timeout 2s --cluster-grace 1s`).
const QUICK: Timing = Timing {
    node_timeout: Duration::from_secs(2),
    grace: Duration::from_secs(1),
};

/// Lenient enough that no node is taken for lost, nor ends its sessions, in a short outage.
const PATIENT: Timing = Timing {
    node_timeout: Duration::from_secs(10),
    grace: Duration::from_secs(8),
};

/// For a NATS cluster that loses a server: a node that reconnects to another server checks the
/// stream again before it serves, and JetStream answers only once it has elected new leaders,
/// which took over 10 s with nats-server 2.9; the grace must outlast that, or the node ends its
/// sessions meanwhile.
const ELECTION: Timing = Timing {
    node_timeout: Duration::from_secs(60),
    grace: Duration::from_secs(45),
};

/// A node in-process, a member of the cluster at `urls` (comma-separated).
async fn node(urls: &str, name: &str, replicas: usize, timing: Timing) -> TestServer {
    let mut config = chitty_testkit::cluster_config(urls, name);
    if let Some(cluster) = config.cluster.as_mut() {
        cluster.replicas = replicas;
        cluster.node_timeout = timing.node_timeout;
        cluster.grace = timing.grace;
    }
    chitty_testkit::start(config).await
}

/// Everything a participant's stream delivered, read by a task of its own (so the participant is
/// never a slow consumer), and how the stream ended.
struct Receiver {
    seen: Arc<Mutex<Vec<pb::ChatMessage>>>,
    end: Arc<Mutex<Option<Result<(), tonic::Status>>>>,
    _task: JoinHandle<()>,
    /// The request stream: dropping it would leave the room.
    _tx: Option<tokio::sync::mpsc::Sender<pb::ChatEvent>>,
}

impl Receiver {
    fn spawn(mut raw: Raw) -> Receiver {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let end = Arc::new(Mutex::new(None));
        let (s, e) = (Arc::clone(&seen), Arc::clone(&end));
        let mut rx = raw.rx;
        let task = tokio::spawn(async move {
            let result = loop {
                match rx.message().await {
                    Ok(Some(m)) => s.lock().unwrap().push(m),
                    Ok(None) => break Ok(()),
                    Err(status) => break Err(status),
                }
            };
            *e.lock().unwrap() = Some(result);
        });
        Receiver {
            seen,
            end,
            _task: task,
            _tx: raw.tx.take(),
        }
    }

    fn messages(&self) -> Vec<pb::ChatMessage> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until what arrived satisfies `done`.
    async fn until(&self, what: &str, done: impl Fn(&[pb::ChatMessage]) -> bool) {
        wait_until(what, || done(&self.seen.lock().unwrap())).await;
    }

    /// Waits until what arrived satisfies `done`, at most `patience`, without failing: the
    /// assertions that follow say what is missing.
    async fn settle(&self, patience: Duration, done: impl Fn(&[pb::ChatMessage]) -> bool) {
        let deadline = Instant::now() + patience;
        while !done(&self.seen.lock().unwrap()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the stream has ended; how.
    async fn ended(&self) -> Result<(), tonic::Status> {
        wait_until("the stream ends", || self.end.lock().unwrap().is_some()).await;
        self.end.lock().unwrap().clone().unwrap()
    }
}

/// The texts of `from`'s chat messages, in the order they arrived.
fn said_by(log: &[pb::ChatMessage], from: &str) -> Vec<String> {
    log.iter()
        .filter(|m| m.kind == Kind::Message as i32 && m.username == from)
        .map(|m| m.message.clone())
        .collect()
}

/// `from`'s numbered messages `0..n`, as a sender says them.
fn numbered(from: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{from} {i}")).collect()
}

/// `from`'s messages in `log` are exactly `from 0` .. `from {count-1}`, once each, in order; on a
/// mismatch, says where they first differ (the logs are long).
fn assert_all_said(log: &[pb::ChatMessage], from: &str, count: usize, who: &str) {
    let heard = said_by(log, from);
    let want = numbered(from, count);
    if heard != want {
        let at = heard.iter().zip(&want).take_while(|(h, w)| h == w).count();
        let around = |v: &[String]| v[at.saturating_sub(2)..(at + 3).min(v.len())].to_vec();
        panic!(
            "{who}: {} of {from}'s {count} messages arrived; first difference at {at}: heard \
             {:?}, said {:?}",
            heard.len(),
            around(&heard),
            around(&want)
        );
    }
}

/// The leave notices about `name`.
fn leaves_of<'a>(log: &'a [pb::ChatMessage], name: &str) -> Vec<&'a pb::ChatMessage> {
    log.iter()
        .filter(|m| m.kind == Kind::Leave as i32 && m.subject == name)
        .collect()
}

/// Every Lamport time greater than the one before.
fn assert_increasing(log: &[pb::ChatMessage], who: &str) {
    for pair in log.windows(2) {
        assert!(
            pair[1].timestamp > pair[0].timestamp,
            "{who}: Lamport time {} after {}",
            pair[1].timestamp,
            pair[0].timestamp
        );
    }
}

/// What a receiver saw, as comparable tuples (time, kind, from, about, text).
fn order(log: &[pb::ChatMessage]) -> Vec<(u64, i32, String, String, String)> {
    log.iter()
        .map(|m| {
            (
                m.timestamp,
                m.kind,
                m.username.clone(),
                m.subject.clone(),
                m.message.clone(),
            )
        })
        .collect()
}

/// A participant that says `NAME 0`, `NAME 1`, ... every [`PACE`] until stopped or until its
/// stream ends, draining what it receives meanwhile.
struct Sender {
    stop: CancellationToken,
    task: JoinHandle<Said>,
}

/// What a sender said, and how its stream ended (`None`: it was stopped, and is still open).
struct Said {
    count: usize,
    ended: Option<Result<(), tonic::Status>>,
    /// Keeps the stream open until the test is done with it.
    _raw: Raw,
}

impl Sender {
    /// Joins `server` (a gRPC URL) as `name` and starts talking.
    async fn start(url: &str, name: &str) -> Sender {
        let mut raw = Raw::open(url).await;
        raw.send_join(name).await;
        raw.until_joined(name).await;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            let mut count = 0;
            let mut tick = tokio::time::interval(PACE);
            let ended = loop {
                tokio::select! {
                    biased;
                    () = stopped.cancelled() => break None,
                    m = raw.rx.message() => match m {
                        Ok(Some(m)) => { raw.clock = raw.clock.max(m.timestamp); continue }
                        Ok(None) => break Some(Ok(())),
                        Err(status) => break Some(Err(status)),
                    },
                    _ = tick.tick() => {}
                }
                raw.say_as(&name, &format!("{name} {count}")).await;
                count += 1;
            };
            Said {
                count,
                ended,
                _raw: raw,
            }
        });
        Sender { stop, task }
    }

    /// Stops it; what it said.
    async fn stop(self) -> Said {
        self.stop.cancel();
        self.finished().await
    }

    /// Waits for it to end by itself (its stream ended).
    async fn finished(self) -> Said {
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the sender did not end")
            .expect("the sender panicked")
    }
}

/// A health watch on `url`'s Chat service.
async fn health(url: &str) -> tonic::Streaming<tonic_health::pb::HealthCheckResponse> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .expect("connect for health");
    HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: "chitty_chat.Chat".into(),
        })
        .await
        .expect("watch")
        .into_inner()
}

#[tokio::test]
async fn a_node_killed_under_traffic_is_announced_once_and_nothing_else_is_lost() {
    for binary in nats::binaries() {
        node_killed(&binary).await;
    }
}

async fn node_killed(binary: &NatsBinary) {
    let nats = NatsServer::start(binary).await;
    let which = nats.describe();
    let url = nats.url();
    let n1 = node(&url, "n1", 1, QUICK).await;
    let n2 = node(&url, "n2", 1, QUICK).await;
    let victim = DaemonCommand::new(CHITTYD)
        .args(["--admin-socket", "none", "--state-dir", "none"])
        .args(["--node", "n3", "--cluster", &url])
        .args(["--cluster-node-timeout", "2s", "--cluster-grace", "1s"])
        .start()
        .await;
    victim.until_log("is a member").await;

    let mut r1 = n1.join("r1").await;
    let r2 = n2.join("r2").await;
    r1.until_joined("r2").await;
    let (r1, r2) = (Receiver::spawn(r1), Receiver::spawn(r2));
    let mut on_victim = Vec::new();
    for name in ["v1", "v2"] {
        let mut v = Raw::open(&victim.url()).await;
        v.send_join(name).await;
        v.until_joined(name).await;
        on_victim.push(v);
    }
    let s1 = Sender::start(&n1.url(), "s1").await;
    let s2 = Sender::start(&n2.url(), "s2").await;
    for r in [&r1, &r2] {
        r.until(
            "traffic from both senders, the victim's participants in",
            |log| {
                said_by(log, "s1").len() >= 20
                    && said_by(log, "s2").len() >= 20
                    && log.iter().any(|m| m.subject == "v2")
            },
        )
        .await;
    }

    victim.signal("KILL");
    let killed = Instant::now();
    for r in [&r1, &r2] {
        r.until("the victim's participants leave", |log| {
            !leaves_of(log, "v1").is_empty() && !leaves_of(log, "v2").is_empty()
        })
        .await;
    }
    let took = killed.elapsed();
    // Silence is judged in stream time, with heartbeats every node_timeout/5: the timeout, a
    // heartbeat's period, and a margin for a loaded machine.
    assert!(
        took < QUICK.node_timeout + Duration::from_secs(3),
        "{which}: the leaves came {took:?} after the kill"
    );
    // Whoever declared it, both survivors agree it is gone; then more traffic goes by, so that a
    // second announcement would have arrived.
    wait_until("n3 gone from both survivors", || {
        [&n1, &n2]
            .iter()
            .all(|n| n.hub.nodes().iter().all(|node| node.name != "n3"))
    })
    .await;
    let before: Vec<usize> = [&r1, &r2]
        .iter()
        .map(|r| said_by(&r.messages(), "s2").len())
        .collect();
    for (r, b) in [&r1, &r2].iter().zip(before) {
        r.until("traffic after the loss", |log| {
            said_by(log, "s1").len() >= b + 20 && said_by(log, "s2").len() >= b + 20
        })
        .await;
    }
    let said1 = s1.stop().await;
    let said2 = s2.stop().await;
    assert!(said1.ended.is_none() && said2.ended.is_none(), "{which}");
    for r in [&r1, &r2] {
        r.until("everything the survivors' senders said", |log| {
            said_by(log, "s1").len() >= said1.count && said_by(log, "s2").len() >= said2.count
        })
        .await;
    }

    let (log1, log2) = (r1.messages(), r2.messages());
    for (log, who) in [(&log1, "r1"), (&log2, "r2")] {
        assert_all_said(log, "s1", said1.count, &format!("{which} {who}"));
        assert_all_said(log, "s2", said2.count, &format!("{which} {who}"));
        for v in ["v1", "v2"] {
            let leaves = leaves_of(log, v);
            assert_eq!(leaves.len(), 1, "{which} {who}: {v} left {leaves:?}");
            assert!(
                leaves[0].message.ends_with("(its node left the cluster)"),
                "{which} {who}: {:?}",
                leaves[0].message
            );
        }
        assert_increasing(log, &format!("{which} {who}"));
    }
    assert_eq!(order(&log1), order(&log2), "{which}: r1 and r2 disagree");
    drop((said1, said2, r1, r2, on_victim));
    n1.shutdown().await;
    n2.shutdown().await;
}

#[tokio::test]
async fn a_nats_outage_shorter_than_the_grace_keeps_the_sessions() {
    for binary in nats::binaries() {
        outage(&binary, PATIENT, None).await;
    }
}

#[tokio::test]
async fn a_nats_outage_longer_than_the_grace_ends_the_sessions() {
    // Longer than the node timeout too: when NATS is back, no node may take the other for lost
    // because the stream was silent for everyone.
    let hold = QUICK.node_timeout + Duration::from_secs(1);
    for binary in nats::binaries() {
        outage(&binary, QUICK, Some(hold)).await;
    }
}

/// Two nodes, a receiver on each and a sender on n1; the nats-server killed under traffic and
/// restarted, after `hold` if given (an outage longer than `timing.grace`, which ends the
/// sessions).
async fn outage(binary: &NatsBinary, timing: Timing, hold: Option<Duration>) {
    let mut nats = NatsServer::start(binary).await;
    let which = nats.describe();
    let url = nats.url();
    let n1 = node(&url, "n1", 1, timing).await;
    let n2 = node(&url, "n2", 1, timing).await;
    let mut r1 = n1.join("r1").await;
    let r2 = n2.join("r2").await;
    r1.until_joined("r2").await;
    let (r1, r2) = (Receiver::spawn(r1), Receiver::spawn(r2));
    let s1 = Sender::start(&n1.url(), "s1").await;
    for r in [&r1, &r2] {
        r.until("traffic", |log| said_by(log, "s1").len() >= 20)
            .await;
    }
    let heard_before = said_by(&r1.messages(), "s1").len();
    let incarnations = [n1.hub.incarnation(), n2.hub.incarnation()];
    let mut watches = vec![health(&n1.url()).await, health(&n2.url()).await];
    for w in &mut watches {
        until_status(w, ServingStatus::Serving, &which).await;
    }

    nats.kill().await;
    for w in &mut watches {
        until_status(w, ServingStatus::NotServing, &which).await;
    }
    // A join now is refused, saying why.
    let mut refused = n2.open().await;
    refused.send_join("late").await;
    let status = refused.expect_status().await;
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "{which}: {status:?}"
    );
    assert!(
        status
            .message()
            .contains("this node has lost its connection to the cluster (NATS); reconnect"),
        "{which}: {status:?}"
    );
    // The sender, talking on, is refused too: its session ends, for it to reconnect.
    let said = s1.finished().await;
    let status = said.ended.clone().expect("ended").expect_err("an error");
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "{which}: {status:?}"
    );
    if let Some(hold) = hold {
        for r in [&r1, &r2] {
            let status = r.ended().await.expect_err("UNAVAILABLE");
            assert_eq!(
                status.code(),
                tonic::Code::Unavailable,
                "{which}: {status:?}"
            );
            assert!(
                status
                    .message()
                    .contains("lost the cluster's NATS for over 1s"),
                "{which}: {status:?}"
            );
        }
        // The rest of an outage that outlasts the node timeout.
        tokio::time::sleep(hold.saturating_sub(timing.grace)).await;
    }

    nats.restart().await;
    for w in &mut watches {
        until_status(w, ServingStatus::Serving, &which).await;
    }
    // Joins work again, on both nodes; the sessions that ended are gone from both.
    let (r1, r2) = if hold.is_some() {
        let gone = |n: &TestServer| {
            n.hub
                .users()
                .iter()
                .all(|u| !["r1", "r2", "s1"].contains(&u.name.as_str()))
        };
        wait_until("the ended sessions gone everywhere", || {
            gone(&n1) && gone(&n2)
        })
        .await;
        let old = (r1, r2);
        let mut r1b = n1.join("r1b").await;
        let r2b = n2.join("r2b").await;
        r1b.until_joined("r2b").await;
        let (log1, log2) = (old.0.messages(), old.1.messages());
        for (log, who) in [(&log1, "r1"), (&log2, "r2")] {
            assert_increasing(log, &format!("{which} {who}"));
            let heard = said_by(log, "s1");
            assert_eq!(heard, numbered("s1", heard.len()), "{which} {who}");
            assert!(heard.len() >= heard_before, "{which} {who}");
        }
        // Each ended at its own moment; up to there, they saw one order.
        let (o1, o2) = (order(&log1), order(&log2));
        let n = o1.len().min(o2.len());
        assert_eq!(o1[..n], o2[..n], "{which}: r1 and r2 disagree");
        (Receiver::spawn(r1b), Receiver::spawn(r2b))
    } else {
        (r1, r2)
    };
    let s1b = Sender::start(&n1.url(), "s1b").await;
    let s2b = Sender::start(&n2.url(), "s2b").await;
    for r in [&r1, &r2] {
        r.until("traffic after the outage", |log| {
            said_by(log, "s1b").len() >= 20 && said_by(log, "s2b").len() >= 20
        })
        .await;
    }
    let (said1, said2) = (s1b.stop().await, s2b.stop().await);
    for r in [&r1, &r2] {
        r.until("everything said after the outage", |log| {
            said_by(log, "s1b").len() >= said1.count && said_by(log, "s2b").len() >= said2.count
        })
        .await;
    }
    let (log1, log2) = (r1.messages(), r2.messages());
    for (log, who) in [(&log1, "r1"), (&log2, "r2")] {
        assert_increasing(log, &format!("{which} {who}"));
        assert_all_said(log, "s1b", said1.count, &format!("{which} {who}"));
        assert_all_said(log, "s2b", said2.count, &format!("{which} {who}"));
        if hold.is_none() {
            // The first sender's messages: what was admitted before the node noticed, once each
            // and in order, however often the publisher had to send them again.
            let heard = said_by(log, "s1");
            assert_eq!(heard, numbered("s1", heard.len()), "{which} {who}");
            assert!(
                heard.len() >= heard_before && heard.len() <= said.count,
                "{which} {who}"
            );
        }
    }
    assert_eq!(
        order(&log1),
        order(&log2),
        "{which}: the receivers disagree"
    );
    // No node took the other for lost: both are still the incarnations they were.
    assert_eq!(
        [n1.hub.incarnation(), n2.hub.incarnation()],
        incarnations,
        "{which}: a node was declared lost after the outage"
    );
    for n in [&n1, &n2] {
        let known: Vec<u64> = n.hub.nodes().into_iter().map(|n| n.incarnation).collect();
        assert_eq!(known, incarnations, "{which}");
    }
    drop((said, said1, said2, r1, r2));
    n1.shutdown().await;
    n2.shutdown().await;
}

#[tokio::test]
async fn one_server_of_a_nats_cluster_killed_under_traffic_loses_nothing() {
    for binary in nats::binaries() {
        nats_server_killed(&binary).await;
    }
}

async fn nats_server_killed(binary: &NatsBinary) {
    let mut cluster = NatsCluster::start(binary).await;
    let which = cluster.describe();
    // n1 may use any server; n2 and n3 are each given one (and learn the others from it).
    let urls = [
        cluster.urls(),
        cluster.servers[1].url(),
        cluster.servers[2].url(),
    ];
    let mut nodes = Vec::new();
    for (i, urls) in urls.iter().enumerate() {
        nodes.push(node(urls, &format!("n{}", i + 1), 3, ELECTION).await);
    }
    let room = cluster.servers[0].stream_config("chitty").await;
    assert_eq!(room.expect("the stream")["num_replicas"], 3, "{which}");

    let mut first = nodes[0].join("r1").await;
    let mut second = nodes[1].join("r2").await;
    let third = nodes[2].join("r3").await;
    first.until_joined("r3").await;
    second.until_joined("r3").await;
    let receivers: Vec<Receiver> = [first, second, third]
        .into_iter()
        .map(Receiver::spawn)
        .collect();

    // The server n1 is on goes; senders on the nodes that are not on it.
    let mut victim = None;
    for (i, s) in cluster.servers.iter().enumerate() {
        if s.client_names().await.iter().any(|n| n == "chittyd n1") {
            victim = Some(i);
        }
    }
    let victim = victim.expect("n1 is on one of the servers");
    let on_victim = cluster.servers[victim].client_names().await;
    let mut senders = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let name = format!("n{}", i + 1);
        if !on_victim.contains(&format!("chittyd {name}")) {
            senders.push((
                format!("s{}", i + 1),
                Sender::start(&n.url(), &format!("s{}", i + 1)).await,
            ));
        }
    }
    assert!(
        !senders.is_empty(),
        "{which}: n2 and n3 are on different servers"
    );
    let names: Vec<String> = senders.iter().map(|(n, _)| n.clone()).collect();
    for r in &receivers {
        r.until("traffic", |log| {
            names.iter().all(|n| said_by(log, n).len() >= 20)
        })
        .await;
    }

    cluster.servers[victim].kill().await;
    let heard: Vec<usize> = names
        .iter()
        .map(|n| said_by(&receivers[0].messages(), n).len())
        .collect();
    // The stream goes on (a new leader, if it was there) and n1 is back, on another server.
    for r in &receivers {
        r.settle(RECOVERY, |log| {
            names
                .iter()
                .zip(&heard)
                .all(|(n, &h)| said_by(log, n).len() >= h + 50)
        })
        .await;
    }
    let deadline = Instant::now() + RECOVERY;
    while !nodes[0].hub.serving() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(nodes[0].hub.serving(), "{which}: n1 is not serving again");
    let mut said = Vec::new();
    for (name, s) in senders {
        let out = s.stop().await;
        assert!(out.ended.is_none(), "{which}: {name}'s session ended");
        said.push((name, out));
    }
    for r in &receivers {
        r.settle(RECOVERY, |log| {
            said.iter()
                .all(|(n, out)| said_by(log, n).len() >= out.count)
        })
        .await;
    }
    let logs: Vec<Vec<pb::ChatMessage>> = receivers.iter().map(Receiver::messages).collect();
    // Where each node's applier stands, for a failure's message.
    let applied: Vec<u64> = nodes.iter().map(|n| n.hub.applied().0).collect();
    for (i, log) in logs.iter().enumerate() {
        let who = format!("{which} r{} (stream applied up to {applied:?})", i + 1);
        let end = receivers[i].end.lock().unwrap().clone();
        assert!(end.is_none(), "{who}: the session ended: {end:?}");
        assert_increasing(log, &who);
        for (name, out) in &said {
            assert_all_said(log, name, out.count, &who);
        }
        assert_eq!(order(log), order(&logs[0]), "{who} disagrees with r1");
    }
    drop((said, receivers));
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn a_node_started_late_has_the_roster_from_the_snapshot() {
    for binary in nats::binaries() {
        late_node(&binary).await;
    }
}

async fn late_node(binary: &NatsBinary) {
    let nats = NatsServer::start(binary).await;
    let which = nats.describe();
    let url = nats.url();
    let n1 = node(&url, "n1", 1, PATIENT).await;
    let n2 = node(&url, "n2", 1, PATIENT).await;
    let mut ann = n1.join("ann").await;
    let bob = n2.join("bob").await;
    let wes = n2.ws("?username=wes").await;
    ann.until_joined("wes").await;

    // The snapshot comes every few seconds; wait for one that has everyone.
    let (after_joins, _) = n1.hub.applied();
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    let bucket = js.get_key_value("chitty").await.expect("the bucket");
    let snapshot: chitty::hub::Snapshot = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(Some(bytes)) = bucket.get(SNAPSHOT_KEY).await {
                // gzip-compressed JSON, as chittyd writes it.
                let json = flate2::read::GzDecoder::new(&bytes[..]);
                let s: chitty::hub::Snapshot = serde_json::from_reader(json).expect("a snapshot");
                if s.seq >= after_joins {
                    return s;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{which}: no snapshot after sequence {after_joins}"));
    // Gone from the stream, what the snapshot holds can only come from the snapshot.
    let stream = js.get_stream("chitty").await.unwrap();
    stream
        .purge()
        .sequence(snapshot.seq + 1)
        .await
        .expect("purge the stream up to the snapshot");

    let n3 = node(&url, "n3", 1, PATIENT).await;
    let mut names: Vec<String> = n3.hub.users().into_iter().map(|u| u.name).collect();
    names.sort();
    assert_eq!(names, ["ann", "bob", "wes"], "{which}");
    let mut cy = n3.join("cy").await;
    cy.send(Some(chat_event::Event::Roster(
        chat_event::RosterRequest {},
    )))
    .await;
    let roster = cy.until(|m| m.kind == Kind::Roster as i32).await;
    let mut listed: Vec<(u64, String)> = roster
        .roster
        .iter()
        .map(|p| (p.id, p.username.clone()))
        .collect();
    listed.sort();
    let mut want: Vec<(u64, String)> = n1.hub.users().into_iter().map(|u| (u.id, u.name)).collect();
    want.sort();
    assert_eq!(listed, want, "{which}: n3's roster and n1's sessions");
    assert_eq!(listed.len(), 4, "{which}: {listed:?}");
    // And the others see the late node's participant.
    ann.until_joined("cy").await;
    drop((ann, bob, wes, cy));
    for n in [n1, n2, n3] {
        n.shutdown().await;
    }
}
