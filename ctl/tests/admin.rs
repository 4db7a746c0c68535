//! chittyctl and the admin service: the real chittyctl binary over a real Unix socket against
//! chittyd running in-process, plus the Prometheus endpoint over HTTP.

// The one in-process chittyd helper of the workspace, shared with the runtime's own tests.
#[path = "../../tests/common/mod.rs"]
mod common;

use chitty::audit::AuditConfig;
use chitty::pb::chat_message::Kind;
use chitty::server::ServerConfig;
use common::{PATIENCE, TestServer, start};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::Code;

struct Ctl {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn chittyctl(socket: &Path, args: &[&str]) -> Ctl {
    chittyctl_as(socket, args, None).await
}

/// Runs the real chittyctl, optionally as another user (through util-linux's setpriv).
async fn chittyctl_as(socket: &Path, args: &[&str], uid: Option<u32>) -> Ctl {
    let bin = env!("CARGO_BIN_EXE_chittyctl");
    let mut cmd = match uid {
        None => tokio::process::Command::new(bin),
        Some(uid) => {
            let mut c = tokio::process::Command::new("setpriv");
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                bin,
            ]);
            c
        }
    };
    let out = cmd
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .await
        .expect("run chittyctl");
    Ctl {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json(ctl: &Ctl) -> serde_json::Value {
    assert_eq!(ctl.code, 0, "chittyctl failed: {}", ctl.stderr);
    serde_json::from_str(&ctl.stdout).unwrap_or_else(|e| panic!("{e}: {}", ctl.stdout))
}

/// A server with an admin socket in a directory anyone may enter (so permissions are decided
/// by the socket's own mode), an audit file, and a metrics port.
async fn server_with_admin() -> (TestServer, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let audit = dir.path().join("audit.log");
    let server = start(ServerConfig {
        admin_socket: Some(dir.path().join("admin.sock")),
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        audit: AuditConfig {
            file: Some(audit.clone()),
            queue: 1024,
            ..AuditConfig::default()
        },
        ..common::config()
    })
    .await;
    (server, audit, dir)
}

#[tokio::test]
async fn users_lists_exactly_the_connected_participants() {
    let (server, _audit, _dir) = server_with_admin().await;
    let socket = server.admin.clone().unwrap();
    let mut alice = server.join("alice").await;
    let bob = server.join("bob").await;
    alice.until_joined("bob").await;
    alice.say_as("alice", "one").await;
    alice.say_as("alice", "two").await;
    alice.until(|m| m.message == "two").await;

    let users = json(&chittyctl(&socket, &["users", "--json"]).await);
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 2);
    let a = users.iter().find(|u| u["username"] == "alice").unwrap();
    assert_eq!(a["id"], alice.id);
    assert_eq!(a["transport"], "grpc");
    assert!(a["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(a["sent"], 2);
    assert_eq!(a["received"], 4, "her join, bob's join, her two messages");
    assert_eq!(a["backlog"], 0);
    assert!(humantime::parse_rfc3339(a["connected_since"].as_str().unwrap()).is_ok());
    assert!(humantime::parse_rfc3339(a["last_activity"].as_str().unwrap()).is_ok());
    let b = users.iter().find(|u| u["username"] == "bob").unwrap();
    assert_eq!(b["id"], bob.id);
    assert!(b["joined_lamport"].as_u64() > a["joined_lamport"].as_u64());

    // For people: an aligned table.
    let table = chittyctl(&socket, &["users"]).await;
    assert_eq!(table.code, 0);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("NAME"),
        "{}",
        table.stdout
    );
    let col = lines[0].find("NAME").unwrap();
    assert!(
        lines[1..3]
            .iter()
            .all(|l| l[col..].starts_with("alice") || l[col..].starts_with("bob"))
    );
    assert!(table.stdout.contains("2 connected"));

    drop(bob);
    alice.until(|m| m.kind == Kind::Leave as i32).await;
    let users = json(&chittyctl(&socket, &["users", "--json"]).await);
    assert_eq!(users.as_array().unwrap().len(), 1, "bob is gone");
    server.shutdown().await;
}

#[tokio::test]
async fn kick_ends_the_stream_announces_audits_and_bans() {
    let (server, audit, _dir) = server_with_admin().await;
    let socket = server.admin.clone().unwrap();
    let mut alice = server.join("alice").await;
    let mut bob = server.join("bob").await;
    alice.until_joined("bob").await;

    let out = chittyctl(
        &socket,
        &["kick", "bob", "--reason", "spamming", "--ban", "2s"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("kicked bob"), "{}", out.stdout);
    let status = bob.expect_status().await;
    assert_eq!(status.code(), Code::Aborted);
    assert!(status.message().contains("spamming"), "{status:?}");
    let m = alice.expect_msg().await;
    assert_eq!(m.kind, Kind::Leave as i32);
    assert!(
        m.message.starts_with(&format!(
            "Participant bob left Chitty-Chat at Lamport time {}",
            m.timestamp
        )) && m.message.contains("removed by an operator: spamming"),
        "{m:?}"
    );

    // Banned: the name cannot rejoin until the ban ends.
    let mut again = server.open().await;
    again.send_join("bob").await;
    let s = again.expect_status().await;
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("banned"), "{s:?}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut p = server.open().await;
        p.send_join("bob").await;
        match p.next().await {
            Ok(Some(m)) if m.subject == "bob" => break,
            Err(s) if s.code() == Code::PermissionDenied => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(Instant::now() < deadline, "the ban never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Kicking somebody who is not there: NOT_FOUND, exit 4.
    let out = chittyctl(&socket, &["kick", "nobody"]).await;
    assert_eq!(out.code, 4);
    assert!(out.stderr.contains("nobody"), "{}", out.stderr);
    server.shutdown().await;

    let records: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kick = records
        .iter()
        .find(|r| r["event"] == "kick")
        .expect("kick audited");
    assert_eq!(kick["user"], "bob");
    assert_eq!(kick["reason"], "spamming");
    assert_eq!(kick["count"], 2, "ban seconds");
    let actor = kick["actor"].as_str().unwrap();
    let uid = std::fs::metadata("/proc/self").unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(
        actor.starts_with(&format!("uid={} pid=", uid.uid())),
        "{actor}"
    );
    let leave = records
        .iter()
        .find(|r| r["event"] == "leave" && r["user"] == "bob")
        .unwrap();
    assert_eq!(leave["reason"], "kick: spamming");
}

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
    let body = http_get(server.metrics.unwrap(), "/metrics").await;
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

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("text/plain; version=0.0.4"));
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

#[tokio::test]
async fn the_socket_is_0660_and_refuses_others() {
    let (server, _audit, _dir) = server_with_admin().await;
    let socket = server.admin.clone().unwrap();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    // nobody (uid 65534) is neither the owner nor in the group.
    let out = chittyctl_as(&socket, &["users"], Some(65534)).await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("permission denied"), "{}", out.stderr);
    assert!(
        out.stderr.contains(socket.to_str().unwrap()),
        "names the socket: {}",
        out.stderr
    );
    server.shutdown().await;
    assert!(!socket.exists(), "the socket is removed at shutdown");
}

#[tokio::test]
async fn unreachable_daemons_and_stale_or_live_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let out = chittyctl(&socket, &["clock"]).await;
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("is chittyd running"), "{}", out.stderr);

    // A stale socket from a crash: nobody answers, chittyctl says so, chittyd replaces it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let out = chittyctl(&socket, &["clock"]).await;
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("stale"), "{}", out.stderr);
    let config = ServerConfig {
        admin_socket: Some(socket.clone()),
        ..common::config()
    };
    let server = start(config.clone()).await;
    assert_eq!(chittyctl(&socket, &["clock"]).await.code, 0);

    // A second chittyd does not steal a live socket.
    let err = chitty::server::Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    })
    .await
    .err()
    .expect("the second server must refuse");
    assert!(err.to_string().contains("in use"), "{err}");
    assert_eq!(
        chittyctl(&socket, &["clock"]).await.code,
        0,
        "the first still answers"
    );

    // Usage errors are exit 2.
    let out = chittyctl(&socket, &["kick"]).await;
    assert_eq!(out.code, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn websocket_users_are_listed_and_kicked_with_a_close_frame() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let (server, _audit, _dir) = server_with_admin().await;
    let socket = server.admin.clone().unwrap();
    let connect = |query: &'static str| {
        let url = format!("ws://{}/{query}", server.addr);
        async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            // The first frame (welcome or join notice) says the session exists.
            let first = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
            assert!(matches!(first, Some(Ok(Message::Text(_)))));
            ws
        }
    };
    let mut carol = connect("?username=carol").await;
    let mut anon = connect("").await;

    let users = json(&chittyctl(&socket, &["users", "--json"]).await);
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert!(users.iter().all(|u| u["transport"] == "websocket"));
    let anon_id = users.iter().find(|u| u["username"] == "").unwrap()["id"]
        .as_u64()
        .unwrap();
    assert!(users.iter().any(|u| u["username"] == "carol"));

    let out = chittyctl(&socket, &["kick", "carol", "--reason", "off topic"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let frame = next_close(&mut carol).await;
    assert_eq!(frame.0, 1008);
    assert!(frame.1.contains("off topic"), "{}", frame.1);

    let out = chittyctl(
        &socket,
        &["kick", &format!("#{anon_id}"), "--reason", "bye"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let frame = next_close(&mut anon).await;
    assert!(
        frame.1.contains("removed by an operator: bye"),
        "{}",
        frame.1
    );
    assert_eq!(chittyctl(&socket, &["kick", "#999"]).await.code, 4);
    assert_eq!(chittyctl(&socket, &["kick", "#x"]).await.code, 2);
    server.shutdown().await;
}

async fn next_close<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("no close frame")
        {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}
