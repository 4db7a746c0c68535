//! Operating a cluster: chittyctl (its library entry point, the code the binary runs) over each
//! node's real admin socket, the Prometheus endpoint over HTTP and the audit files, against
//! in-process nodes on a real nats-server. `chittyctl cluster` lists every node with its
//! participants, `users` names each participant's node on every node, `clock` shows the stream
//! sequence applied, the metrics carry the replication's figures, and the trail records the
//! nodes coming up, a node declared lost, and NATS lost and back, each with its node and (for
//! stream events) its sequence. A kick the stream cannot take says so, and happens once NATS is
//! back.

use chitty::audit::AuditConfig;
use chitty::pb::chat_message::Kind;
use chitty_testkit::nats::{self, NatsServer};
use chitty_testkit::process::DaemonCommand;
use chitty_testkit::time::wait_until;
use chitty_testkit::{TestServer, audit, http};
use chittyctl::cli::CtlCli;
use clap::Parser;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A node of the cluster at `nats`, in-process, with an admin socket, an audit file
/// (`NAME.audit`) in `dir` and a metrics port. The grace is long: a test that stops NATS wants
/// the sessions kept.
async fn node(nats: &NatsServer, name: &str, dir: &Path) -> TestServer {
    let mut config = chitty_testkit::cluster_config(&nats.url(), name);
    config.admin_socket = Some(dir.join(format!("{name}.sock")));
    config.metrics_listen = Some("127.0.0.1:0".parse().expect("an address"));
    config.audit = AuditConfig {
        file: Some(trail(dir, name)),
        ..AuditConfig::default()
    };
    if let Some(cluster) = config.cluster.as_mut() {
        cluster.grace = Duration::from_secs(60);
    }
    chitty_testkit::start(config).await
}

/// The audit file of node `name`.
fn trail(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.audit"))
}

/// What a chittyctl run gave: its exit status (0 on success) and what it printed (or its
/// error, as the binary prints it).
struct Ctl {
    code: u8,
    out: String,
}

/// Runs chittyctl with `args` against the admin socket of `node`.
async fn chittyctl(node: &TestServer, args: &[&str]) -> Ctl {
    let socket = node.admin.as_ref().expect("an admin socket");
    let cli = CtlCli::try_parse_from(
        ["chittyctl", "--socket"]
            .into_iter()
            .chain([socket.to_str().expect("a UTF-8 path")])
            .chain(args.iter().copied()),
    )
    .expect("chittyctl's arguments");
    let mut out = Vec::new();
    let result = chittyctl::run(&cli, &mut out).await;
    let mut out = String::from_utf8(out).expect("UTF-8 output");
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            out.push_str(&e.to_string());
            e.exit_code()
        }
    };
    Ctl { code, out }
}

/// The `--json` output of a run that must succeed.
async fn json(node: &TestServer, args: &[&str]) -> Value {
    let ctl = chittyctl(node, args).await;
    assert_eq!(ctl.code, 0, "chittyctl {args:?}: {}", ctl.out);
    serde_json::from_str(&ctl.out).unwrap_or_else(|e| panic!("{e}: {}", ctl.out))
}

/// The Prometheus exposition of `node`.
async fn metrics(node: &TestServer) -> String {
    http::get(node.metrics.expect("a metrics port"), "/metrics", "").await
}

