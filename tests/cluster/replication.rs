//! The contract across nodes: three chittyd nodes in-process, each a replica of one room
//! through a real nats-server's JetStream stream, with gRPC and WebSocket participants spread
//! over them. One order and the same Lamport times everywhere; a name won by exactly one of
//! racing joins; direct messages across nodes and transports; kicks and bans from any node.
//! Faults (a node killed, NATS lost, a late node) are in `faults`.

use chitty::pb::chat_event;
use chitty::pb::chat_message::Kind;
use chitty_testkit::TestServer;
use chitty_testkit::nats::{self, NatsServer};
use chitty_testkit::{PATIENCE, Raw, admin};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// A node of the cluster at `nats`, in-process, with an admin socket in `dir`.
async fn node(nats: &NatsServer, name: &str, dir: &std::path::Path) -> TestServer {
    let mut config = chitty_testkit::cluster_config(&nats.url(), name);
    config.admin_socket = Some(dir.join(format!("{name}.sock")));
    chitty_testkit::start(config).await
}

/// Three nodes on one nats-server.
async fn three(nats: &NatsServer, dir: &std::path::Path) -> Vec<TestServer> {
    let mut nodes = Vec::new();
    for name in ["n1", "n2", "n3"] {
        nodes.push(node(nats, name, dir).await);
    }
    nodes
}

async fn shutdown(nodes: Vec<TestServer>) {
    for n in nodes {
        n.shutdown().await;
    }
}

/// The broadcasts a gRPC participant reads until it has seen `n` chat messages: (Lamport time,
/// sender, text) of every message, join and leave, with Lamport times checked to increase.
async fn read_messages(raw: &mut Raw, n: usize) -> Vec<(u64, String, String)> {
    let mut seen = Vec::new();
    let mut last = 0;
    let mut chats = 0;
    while chats < n {
        let m = raw.expect_msg().await;
        assert!(
            m.timestamp > last,
            "Lamport times must increase: {} after {last}",
            m.timestamp
        );
        last = m.timestamp;
        if m.kind == Kind::Message as i32 {
            chats += 1;
            seen.push((m.timestamp, m.username.clone(), m.message.clone()));
        }
    }
    seen
}

