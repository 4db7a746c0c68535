//! The admin commands: users, kick (with bans and WebSocket close frames), bans and unban
//! across restarts, the socket's permissions, and the errors when chittyd is unreachable or its socket stale or taken.

use crate::{chittyctl, chittyctl_as, json, server_with_admin};
use chitty::audit::AuditConfig;
use chitty::pb::chat_message::Kind;
use chitty::server::ServerConfig;
use chitty::state::StateConfig;
use chitty_testkit::{PATIENCE, TestServer, config, start};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::Code;

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
    assert_eq!(
        a["received"], 5,
        "her welcome, her join, bob's join, her two messages"
    );
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
    // A single chittyd's participants have no node: no NODE column, an empty field.
    assert!(!lines[0].contains("NODE"), "{}", table.stdout);
    assert_eq!(a["node"], "");

    // Nor is it a cluster: `cluster` says so, with its own exit status.
    let cluster = chittyctl(&socket, &["cluster"]).await;
    assert_eq!(cluster.code, 5, "{}", cluster.stderr);
    assert_eq!(cluster.stdout, "");
    assert!(
        cluster
            .stderr
            .starts_with("chittyctl: this chittyd is not part of a cluster"),
        "{}",
        cluster.stderr
    );
    let clock = json(&chittyctl(&socket, &["clock", "--json"]).await);
    assert_eq!(
        (&clock["node"], &clock["applied_seq"]),
        (&"".into(), &0.into())
    );

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
    assert_eq!(
        out.stdout,
        format!("kicked bob (#{}); banned for 2s\n", bob.id)
    );
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
            // Admitted: the welcome comes first.
            Ok(Some(m)) if m.kind == Kind::Welcome as i32 => break,
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

    let records = chitty_testkit::audit::records(&audit);
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
        ..config()
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
    let (server, _audit, _dir) = server_with_admin().await;
    let socket = server.admin.clone().unwrap();
    // Each reads its first frame (welcome or join notice): the session exists.
    let mut carol = server.ws("?username=carol").await;
    let mut anon = server.ws("").await;

    let users = json(&chittyctl(&socket, &["users", "--json"]).await);
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert!(users.iter().all(|u| u["transport"] == "websocket"));
    let anon_id = users.iter().find(|u| u["username"] == "").unwrap()["id"]
        .as_u64()
        .unwrap();
    assert_eq!(anon_id, anon.id);
    assert!(users.iter().any(|u| u["username"] == "carol"));

    let out = chittyctl(&socket, &["kick", "carol", "--reason", "off topic"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let frame = carol.closed().await;
    assert_eq!(frame.0, 1008);
    assert!(frame.1.contains("off topic"), "{}", frame.1);

    let out = chittyctl(
        &socket,
        &["kick", &format!("#{anon_id}"), "--reason", "bye"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, format!("kicked #{anon_id} (not joined)\n"));
    let frame = anon.closed().await;
    assert!(
        frame.1.contains("removed by an operator: bye"),
        "{}",
        frame.1
    );
    assert_eq!(chittyctl(&socket, &["kick", "#999"]).await.code, 4);
    assert_eq!(chittyctl(&socket, &["kick", "#x"]).await.code, 2);
    // Closing their connections ends them at once; left open, each would linger for the
    // client's end, as long as the server gives it.
    drop((carol, anon));
    server.shutdown().await;
}

/// Runs the real chittyctl without --socket, in a mount namespace of its own whose /run is
/// empty but for `default_dir` mounted at /run/chitty (when given), with `XDG_RUNTIME_DIR`.
async fn chittyctl_by_default(
    default_dir: Option<&std::path::Path>,
    runtime_dir: &std::path::Path,
    args: &[&str],
) -> crate::Ctl {
    let script = r#"mount -t tmpfs -o mode=755 tmpfs /run &&
        if [ -n "$0" ]; then mkdir /run/chitty && mount --bind "$0" /run/chitty; fi &&
        exec "$@""#;
    let out = tokio::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(default_dir.map_or_else(Default::default, |d| d.as_os_str().to_owned()))
        .arg(crate::CHITTYCTL)
        .args(args)
        .env_remove("CHITTY_ADMIN_SOCKET")
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .output()
        .await
        .expect("unshare (util-linux)");
    crate::Ctl {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn without_socket_chittyctl_tries_the_service_then_the_users_runtime_dir() {
    if !chitty_testkit::process::root_or_skip("a private /run in a mount namespace") {
        return;
    }
    // The service's socket (alice is there) and a user's own chittyd's (bob is there).
    let service_dir = tempfile::tempdir().unwrap();
    let runtime_dir = tempfile::tempdir().unwrap();
    let service = start(ServerConfig {
        admin_socket: Some(service_dir.path().join("admin.sock")),
        ..config()
    })
    .await;
    let user = start(ServerConfig {
        admin_socket: Some(runtime_dir.path().join("chitty/admin.sock")),
        ..config()
    })
    .await;
    let _alice = service.join("alice").await;
    let _bob = user.join("bob").await;

    let both = chittyctl_by_default(Some(service_dir.path()), runtime_dir.path(), &["users"]).await;
    assert_eq!(both.code, 0, "{}", both.stderr);
    assert!(
        both.stdout.contains("alice"),
        "the default comes first: {}",
        both.stdout
    );

    let user_only = chittyctl_by_default(None, runtime_dir.path(), &["users"]).await;
    assert_eq!(user_only.code, 0, "{}", user_only.stderr);
    assert!(
        user_only.stdout.contains("bob"),
        "then the user's: {}",
        user_only.stdout
    );

    let nobody = tempfile::tempdir().unwrap();
    let none = chittyctl_by_default(None, nobody.path(), &["users"]).await;
    assert_eq!(none.code, 3);
    let runtime_socket = nobody.path().join("chitty/admin.sock");
    assert!(
        none.stderr
            .contains("cannot reach chittyd at /run/chitty/admin.sock: no such socket, nor at")
            && none.stderr.contains(runtime_socket.to_str().unwrap()),
        "names both: {}",
        none.stderr
    );
    service.shutdown().await;
    user.shutdown().await;
    assert!(
        !runtime_dir.path().join("chitty").exists(),
        "removed with its socket"
    );
}

#[tokio::test]
async fn ipv4_peers_of_a_dual_stack_socket_are_shown_as_ipv4() {
    // On `[::]` an IPv4 client arrives as ::ffff:127.0.0.1; it is 127.0.0.1 in the users list
    // and the audit trail.
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let server = chitty_testkit::start_at(
        "[::]:0".parse().unwrap(),
        ServerConfig {
            admin_socket: Some(dir.path().join("admin.sock")),
            audit: chitty::audit::AuditConfig {
                file: Some(audit.clone()),
                ..Default::default()
            },
            ..config()
        },
    )
    .await;
    let socket = server.admin.clone().unwrap();
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    let mut alice = chitty_testkit::Raw::open(&format!("http://{v4}")).await;
    alice.send_join("alice").await;
    alice.until_joined("alice").await;
    let carol = chitty_testkit::WsUser::connect(v4, "?username=carol").await;
    alice.until_joined("carol").await;

    let users = json(&chittyctl(&socket, &["users", "--json"]).await);
    let peers: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["peer"].as_str().unwrap())
        .collect();
    assert_eq!(peers.len(), 2);
    assert!(
        peers.iter().all(|p| p.starts_with("127.0.0.1:")),
        "{peers:?}"
    );
    drop((alice, carol));
    server.shutdown().await;
    let records = chitty_testkit::audit::records(&audit);
    let joins: Vec<&str> = records
        .iter()
        .filter(|r| r["event"] == "join")
        .map(|r| r["peer"].as_str().unwrap())
        .collect();
    assert_eq!(joins.len(), 2, "{records:?}");
    assert!(
        joins.iter().all(|p| p.starts_with("127.0.0.1:")),
        "{joins:?}"
    );
}

/// A server whose admin socket and state are in `dir`, so that a restart finds both.
async fn server_with_state(dir: &Path) -> TestServer {
    start(ServerConfig {
        admin_socket: Some(dir.join("admin.sock")),
        state: Some(StateConfig::new(dir.join("state"))),
        audit: AuditConfig {
            file: Some(dir.join("audit.log")),
            ..AuditConfig::default()
        },
        ..config()
    })
    .await
}

#[tokio::test]
async fn bans_lists_and_unban_lifts_and_both_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let server = server_with_state(dir.path()).await;
    let _bob = server.join("Bob").await;
    let _eve = server.join("eve").await;
    let out = chittyctl(&socket, &["bans"]).await;
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "NAME  UNTIL  LEFT  REASON  BY\n0 bans")
    );
    for (name, ban) in [("BOB", "2h15m"), ("eve", "10m")] {
        let out = chittyctl(&socket, &["kick", name, "--reason", "spam", "--ban", ban]).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.stderr, "", "saved: no warning");
    }
    server.shutdown().await;

    // After a restart: listed soonest first, shown as typed, with the time left.
    let server = server_with_state(dir.path()).await;
    let bans = json(&chittyctl(&socket, &["bans", "--json"]).await);
    let bans = bans.as_array().unwrap();
    assert_eq!(bans.len(), 2, "{bans:?}");
    assert_eq!(bans[0]["username"], "eve");
    assert_eq!(bans[1]["username"], "Bob");
    assert_eq!(bans[1]["reason"], "spam");
    let left = bans[1]["seconds_left"].as_u64().unwrap();
    assert!((2 * 3600..=2 * 3600 + 15 * 60).contains(&left), "{left}");
    assert!(bans[1]["actor"].as_str().unwrap().starts_with("uid="));
    let table = chittyctl(&socket, &["bans"]).await;
    let bob = table
        .stdout
        .lines()
        .find(|l| l.starts_with("Bob "))
        .unwrap();
    assert!(bob.contains(" in 2h 1"), "{bob}");
    assert!(table.stdout.ends_with("2 bans\n"), "{}", table.stdout);

    // Lifted by any form of the name; lifting it again is exit 4, like kick's nobody.
    let out = chittyctl(&socket, &["unban", "bob"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "lifted the ban on Bob\n");
    let out = chittyctl(&socket, &["unban", "bob"]).await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("no ban on \"bob\""), "{}", out.stderr);
    let mut bob = server.open().await;
    bob.send_join("bob").await;
    bob.until_joined("bob").await;
    server.shutdown().await;

    let server = server_with_state(dir.path()).await;
    let bans = json(&chittyctl(&socket, &["bans", "--json"]).await);
    assert_eq!(bans.as_array().unwrap().len(), 1, "{bans}");
    assert_eq!(bans[0]["username"], "eve");
    let mut again = server.open().await;
    again.send_join("EVE").await;
    assert_eq!(again.expect_status().await.code(), Code::PermissionDenied);
    server.shutdown().await;

    let records = chitty_testkit::audit::records(&dir.path().join("audit.log"));
    let unban = records
        .iter()
        .find(|r| r["event"] == "unban")
        .expect("unban audited");
    assert_eq!(unban["user"], "Bob");
    assert!(
        unban["actor"].as_str().unwrap().starts_with("uid="),
        "{unban}"
    );
}
