//! What chittyd says about itself: the Lamport clock, the counters of `chittyctl stats` and the
//! same figures on the Prometheus endpoint, and announcements.

use crate::{chittyctl, json, server_with_admin};
use chitty::pb::chat_message::Kind;
use chitty_testkit::http;

#[tokio::test]
async fn clock_stats_and_announce() {
    let (server, audit, _dir) = server_with_admin().await;
    let socket = server.admin.clone().unwrap();
    let mut alice = server.join("alice").await;
    alice.say_as("alice", "tick").await;
    let last = alice.until(|m| m.message == "tick").await;

    let clock = json(&chittyctl(&socket, &["clock", "--json"]).await);
    assert_eq!(
        clock["lamport"], last.timestamp,
        "nothing happened since alice's message"
    );
    assert_eq!(clock["participants"], 1);
    let human = chittyctl(&socket, &["clock"]).await;
    assert!(
        human
            .stdout
            .contains(&format!("Lamport time:  {}", last.timestamp)),
        "{}",
        human.stdout
    );

    let out = chittyctl(&socket, &["announce", "maintenance at noon"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = alice.expect_msg().await;
    assert_eq!(
        (m.username.as_str(), m.message.as_str()),
        ("SERVER", "maintenance at noon")
    );
    assert_eq!(m.kind, Kind::Notice as i32);
    assert!(out.stdout.contains(&m.timestamp.to_string()));
    let bad = chittyctl(&socket, &["announce", ""]).await;
    assert_eq!(bad.code, 2, "an invalid request is a usage error");
    assert!(bad.stderr.contains("empty"), "{}", bad.stderr);

    let stats = json(&chittyctl(&socket, &["stats", "--json"]).await);
    assert_eq!(stats["joins_total"], 1);
    assert_eq!(stats["messages_in_total"], 1);
    assert_eq!(stats["participants"], 1);
    assert!(stats["deliveries_total"].as_u64().unwrap() >= 3);
    assert_eq!(stats["audit_records_dropped_total"], 0);

    // The Prometheus endpoint says the same.
    let body = metrics(server.metrics.unwrap()).await;
    let value = |name: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("{name} missing:\n{body}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("chitty_joins_total"), 1.0);
    assert_eq!(value("chitty_messages_in_total"), 1.0);
    assert_eq!(value("chitty_sessions_grpc"), 1.0);
    assert!(value("chitty_lamport") >= last.timestamp as f64);
    // One snapshot feeds both: every figure chittyctl shows is exposed under the same name.
    let figures = stats.as_object().unwrap();
    assert!(figures.len() > 20, "{stats}");
    for name in figures.keys() {
        assert!(
            body.contains(&format!("\n# TYPE chitty_{name} ")),
            "{name} is not on /metrics"
        );
    }
    assert!(value("chitty_fanout_seconds_count") >= 3.0);
    assert!(body.contains("# TYPE chitty_fanout_seconds histogram"));
    assert!(body.contains("chitty_fanout_seconds_bucket{le=\"+Inf\"}"));
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = line.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok(), "not a sample: {line}");
    }
    server.shutdown().await;
    let records = std::fs::read_to_string(&audit).unwrap();
    assert!(
        records
            .lines()
            .any(|l| l.contains("\"event\":\"announce\"") && l.contains("\"actor\":\"uid="))
    );
}

/// The body of the metrics endpoint's answer at `addr`, in Prometheus' text format.
async fn metrics(addr: std::net::SocketAddr) -> String {
    let response = http::get(addr, "/metrics", "").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("text/plain; version=0.0.4"));
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}
