//! The chat page in a real headless Chromium: `chat_page.py` (Selenium) is the person at the
//! browser, this test the gRPC participants beside it and the operator who restarts chittyd.
//! The two keep in step by lines (see the script). Needs Debian's `chromium` and
//! `chromium-driver` and the venv's selenium: `bash tests/run` installs all three, and without
//! them the test fails saying so.

use chitty::pb::chat_event;
use chitty::pb::chat_message::Kind;
use chitty::server::ServerConfig;
use chitty_testkit::nats::{self, NatsServer};
use chitty_testkit::{PATIENCE, Raw, TestServer, cluster_config, config, start, start_at};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The venv's Python (`CHITTY_PYTHON`, or the venv `bash tests/run` makes).
fn python() -> PathBuf {
    let path = std::env::var_os("CHITTY_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/python"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "no Python venv at {}: run `bash tests/run` (it creates it) or set CHITTY_PYTHON",
        path.display()
    );
    path
}

/// The browser, the driver and the script, started; fails with what is missing.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Browser {
    fn start(addr: std::net::SocketAddr, artifacts: &Path) -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the browser tests need Debian's chromium and \
                 chromium-driver (apt-get install chromium chromium-driver; `bash tests/run` \
                 installs them): {package}"
            );
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/chat_page.py");
        let mut child = tokio::process::Command::new(python())
            .arg(script)
            .arg(addr.to_string())
            .arg(artifacts)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start python");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Browser {
            child,
            stdin,
            lines,
        }
    }

    /// The script's next line, which must start with `word`; the rest of it.
    async fn said(&mut self, word: &str) -> String {
        // Starting Chromium is the slowest step; everything after it is quick.
        let line = tokio::time::timeout(PATIENCE * 3, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the browser said nothing while waiting for {word:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the browser script ended before {word:?}; see its stderr"));
        line.strip_prefix(word)
            .unwrap_or_else(|| panic!("expected {word:?} from the browser, got {line:?}"))
            .trim()
            .to_owned()
    }

    async fn tell(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }
}

/// A direct message from `from` (a gRPC participant) to user `to`.
async fn direct(from: &mut Raw, name: &str, to: u64, text: &str) {
    from.send(Some(chat_event::Event::Message(chat_event::ChatMessage {
        username: name.into(),
        message: text.into(),
        recipient_id: to,
    })))
    .await;
}

fn short_grace(config: ServerConfig) -> ServerConfig {
    ServerConfig {
        shutdown_grace: Duration::from_secs(2),
        ..config
    }
}

#[tokio::test]
async fn a_person_chats_from_the_page_with_grpc_participants_through_a_restart() {
    chat_from_the_page(config(), None, "browser").await;
}

/// The same, with the cluster on: the page on one node, the gRPC participants on another, and
/// the page's node restarted while the other keeps serving.
#[tokio::test]
async fn the_page_works_the_same_against_any_node_of_a_cluster() {
    let nats = NatsServer::start(&nats::binaries()[0]).await;
    let other = start(cluster_config(&nats.url(), "n2")).await;
    chat_from_the_page(
        cluster_config(&nats.url(), "n1"),
        Some(&other),
        "browser-cluster",
    )
    .await;
    other.shutdown().await;
}

/// A person at the page of a chittyd started with `page`, chatting with gRPC participants on
/// `other` (another node of its cluster) or, without one, on the same chittyd, through a
/// restart of the page's chittyd.
async fn chat_from_the_page(page_config: ServerConfig, other: Option<&TestServer>, dir: &str) {
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir);
    std::fs::create_dir_all(&artifacts).unwrap();
    let server = start(short_grace(page_config.clone())).await;
    let addr = server.addr;
    let peers = other.unwrap_or(&server);
    let mut rusty = peers.join("rusty").await;
    let mut carol = peers.join("carol").await;
    let mut page = Browser::start(addr, &artifacts);

    let refusal = page.said("refused").await;
    assert!(refusal.contains("username rusty is taken"), "{refusal}");

    let lamport: u64 = page.said("joined").await.parse().unwrap();
    let joined = rusty.until_joined("alice").await;
    assert_eq!(
        joined.timestamp, lamport,
        "the page shows the join's own time"
    );
    let alice = joined.sender_id;

    let roster = page.said("roster").await;
    for who in [
        format!("alice #{alice} (you)"),
        format!("rusty #{}", rusty.id),
        format!("carol #{}", carol.id),
    ] {
        assert!(roster.contains(&who), "{who} not in {roster}");
    }

    let m = rusty.until(|m| m.kind == Kind::Message as i32).await;
    assert_eq!(
        (m.username.as_str(), m.message.as_str()),
        ("alice", "hello from the browser")
    );
    assert_eq!(m.sender_id, alice);
    rusty.say_as("rusty", "hello from grpc").await;
    let mine = rusty
        .until(|m| m.kind == Kind::Message as i32 && m.username == "rusty")
        .await;
    page.tell(&format!("expect {}", mine.timestamp)).await;
    assert_eq!(page.said("seen").await, mine.timestamp.to_string());

    // The direct message reaches rusty alone: carol sees the broadcast after it, not it.
    let dm_time: u64 = page.said("direct").await.parse().unwrap();
    let dm = rusty.until(|m| m.kind == Kind::Direct as i32).await;
    assert_eq!(
        (
            dm.message.as_str(),
            dm.sender_id,
            dm.recipient_id,
            dm.timestamp
        ),
        ("psst", alice, rusty.id, dm_time)
    );
    rusty.say_as("rusty", "marker").await;
    carol
        .until(|m| {
            assert_ne!(m.message, "psst", "carol got the direct message");
            m.message == "marker"
        })
        .await;
    direct(&mut rusty, "rusty", alice, "back at you").await;
    page.tell("answered").await;
    page.said("answer seen").await;

    // 129 characters were refused by the page itself; 128 went out.
    page.said("long sent").await;
    let long = rusty
        .until(|m| m.kind == Kind::Message as i32 && m.username == "alice")
        .await;
    assert_eq!(long.message, "é".repeat(128));
    page.said("console clean").await;

    // Restart: the page shows it lost the server, and rejoins the new one on the same port.
    server.shutdown().await;
    let status = page.said("reconnecting").await;
    assert!(status.contains("reconnecting in"), "{status}");
    let server = start_at(addr, short_grace(page_config)).await;
    let status = page.said("reconnected").await;
    assert!(status.starts_with("Connected as alice #"), "{status}");
    // On a single node rusty went with the restart and joins again; on another node of the
    // cluster he stayed.
    let mut rusty = match other {
        None => server.join("rusty").await,
        Some(_) => rusty,
    };
    page.tell("go").await;
    let m = rusty
        .until(|m| m.kind == Kind::Message as i32 && m.username == "alice")
        .await;
    assert_eq!(m.message, "back again");
    page.said("done").await;
    let status = tokio::time::timeout(PATIENCE, page.child.wait())
        .await
        .expect("the browser script did not end")
        .unwrap();
    assert!(status.success(), "the browser script failed: {status}");
    assert!(artifacts.join("chat.png").exists());
    drop((rusty, carol));
    server.shutdown().await;
}