#[tokio::test]
async fn one_order_and_the_same_lamport_times_on_every_node() {
    for binary in nats::binaries() {
        let nats = NatsServer::start(&binary).await;
        let which = nats.describe();
        let dir = tempfile::tempdir().unwrap();
        let nodes = three(&nats, dir.path()).await;
        let mut a = nodes[0].join("alice").await;
        let mut b = nodes[1].join("bob").await;
        let mut c = nodes[2].join("carol").await;
        // Everyone sees everyone's join, whichever node they are on.
        a.until_joined("carol").await;
        b.until_joined("carol").await;
        let mut ws = nodes[2].ws("?username=dave").await;
        a.until_joined("dave").await;
        b.until_joined("dave").await;
        c.until_joined("dave").await;

        const EACH: usize = 30;
        let senders = [("alice", 0), ("bob", 1), ("carol", 2)];
        let mut tasks = Vec::new();
        for (name, at) in senders {
            let mut s = nodes[at].open().await;
            let name = format!("{name}-s");
            s.send_join(&name).await;
            s.until_joined(&name).await;
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    s.say_as(&name, &format!("{name} {i}")).await;
                }
                s
            }));
        }
        let total = EACH * senders.len();
        let (ra, rb, rc) = tokio::join!(
            read_messages(&mut a, total),
            read_messages(&mut b, total),
            read_messages(&mut c, total)
        );
        assert_eq!(ra, rb, "{which}: n1 and n2 disagree");
        assert_eq!(ra, rc, "{which}: n1 and n3 disagree");
        // The WebSocket participant on n3 has the same order and times.
        let mut rw = Vec::new();
        let mut last = 0;
        while rw.len() < total {
            let v = ws.recv().await;
            let l = v["timestamp"].as_u64().unwrap_or(0);
            assert!(l > last, "{which}: {v}");
            last = l;
            if v["kind"] == "message" {
                rw.push((
                    l,
                    v["username"].as_str().unwrap_or("").to_owned(),
                    v["message"].as_str().unwrap_or("").to_owned(),
                ));
            }
        }
        assert_eq!(ra, rw, "{which}: the WebSocket participant disagrees");
        // Every sender's messages in the order it sent them.
        for (name, _) in senders {
            let mine: Vec<_> = ra
                .iter()
                .filter(|(_, from, _)| from == &format!("{name}-s"))
                .map(|(_, _, text)| text.clone())
                .collect();
            let sent: Vec<_> = (0..EACH).map(|i| format!("{name}-s {i}")).collect();
            assert_eq!(mine, sent, "{which}");
        }
        for t in tasks {
            drop(t.await.unwrap());
        }
        // The same clock on every node once all is applied.
        let clocks: Vec<u64> = nodes.iter().map(|n| n.hub.clock().now()).collect();
        let settled = tokio::time::timeout(PATIENCE, async {
            loop {
                let c: Vec<u64> = nodes.iter().map(|n| n.hub.clock().now()).collect();
                if c.iter().all(|&x| x == c[0]) {
                    return c;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or(clocks);
        assert!(
            settled.iter().all(|&x| x == settled[0]),
            "{which}: {settled:?}"
        );
        drop((a, b, c, ws));
        shutdown(nodes).await;
    }
}

#[tokio::test]
async fn racing_joins_of_one_name_on_three_nodes_have_one_winner() {
    let binary = &nats::binaries()[0];
    let nats = NatsServer::start(binary).await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = three(&nats, dir.path()).await;
    for round in 0..20 {
        // Case differs per node: names are compared folded, cluster-wide.
        let names = [
            format!("racer{round}"),
            format!("Racer{round}"),
            format!("RACER{round}"),
        ];
        let mut raws = Vec::new();
        for n in &nodes {
            raws.push(n.open().await);
        }
        let joins = raws.iter_mut().zip(&names).map(|(raw, name)| async move {
            raw.send_join(name).await;
            loop {
                match raw.next().await {
                    Ok(Some(m)) if m.kind == Kind::Join as i32 && m.subject == *name => {
                        return Ok(());
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err(tonic::Code::Ok),
                    Err(status) => return Err(status.code()),
                }
            }
        });
        let outcomes = futures_util::future::join_all(joins).await;
        let won = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {outcomes:?}");
        for o in &outcomes {
            if let Err(code) = o {
                assert_eq!(
                    *code,
                    tonic::Code::AlreadyExists,
                    "round {round}: {outcomes:?}"
                );
            }
        }
    }
    shutdown(nodes).await;
}

#[tokio::test]
async fn direct_messages_cross_nodes_and_transports_both_ways() {
    let binary = &nats::binaries()[0];
    let nats = NatsServer::start(binary).await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = three(&nats, dir.path()).await;
    let mut grpc = nodes[0].join("gina").await;
    let mut ws = nodes[1].ws("").await;
    let ws_id = ws.id;
    // The WebSocket user (direct only) on n2 is known on n1.
    tokio::time::timeout(PATIENCE, async {
        while !nodes[0].hub.users().iter().any(|u| u.id == ws_id) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("n1 learns of the WebSocket user");
    grpc.send(Some(chat_event::Event::Message(chat_event::ChatMessage {
        username: "gina".into(),
        message: "hello over there".into(),
        recipient_id: ws_id,
    })))
    .await;
    let got = ws.until(|v| v["kind"] == "direct").await;
    assert_eq!(got["message"], "hello over there");
    assert_eq!(got["sender_id"], grpc.id);
    let echo = grpc.until(|m| m.kind == Kind::Direct as i32).await;
    assert_eq!(echo.timestamp, got["timestamp"].as_u64().unwrap());
    ws.send(json!({"recipient_id": grpc.id, "message": "and back"}))
        .await;
    let back = grpc.until(|m| m.kind == Kind::Direct as i32).await;
    assert_eq!(back.message, "and back");
    assert_eq!(back.sender_id, ws_id);
    // To someone on no node: refused to the sender, at its place in the order.
    grpc.send(Some(chat_event::Event::Message(chat_event::ChatMessage {
        username: "gina".into(),
        message: "anyone?".into(),
        recipient_id: 999_999,
    })))
    .await;
    let refused = grpc.until(|m| m.kind == Kind::Error as i32).await;
    assert!(
        refused.message.contains("999999 is not connected"),
        "{refused:?}"
    );
    drop((grpc, ws));
    shutdown(nodes).await;
}

#[tokio::test]
async fn kicks_and_bans_work_from_any_node() {
    let binary = &nats::binaries()[0];
    let nats = NatsServer::start(binary).await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = three(&nats, dir.path()).await;
    let mut mallory = nodes[0].join("mallory").await;
    let mut watcher = nodes[1].join("watcher").await;
    // Kicked and banned through n3's admin socket: n3 holds neither participant.
    let socket: PathBuf = nodes[2].admin.clone().expect("n3's admin socket");
    let mut ctl = admin::client(&socket).await.unwrap();
    let kicked = ctl
        .kick(chitty::pb::admin::KickRequest {
            username: "Mallory".into(),
            reason: "spam".into(),
            ban_seconds: 600,
            ..Default::default()
        })
        .await
        .expect("kick through another node")
        .into_inner();
    assert_eq!(kicked.user.expect("the user").username, "mallory");
    let status = mallory.expect_status().await;
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    let left = watcher.until(|m| m.kind == Kind::Leave as i32).await;
    assert!(
        left.message.contains("removed by an operator: spam"),
        "{left:?}"
    );
    // The ban holds on every node.
    for n in &nodes {
        let mut again = n.open().await;
        again.send_join("MALLORY").await;
        let status = again.expect_status().await;
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    }
    // And is listed, and lifted, from any node.
    let mut ctl1 = admin::client(nodes[0].admin.as_ref().unwrap())
        .await
        .unwrap();
    let bans = ctl1
        .list_bans(chitty::pb::admin::ListBansRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bans.bans.len(), 1, "{bans:?}");
    ctl1.unban(chitty::pb::admin::UnbanRequest {
        username: "mallory".into(),
    })
    .await
    .expect("unban through n1");
    let back = nodes[1].join("mallory").await;
    drop((back, watcher, mallory));
    shutdown(nodes).await;
}
