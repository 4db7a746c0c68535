//! `chittyctl bench`, the load generator that ships with chittyctl: the real binary against
//! chittyd running in-process, over gRPC and WebSocket, plain and TLS, checked through its
//! `--json` report.
//! These are small runs: they test that the generator counts, checks and reports correctly, not
//! how fast anything is (BENCHMARKS.md has the figures).

use crate::CHITTYCTL;
use chitty::server::ServerConfig;
use chitty::server::tls::TlsFiles;
use chitty_testkit::{TestServer, config, start};
use serde_json::Value;

/// Runs the real chittyctl bench against `server` with `args` (split at spaces) and returns its
/// exit code, report and stderr.
async fn bench(server: &TestServer, args: &str) -> (i32, Value, String) {
    let out = tokio::process::Command::new(CHITTYCTL)
        .args(["--json", "bench", "--target", &server.addr.to_string()])
        .args(["--server-pid", &std::process::id().to_string()])
        .args(["--drain-timeout", "5s"])
        .args(args.split_whitespace())
        .output()
        .await
        .expect("run chittyctl bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Everything sent arrived, in order, and the figures are the ones a reader would check.
fn assert_clean(r: &Value, senders_sent_something: bool) {
    assert_eq!(r["losses"], 0, "{r:#}");
    assert_eq!(r["deliveries"], r["expected_deliveries"], "{r:#}");
    assert_eq!(r["ordering_anomalies"], 0, "{r:#}");
    assert_eq!(r["order_mismatches"], 0, "{r:#}");
    assert_eq!(r["receiver_errors"], 0, "{r:#}");
    if senders_sent_something {
        assert!(r["messages_sent"].as_u64().unwrap() > 0, "{r:#}");
        assert!(r["latency_ms"]["max"].as_f64().unwrap() > 0.0, "{r:#}");
        assert!(
            r["server"]["cpu_per_delivery_us"].as_f64().unwrap() > 0.0,
            "{r:#}"
        );
    }
    assert!(
        r["server"]["rss_connected_kib"].as_u64().unwrap() > 0,
        "{r:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_broadcast_counts_every_delivery_and_checks_the_order() {
    let server = start(config()).await;
    let (code, r, err) = bench(&server, "--clients 8 --senders 3 --duration 1s").await;
    assert_eq!(code, 0, "{err}");
    assert_clean(&r, true);
    let sent = r["messages_sent"].as_u64().unwrap();
    assert_eq!(r["expected_deliveries"].as_u64().unwrap(), sent * 8);
    assert_eq!(r["window_per_sender"], 2048 / 3, "the default window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_room_and_direct_messages() {
    let server = start(config()).await;
    for pattern in ["broadcast", "direct"] {
        let (code, r, err) = bench(
            &server,
            &format!("--transport ws --pattern {pattern} --clients 6 --senders 2 --duration 1s"),
        )
        .await;
        assert_eq!(code, 0, "{pattern}: {err}");
        assert_clean(&r, true);
        let fanout = if pattern == "direct" { 1 } else { 6 };
        assert_eq!(
            r["deliveries"].as_u64().unwrap(),
            r["messages_sent"].as_u64().unwrap() * fanout,
            "{pattern}: {r:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_senders_send_what_they_planned() {
    let server = start(config()).await;
    let (code, r, err) = bench(&server, "--clients 4 --senders 2 --rate 20 --duration 1s").await;
    assert_eq!(code, 0, "{err}");
    assert_clean(&r, true);
    assert_eq!(r["planned_messages"], 40);
    let sent = r["messages_sent"].as_u64().unwrap();
    assert!(
        (36..=42).contains(&sent),
        "2 senders at 20/s for 1 s sent {sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_participants_are_cut_off_and_nobody_else_loses_anything() {
    let mut config = config();
    config.hub.backlog = 64;
    let server = start(config).await;
    let (code, r, err) = bench(
        &server,
        "--clients 4 --senders 2 --stall 2 --window 8 --duration 2s",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_clean(&r, true);
    assert_eq!(r["slow_consumers_cut_off"], 2, "{r:#}");
}

#[tokio::test]
async fn impossible_options_are_refused_with_a_reason() {
    let server = start(config()).await;
    let (code, _, err) = bench(&server, "--clients 2 --senders 3").await;
    assert_ne!(code, 0);
    assert!(err.contains("--senders cannot exceed --clients"), "{err}");
    let (code, _, err) = bench(&server, "--size 500").await;
    assert_ne!(code, 0);
    assert!(err.contains("--size"), "{err}");
    let (code, _, err) = bench(&server, &format!("--target {},", server.addr)).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--target: an empty address"), "{err}");
}

#[tokio::test]
async fn an_unreachable_target_is_an_error_not_a_report() {
    let server = start(config()).await;
    let addr = server.addr;
    server.stop.cancel();
    let _ = server.task.await;
    let out = tokio::process::Command::new(CHITTYCTL)
        .args(["bench", "--target", &addr.to_string(), "--clients", "1"])
        .args(["--senders", "0", "--duration", "1s"])
        .output()
        .await
        .expect("run chittyctl bench");
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could not connect"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_defaults_work_against_a_chittyd_with_its_default_limits() {
    // 100 participants, more than the 64 new connections per second chittyd accepts from one
    // address: the default pace keeps below it.
    let server = start(chitty::server::ServerConfig::default()).await;
    assert_eq!(
        chitty::server::limits::ConnLimits::default().new_per_ip,
        64,
        "the limit the default pace is below"
    );
    let (code, r, err) = bench(&server, "--duration 1s --rate 5").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["clients"], 100, "{r:#}");
    assert_clean(&r, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_blamed_on_the_per_address_limits() {
    let mut config = config();
    config.limits.new_per_ip = 10;
    let server = start(config).await;
    let (code, _, err) = bench(&server, "--clients 40 --connect-rate 0 --duration 1s").await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("participants could not connect"), "{err}");
    assert!(
        err.contains("--new-connections-per-ip") && err.contains("--connect-rate"),
        "{err}"
    );
    assert!(!err.contains("cannot reach"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_the_ca_tls_cert_wrote_and_told_when_only_one_end_speaks_tls() {
    let dir = tempfile::tempdir().unwrap();
    let made = tokio::process::Command::new(CHITTYCTL)
        .args(["tls-cert", "--out", dir.path().to_str().unwrap()])
        .output()
        .await
        .expect("run chittyctl tls-cert");
    assert!(made.status.success(), "{made:?}");
    let tls = start(ServerConfig {
        tls: Some(TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        }),
        ..config()
    })
    .await;
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    for transport in ["grpc", "ws"] {
        let (code, r, err) = bench(
            &tls,
            &format!("--transport {transport} --clients 4 --senders 2 --duration 1s --ca {ca}"),
        )
        .await;
        assert_eq!(code, 0, "{transport}: {err}");
        assert_clean(&r, true);
    }
    // Plain participants at the TLS port, over either protocol.
    for transport in ["grpc", "ws"] {
        let (code, _, err) = bench(
            &tls,
            &format!("--transport {transport} --clients 2 --senders 1 --duration 1s"),
        )
        .await;
        assert_eq!(code, 3, "{transport}: {err}");
        let said = format!(
            "the server at {} speaks TLS: add --tls (and --ca FILE for a private CA)",
            tls.addr
        );
        assert!(err.contains(&said), "{transport}: {err}");
    }
    // TLS participants at a plain port.
    let plain = start(config()).await;
    let (code, _, err) = bench(
        &plain,
        &format!("--clients 2 --senders 1 --duration 1s --ca {ca}"),
    )
    .await;
    assert_eq!(code, 3, "{err}");
    let said = format!(
        "the server at {} does not speak TLS: drop --tls and --ca",
        plain.addr
    );
    assert!(err.contains(&said), "{err}");
    tls.shutdown().await;
    plain.shutdown().await;
}

/// Runs the real chittyctl bench against `targets` (each a `--target`) with `args`; its exit
/// code and report.
async fn bench_targets(targets: &[String], args: &str) -> (i32, Value, String) {
    let mut cmd = tokio::process::Command::new(CHITTYCTL);
    cmd.args(["--json", "bench", "--drain-timeout", "1s"]);
    for t in targets {
        cmd.args(["--target", t]);
    }
    let out = cmd
        .args(args.split_whitespace())
        .output()
        .await
        .expect("run chittyctl bench");
    let report = serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_room_through_two_targets_is_one_sequence_everywhere() {
    // One server given twice (once as a comma-separated list) is one room reached through two
    // targets: the cross-target checks must find every receiver in agreement.
    let server = start(config()).await;
    let addr = server.addr.to_string();
    let (code, r, err) = bench_targets(
        &[format!("{addr},{addr}")],
        "--clients 6 --senders 3 --duration 1s",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["losses"], 0, "{r:#}");
    assert_eq!(r["ordering_anomalies"], 0, "{r:#}");
    assert_eq!(r["lamport_disagreements"], 0, "{r:#}");
    assert_eq!(r["order_mismatches"], 0, "{r:#}");
    let sent = r["messages_sent"].as_u64().unwrap();
    assert!(sent > 0, "{r:#}");
    let targets = r["targets"].as_array().expect("per-target figures");
    assert_eq!(targets.len(), 2, "{r:#}");
    for t in targets {
        assert_eq!(t["target"], addr.as_str(), "{r:#}");
        assert_eq!(
            t["receivers"], 3,
            "participants alternate between the targets: {r:#}"
        );
        assert_eq!(t["deliveries"].as_u64().unwrap(), sent * 3, "{r:#}");
        assert_eq!(t["expected_deliveries"], t["deliveries"], "{r:#}");
        assert_eq!(t["losses"], 0, "{r:#}");
        assert_eq!(t["ordering_anomalies"], 0, "{r:#}");
        assert_eq!(t["lamport_disagreements"], 0, "{r:#}");
        assert_eq!(t["order_mismatches"], 0, "{r:#}");
        assert_eq!(t["receiver_errors"], 0, "{r:#}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_that_share_no_room_are_reported_as_diverging() {
    // Two independent chittyds: each target's receivers see only their own server's senders,
    // a different sequence from the other target's. The bench must say so; like every
    // finished run it exits 0 and leaves the verdict to its report.
    let a = start(config()).await;
    let b = start(config()).await;
    let targets = [a.addr.to_string(), b.addr.to_string()];
    let (code, r, err) = bench_targets(&targets, "--clients 6 --senders 2 --duration 1s").await;
    assert_eq!(code, 0, "{err}");
    let sent = r["messages_sent"].as_u64().unwrap();
    let t = r["targets"].as_array().expect("per-target figures");
    assert_eq!(t.len(), 2, "{r:#}");
    assert_eq!(t[0]["target"], targets[0].as_str(), "{r:#}");
    assert_eq!(t[1]["target"], targets[1].as_str(), "{r:#}");
    // Sender 0 is on the first server, sender 1 on the second: each target's receivers got
    // only what was sent through their own server, so each lost the other's messages.
    for t in t {
        assert_eq!(t["receivers"], 3, "{r:#}");
        assert_eq!(
            t["expected_deliveries"].as_u64().unwrap(),
            sent * 3,
            "{r:#}"
        );
        assert!(t["losses"].as_u64().unwrap() > 0, "{r:#}");
        assert!(t["deliveries"].as_u64().unwrap() > 0, "{r:#}");
    }
    // The receivers of one server agree among themselves; an even split makes the first
    // target's the reference, so the second target's three receivers are the mismatches.
    assert_eq!(t[0]["order_mismatches"], 0, "{r:#}");
    assert_eq!(t[1]["order_mismatches"], 3, "{r:#}");
    assert_eq!(r["order_mismatches"], 3, "{r:#}");
    assert_eq!(
        r["ordering_anomalies"], 0,
        "no message reached both servers: {r:#}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_target_nobody_can_reach_is_named() {
    let up = start(config()).await;
    let down = start(config()).await;
    let gone = down.addr.to_string();
    down.shutdown().await;
    let (code, _, err) = bench_targets(
        &[up.addr.to_string(), gone.clone()],
        "--clients 4 --senders 1 --duration 1s",
    )
    .await;
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("cannot reach chittyd at {gone}"))
            && err.contains("none of the 2 participants"),
        "{err}"
    );
    up.shutdown().await;
}
