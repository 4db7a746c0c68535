//! Interoperability with software we did not write: Python's grpcio (stubs generated from
//! proto/ at test time) against a real chittyd, and two WebSocket clients, Python's
//! `websockets` and Node's `ws`. `bash tests/run` sets up the Python venv and Node's `ws`;
//! CHITTY_PYTHON and CHITTY_NODE name the interpreters.

use chitty::pb::chat_message::Kind;
use chitty::server::ServerConfig;
use chitty_testkit::{PATIENCE, config, start, start_default};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

/// The venv's Python; a missing venv fails the test with the command that makes it.
pub fn python() -> PathBuf {
    let path = std::env::var_os("CHITTY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/python")
        });
    assert!(
        path.exists(),
        "no Python venv at {}: run `bash tests/run` (it creates it) or set CHITTY_PYTHON",
        path.display()
    );
    path
}

type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Runs `tests/interop/SCRIPT ADDR` with the venv's Python; its standard output is read line by
/// line, its standard error goes to the test's.
fn python_script(script: &str, addr: std::net::SocketAddr) -> (tokio::process::Child, Lines) {
    run_script(tokio::process::Command::new(python()), script, addr)
}

/// Runs `tests/interop/SCRIPT ADDR` with Node, which finds the `ws` package through NODE_PATH
/// (`bash tests/run` installs both and sets it).
fn node_script(script: &str, addr: std::net::SocketAddr) -> (tokio::process::Child, Lines) {
    let node = std::env::var_os("CHITTY_NODE").unwrap_or_else(|| "node".into());
    run_script(tokio::process::Command::new(node), script, addr)
}

fn run_script(
    mut interpreter: tokio::process::Command,
    script: &str,
    addr: std::net::SocketAddr,
) -> (tokio::process::Child, Lines) {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = interpreter
        .arg(format!("{root}/tests/interop/{script}"))
        .arg(addr.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {script}: {e}; `bash tests/run` installs what the interop tests need"
            )
        });
    let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

#[tokio::test]
async fn python_grpcio_participant_chats_with_a_tonic_participant() {
    python_participant_chats(&[]).await;
}

#[tokio::test]
async fn python_grpcio_participant_chats_with_gzip_compressed_requests() {
    python_participant_chats(&["gzip"]).await;
}

/// grpc_chat.py (with `extra` arguments) joins, chats with a tonic participant and leaves.
async fn python_participant_chats(extra: &[&str]) {
    let server = start_default().await;
    python_chats_with_rusty(&server, &server, extra).await;
    server.shutdown().await;
}

#[tokio::test]
async fn python_grpcio_participant_on_one_cluster_node_chats_with_tonic_on_another() {
    use chitty_testkit::nats::{self, NatsServer};
    let nats = NatsServer::start(&nats::binaries()[0]).await;
    let node = |name: &str| start(chitty_testkit::cluster_config(&nats.url(), name));
    let n1 = node("n1").await;
    let n2 = node("n2").await;
    // Python on n1; its join, messages, refusal and leave go through the stream to n2's rusty.
    python_chats_with_rusty(&n1, &n2, &[]).await;
    n1.shutdown().await;
    n2.shutdown().await;
}

/// grpc_chat.py (with `extra` arguments) on `python_on` joins, chats with rusty, a tonic
/// participant on `rusty_on` (the same server, or another node of its cluster), and leaves.
async fn python_chats_with_rusty(
    python_on: &chitty_testkit::TestServer,
    rusty_on: &chitty_testkit::TestServer,
    extra: &[&str],
) {
    let mut rusty = rusty_on.join("rusty").await;
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = tokio::process::Command::new(python())
        .arg(format!("{root}/tests/interop/grpc_chat.py"))
        .arg(python_on.addr.to_string())
        .arg(format!("{root}/proto"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start python");

    let joined = rusty
        .until(|m| m.kind == Kind::Join as i32 && m.subject == "pyclient")
        .await;
    let m = rusty.until(|m| m.username == "pyclient").await;
    assert_eq!(m.message, "hello from python");
    assert!(m.timestamp > joined.timestamp);
    rusty.say_as("rusty", "hello from rust").await;
    let m = rusty.until(|m| m.kind == Kind::Leave as i32).await;
    assert_eq!(
        m.message,
        format!(
            "Participant pyclient left Chitty-Chat at Lamport time {}",
            m.timestamp
        )
    );

    let out = tokio::time::timeout(PATIENCE, async {
        let mut stdout = String::new();
        let mut stderr = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .await
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();
        (child.wait().await.unwrap(), stdout, stderr)
    })
    .await
    .expect("python participant hung");
    assert!(out.0.success(), "python failed:\n{}\n{}", out.1, out.2);
    assert!(out.1.contains("python participant done"), "{}", out.1);
    assert!(out.1.contains("@ rusty: hello from rust"), "{}", out.1);
}

#[tokio::test]
async fn python_checks_health_and_reflection() {
    let server = start(ServerConfig {
        shutdown_grace: std::time::Duration::from_secs(1),
        ..config()
    })
    .await;
    let (mut child, mut lines) = python_script("health_reflection.py", server.addr);
    let first = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("python health check hung")
        .unwrap();
    assert_eq!(
        first.as_deref(),
        Some("SERVING"),
        "see python's stderr above"
    );
    // While shutting down, the health service says NOT_SERVING to the open watch.
    server.stop.cancel();
    let next = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("no NOT_SERVING")
        .unwrap();
    assert_eq!(next.as_deref(), Some("NOT_SERVING"));
    assert!(child.wait().await.unwrap().success());
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn python_websockets_user_exchanges_direct_messages_with_grpc() {
    websocket_user_exchanges_direct_messages(python_script, "ws_direct.py", "python").await;
}

#[tokio::test]
async fn node_ws_user_exchanges_direct_messages_with_grpc() {
    websocket_user_exchanges_direct_messages(node_script, "ws_direct.mjs", "node").await;
}

/// A WebSocket user we did not write (`script`, run by `run`) and a gRPC participant exchange
/// direct messages by id; the script also checks an error frame and its increasing timestamps.
async fn websocket_user_exchanges_direct_messages(
    run: fn(&str, std::net::SocketAddr) -> (tokio::process::Child, Lines),
    script: &str,
    who: &str,
) {
    use chitty::pb::chat_event;
    let server = start_default().await;
    let mut rusty = server.join("rusty").await;
    let (mut child, mut lines) = run(script, server.addr);
    let first = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{who} did not connect"))
        .unwrap()
        .unwrap_or_else(|| panic!("{who} exited; see its stderr"));
    let id: u64 = first.strip_prefix("ID ").unwrap().parse().unwrap();
    rusty
        .send(Some(chat_event::Event::Message(chat_event::ChatMessage {
            username: "rusty".into(),
            message: "ping from grpc".into(),
            recipient_id: id,
        })))
        .await;
    // rusty's own copy of what he sent comes back first, then the script's answer.
    let echo = rusty.until(|m| m.kind == Kind::Direct as i32).await;
    assert_eq!((echo.sender_id, echo.recipient_id), (rusty.id, id));
    let reply = rusty.until(|m| m.kind == Kind::Direct as i32).await;
    assert_eq!(reply.message, format!("pong from {who}"));
    assert_eq!(reply.sender_id, id);
    let done = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done, Some(format!("{who} websocket user done")));
    assert!(child.wait().await.unwrap().success());
    server.shutdown().await;
}