/// The value of the metric `name` in an exposition.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn chittyctl_shows_the_nodes_users_clock_and_metrics_of_a_cluster() {
    for binary in nats::binaries() {
        let nats = NatsServer::start(&binary).await;
        let which = nats.describe();
        let dir = tempfile::tempdir().unwrap();
        let n1 = node(&nats, "n1", dir.path()).await;
        let n2 = node(&nats, "n2", dir.path()).await;
        let alice = n1.join("alice").await;
        let bob = n2.join("bob").await;
        let carol = n2.join("carol").await;

        // Each node lists both, with the participants that entered through each, once it has
        // applied the others' joins.
        for (me, other) in [(&n1, "n2"), (&n2, "n1")] {
            let mut nodes = Value::Null;
            let participants = |nodes: &Value, name: &str| {
                nodes["nodes"]
                    .as_array()
                    .and_then(|all| all.iter().find(|n| n["name"] == name))
                    .map(|n| n["participants"].clone())
            };
            for _ in 0..200 {
                nodes = json(me, &["cluster", "--json"]).await;
                if participants(&nodes, "n1") == Some(1.into())
                    && participants(&nodes, "n2") == Some(2.into())
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(
                participants(&nodes, "n1"),
                Some(1.into()),
                "{which}: {nodes}"
            );
            assert_eq!(
                participants(&nodes, "n2"),
                Some(2.into()),
                "{which}: {nodes}"
            );
            assert_eq!(nodes["nodes"].as_array().unwrap().len(), 2, "{nodes}");
            let mine = me.hub.node_name().unwrap();
            assert_eq!(nodes["node"], mine, "{nodes}");
            for n in nodes["nodes"].as_array().unwrap() {
                let (state, this_node) = if n["name"] == mine {
                    ("serving", true)
                } else {
                    ("alive", false)
                };
                assert_eq!(n["state"], state, "{which}: {n}");
                assert_eq!(n["this_node"], this_node, "{which}: {n}");
                assert!(n["silent_seconds"].as_f64().unwrap() < 2.0, "{which}: {n}");
            }
            let other_addr = if other == "n1" { n1.addr } else { n2.addr };
            let listed = nodes["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["name"] == other)
                .unwrap();
            assert!(
                listed["address"]
                    .as_str()
                    .unwrap()
                    .contains(&other_addr.to_string()),
                "{which}: {listed} is at {other_addr}"
            );
            let text = chittyctl(me, &["cluster"]).await;
            assert_eq!(text.code, 0, "{}", text.out);
            assert!(
                text.out.contains(&format!("{mine} (this node)")),
                "{}",
                text.out
            );
            assert!(
                text.out.contains("2 nodes; this node applied"),
                "{}",
                text.out
            );

            // Every participant, with the node it entered through, on either node.
            let users = json(me, &["users", "--json"]).await;
            let node_of = |name: &str| {
                users
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|u| u["username"] == name)
                    .map(|u| u["node"].clone())
            };
            assert_eq!(node_of("alice"), Some("n1".into()), "{which}: {users}");
            assert_eq!(node_of("bob"), Some("n2".into()), "{which}: {users}");
            assert_eq!(node_of("carol"), Some("n2".into()), "{which}: {users}");
            let table = chittyctl(me, &["users"]).await.out;
            let header: Vec<_> = table.lines().next().unwrap().split_whitespace().collect();
            assert_eq!(header[..4], ["ID", "NAME", "NODE", "TRANSPORT"], "{table}");
            let carol_row: Vec<_> = table
                .lines()
                .find(|l| l.contains("carol"))
                .unwrap()
                .split_whitespace()
                .collect();
            assert_eq!(carol_row[1..3], ["carol", "n2"], "{table}");
        }

        // The clock: this node's place in the stream.
        let before = n1.hub.applied().0;
        let clock = json(&n1, &["clock", "--json"]).await;
        let after = n1.hub.applied().0;
        let seq = clock["applied_seq"].as_u64().unwrap();
        assert!(
            before > 0 && before <= seq && seq <= after,
            "{which}: {clock}"
        );
        assert_eq!(clock["node"], "n1", "{clock}");
        assert!(clock["lag_seconds"].as_f64().unwrap() < 5.0, "{clock}");
        let text = chittyctl(&n1, &["clock"]).await.out;
        let pair = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .map(str::to_owned)
        };
        assert_eq!(pair("Node:").as_deref(), Some("n1"), "{text}");
        let shown: u64 = pair("Applied sequence:").unwrap().parse().unwrap();
        assert!(shown >= seq, "{text}");
        assert!(pair("Lag:").unwrap().contains("pending"), "{text}");

        // The replication's figures, on the Prometheus endpoint and in `chittyctl stats`.
        let exposition = metrics(&n1).await;
        assert_eq!(
            metric(&exposition, "chitty_cluster_nodes"),
            Some(2),
            "{exposition}"
        );
        assert_eq!(
            metric(&exposition, "chitty_cluster_nats_connected"),
            Some(1)
        );
        assert_eq!(metric(&exposition, "chitty_cluster_serving"), Some(1));
        assert!(metric(&exposition, "chitty_cluster_applied_total").unwrap() >= before);
        // n1 published at least its NodeUp and alice's join.
        let published = metric(&exposition, "chitty_cluster_published_total").unwrap();
        assert!(published >= 2, "{exposition}");
        assert_eq!(
            metric(&exposition, "chitty_cluster_undecodable_total"),
            Some(0)
        );
        assert!(metric(&exposition, "chitty_cluster_apply_lag_messages").is_some());
        assert!(metric(&exposition, "chitty_cluster_publish_latency_microseconds").is_some());
        assert!(
            exposition.contains("# TYPE chitty_cluster_publish_seconds histogram"),
            "{exposition}"
        );
        let count = metric(&exposition, "chitty_cluster_publish_seconds_count").unwrap();
        assert!(
            count >= published,
            "every acknowledged publish timed: {exposition}"
        );
        let stats = json(&n2, &["stats", "--json"]).await;
        assert!(
            stats["cluster_published_total"].as_u64().unwrap() >= 3,
            "{stats}"
        );
        assert_eq!(stats["cluster_republished_total"], 0, "{stats}");

        // Each node audited its own coming up, with its name and its NodeUp's sequence (its
        // incarnation), and not the other's.
        for (n, name) in [(&n1, "n1"), (&n2, "n2")] {
            let records =
                audit::record_arrives(&trail(dir.path(), name), |r| r["event"] == "node_up").await;
            let ups: Vec<_> = records.iter().filter(|r| r["event"] == "node_up").collect();
            assert_eq!(ups.len(), 1, "{which}: {ups:?}");
            assert_eq!(ups[0]["node"], name, "{which}: {:?}", ups[0]);
            assert_eq!(ups[0]["seq"], n.hub.incarnation(), "{which}: {:?}", ups[0]);
        }

        drop((alice, bob, carol));
        n2.shutdown().await;
        n1.shutdown().await;
    }
}

#[tokio::test]
async fn a_node_declared_lost_is_audited_once_by_the_node_that_declared_it() {
    let binary = &nats::binaries()[0];
    let nats = NatsServer::start(binary).await;
    let dir = tempfile::tempdir().unwrap();
    let n1 = node(&nats, "n1", dir.path()).await;
    // n2 is a process, killed with SIGKILL: it says nothing more to the stream, and n1, the
    // only one left to notice, declares it lost.
    let n2 = DaemonCommand::new(env!("CARGO_BIN_EXE_chittyd"))
        .args([
            "--admin-socket",
            "none",
            "--node",
            "n2",
            "--cluster",
            &nats.url(),
            "--cluster-node-timeout",
            "2s",
            "--cluster-grace",
            "1s",
        ])
        .start()
        .await;
    n2.until_log("is a member").await;
    wait_until("n1 knows n2", || n1.hub.nodes().len() == 2).await;
    let n2_incarnation = n1
        .hub
        .nodes()
        .into_iter()
        .find(|n| n.name == "n2")
        .unwrap()
        .incarnation;
    n2.signal("KILL");
    let records =
        audit::record_arrives(&trail(dir.path(), "n1"), |r| r["event"] == "node_lost").await;
    let lost: Vec<_> = records
        .iter()
        .filter(|r| r["event"] == "node_lost")
        .collect();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(
        lost[0]["node"], "n1",
        "audited by the node that declared it"
    );
    assert!(
        lost[0]["seq"].as_u64().unwrap() > n2_incarnation,
        "{:?}",
        lost[0]
    );
    assert!(
        lost[0]["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("\"n2\" (incarnation {n2_incarnation})")),
        "{:?}",
        lost[0]
    );
    let nodes = json(&n1, &["cluster", "--json"]).await;
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 1, "{nodes}");
    assert_eq!(nodes["nodes"][0]["name"], "n1", "{nodes}");

    // A node that shuts down leaves at once: its departure is in the stream, audited by it.
    let n3 = node(&nats, "n3", dir.path()).await;
    wait_until("n1 knows n3", || n1.hub.nodes().len() == 2).await;
    n3.shutdown().await;
    wait_until("n1 drops n3 at once", || n1.hub.nodes().len() == 1).await;
    let left = audit::record_arrives(&trail(dir.path(), "n3"), |r| r["event"] == "node_left").await;
    assert!(
        left.iter()
            .any(|r| r["event"] == "node_left" && r["node"] == "n3"),
        "{left:?}"
    );
    n1.shutdown().await;
}

#[tokio::test]
async fn nats_lost_and_back_are_audited_and_a_kick_it_cannot_confirm_says_so() {
    let binary = &nats::binaries()[0];
    let mut nats = NatsServer::start(binary).await;
    let dir = tempfile::tempdir().unwrap();
    let n1 = node(&nats, "n1", dir.path()).await;
    let mut alice = n1.join("alice").await;
    let mut watcher = n1.join("watcher").await;
    let file = trail(dir.path(), "n1");

    nats.kill().await;
    audit::record_arrives(&file, |r| r["event"] == "nats_lost" && r["node"] == "n1").await;
    wait_until("n1 knows NATS is lost", || n1.hub.linked() == Some(false)).await;
    let nodes = json(&n1, &["cluster", "--json"]).await;
    assert_eq!(nodes["nodes"][0]["state"], "not_serving", "{nodes}");
    let exposition = metrics(&n1).await;
    assert_eq!(
        metric(&exposition, "chitty_cluster_nats_connected"),
        Some(0)
    );
    assert_eq!(metric(&exposition, "chitty_cluster_serving"), Some(0));

    // The stream cannot take the kick: chittyctl says it is unconfirmed and still queued.
    let kick = chittyctl(&n1, &["kick", "alice", "--reason", "later"]).await;
    assert_eq!(kick.code, 1, "{}", kick.out);
    assert!(
        kick.out
            .starts_with("chittyd could not confirm it: the cluster's stream did not apply"),
        "{}",
        kick.out
    );
    assert!(
        kick.out
            .contains("takes effect if the stream takes it later"),
        "{}",
        kick.out
    );

    nats.restart().await;
    audit::record_arrives(&file, |r| r["event"] == "nats_back" && r["node"] == "n1").await;
    // And it does take effect, once.
    let status = alice.expect_status().await;
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    let left = watcher.until(|m| m.kind == Kind::Leave as i32).await;
    assert!(left.message.contains("later"), "{left:?}");
    let records = audit::records(&file);
    let events: Vec<_> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events.iter().filter(|e| **e == "nats_lost").count(),
        1,
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| **e == "nats_back").count(),
        1,
        "{events:?}"
    );
    drop((alice, watcher));
    n1.shutdown().await;
}
