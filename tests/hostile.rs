//! Hostile clients against a real chittyd: each test plays one attacker while well-behaved
//! participants keep chatting, and checks that the attacker is refused or cut off, that every
//! message of the others still arrives in order, and that what the server keeps stays bounded.

mod common;

use chitty::pb::chat_message::Kind;
use chitty::server::ServerConfig;
use chitty::server::limits::ConnLimits;
use common::{PATIENCE, Raw, TestServer, start};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Two participants who chat throughout a test: alice speaks, bob listens.
struct Bystanders {
    alice: Raw,
    bob: Raw,
    said: usize,
    heard: usize,
}

impl Bystanders {
    async fn join(server: &TestServer) -> Bystanders {
        let alice = server.join("alice").await;
        let bob = server.join("bob").await;
        Bystanders {
            alice,
            bob,
            said: 0,
            heard: 0,
        }
    }

    /// alice says `n` more numbered messages.
    async fn say(&mut self, n: usize) {
        for _ in 0..n {
            let text = format!("message {}", self.said);
            self.alice.say_as("alice", &text).await;
            self.said += 1;
        }
    }

    /// bob has received every message alice said so far, in order, and nothing else from her.
    async fn all_arrived(&mut self) {
        while self.heard < self.said {
            let m = self.bob.expect_msg().await;
            if m.kind == Kind::Message as i32 && m.username == "alice" {
                assert_eq!(
                    m.message,
                    format!("message {}", self.heard),
                    "lost or out of order"
                );
                self.heard += 1;
            }
        }
    }
}

/// Waits until the server has closed `stream`: end of file or a reset, never data.
async fn closed_by_server(stream: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // hyper may answer garbage with an error response or a GOAWAY before closing.
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
}

/// Waits until `counter` reaches `want` (the accept loop updates it as it works).
async fn until_count(counter: &AtomicU64, want: u64) {
    tokio::time::timeout(PATIENCE, async {
        while counter.load(Ordering::Relaxed) != want {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "counter stayed at {} instead of {want}",
            counter.load(Ordering::Relaxed)
        )
    });
}

/// Bytes that are neither HTTP/1 nor HTTP/2 (a xorshift sequence, the same in every run).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn random_bytes_are_cut_off_and_chat_goes_on() {
    let server = start(common::config()).await;
    let mut chat = Bystanders::join(&server).await;

    let mut attackers = Vec::new();
    for round in 0..8 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        // The server may close before it has read it all; a failed write is that close.
        let _ = s.write_all(&noise(16 * 1024 + round)).await;
        attackers.push(s);
        chat.say(5).await;
    }
    for s in &mut attackers {
        closed_by_server(s).await;
    }
    chat.say(5).await;
    chat.all_arrived().await;
    assert_eq!(server.hub.participants(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn connections_that_never_send_a_request_are_closed() {
    let server = start(ServerConfig {
        handshake_timeout: Duration::from_millis(500),
        ..common::config()
    })
    .await;
    let mut chat = Bystanders::join(&server).await;
    let stats = &server.edge;
    let before = stats.handshake_timeouts.load(Ordering::Relaxed);

    // Silent from the start; half an HTTP/2 preface; the whole preface and then nothing (no
    // SETTINGS, no request); an HTTP/1 request line without the end of its headers.
    let openings: [&[u8]; 4] = [
        b"",
        b"PRI * HTTP/2.0\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: chitty\r\n",
    ];
    let mut attackers = Vec::new();
    for opening in openings {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(opening).await.unwrap();
        attackers.push(s);
    }
    chat.say(10).await;
    for s in &mut attackers {
        closed_by_server(s).await;
    }
    chat.say(10).await;
    chat.all_arrived().await;
    // The HTTP/1 one may be closed by hyper's own header timeout (set to the same deadline)
    // rather than counted by ours.
    let timeouts = stats.handshake_timeouts.load(Ordering::Relaxed) - before;
    assert!((3..=4).contains(&timeouts), "{timeouts} handshake timeouts");
    server.shutdown().await;
}

#[tokio::test]
async fn a_storm_over_the_open_connections_limit_is_refused_at_accept() {
    const LIMIT: u64 = 6;
    const STORM: u64 = 30;
    let server = start(ServerConfig {
        limits: ConnLimits {
            max_per_ip: LIMIT as u32,
            new_per_ip: 0,
            window: Duration::from_secs(1),
        },
        ..common::config()
    })
    .await;
    let mut chat = Bystanders::join(&server).await;
    let stats = &server.edge;
    assert_eq!(stats.open_connections.load(Ordering::Relaxed), 2);

    // The storm holds every connection it gets: alice and bob have two of the six. A refused
    // connection is reset so soon that connecting itself may report the reset.
    let mut storm = Vec::new();
    for _ in 0..STORM {
        storm.push(TcpStream::connect(server.addr).await);
        chat.say(1).await;
    }
    let refused = STORM - (LIMIT - 2);
    until_count(&stats.refused_open_per_ip, refused).await;
    assert_eq!(stats.open_connections.load(Ordering::Relaxed), LIMIT);
    assert_eq!(stats.accepted.load(Ordering::Relaxed), 2 + STORM);
    // The backlog is first in, first out: the first four were admitted, every later one was
    // closed without a byte of HTTP.
    let admitted = (LIMIT - 2) as usize;
    assert!(storm[..admitted].iter().all(Result::is_ok));
    for s in storm[admitted..].iter_mut().filter_map(|s| s.as_mut().ok()) {
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(PATIENCE, s.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "a refused connection read {read:?}"
        );
    }
    chat.all_arrived().await;

    // Once the storm leaves, its address may connect again.
    drop(storm);
    until_count(&stats.open_connections, 2).await;
    let mut carol = server.join("carol").await;
    chat.say(3).await;
    chat.all_arrived().await;
    carol.leave_as("carol").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_storm_over_the_new_connections_rate_is_refused_at_accept() {
    const BUCKET: u64 = 5;
    const STORM: u64 = 20;
    let server = start(ServerConfig {
        limits: ConnLimits {
            max_per_ip: 0,
            new_per_ip: BUCKET as u32,
            // So long that no token comes back during the test: the counts are exact.
            window: Duration::from_secs(3600),
        },
        ..common::config()
    })
    .await;
    let mut chat = Bystanders::join(&server).await;
    let stats = &server.edge;

    // Connections that open and close at once still spend the address's budget.
    for _ in 0..STORM {
        // Refused ones may already fail to connect (reset).
        drop(TcpStream::connect(server.addr).await);
        chat.say(1).await;
    }
    until_count(&stats.refused_new_per_ip, STORM - (BUCKET - 2)).await;
    chat.all_arrived().await;
    // And a well-behaved newcomer from the same address is refused too: the limit is the
    // address's, whoever it is (its connection is reset before any HTTP).
    let newcomer = async {
        let mut client = chitty::pb::chat_client::ChatClient::connect(server.url())
            .await
            .map_err(|e| e.to_string())?;
        let (_tx, rx) = tokio::sync::mpsc::channel(1);
        client
            .broadcast(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|e| e.to_string())
    };
    assert!(
        newcomer.await.is_err(),
        "a connection over the rate was admitted"
    );
    chat.say(2).await;
    chat.all_arrived().await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_address_table_forgets_idle_addresses() {
    // Every loopback address is this machine, so 127.0.0.2 ... 127.0.0.201 are 200 different
    // client addresses. A bucket that refills within a millisecond is full again by the time a
    // connection closes, so each address's entry goes with its last connection.
    let server = start(ServerConfig {
        limits: ConnLimits {
            max_per_ip: 4,
            new_per_ip: 1000,
            window: Duration::from_millis(1),
        },
        ..common::config()
    })
    .await;
    let mut chat = Bystanders::join(&server).await;
    let stats = &server.edge;
    assert_eq!(stats.tracked_addresses.load(Ordering::Relaxed), 1);

    let mut held = Vec::new();
    for i in 2..202u8 {
        held.push(connect_from([127, 0, 0, i], server.addr).await);
    }
    until_count(&stats.open_connections, 202).await;
    let tracked = stats.tracked_addresses.load(Ordering::Relaxed);
    assert_eq!(tracked, 201, "one entry per address with a connection open");
    chat.say(5).await;
    drop(held);
    until_count(&stats.open_connections, 2).await;
    until_count(&stats.tracked_addresses, 1).await;
    chat.say(5).await;
    chat.all_arrived().await;
    server.shutdown().await;
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Out of file descriptors: chittyd as its own process, its open-files limit lowered with
/// prlimit(1) so that a handful of connections exhausts it.
mod out_of_descriptors {
    use super::*;
    use chitty::client::{Participant, ServerAddr};
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader, Lines};
    use tokio::process::{Child, ChildStderr, Command};

    struct Chittyd {
        child: Child,
        log: Lines<BufReader<ChildStderr>>,
        addr: String,
    }

    impl Chittyd {
        /// Starts chittyd under `prlimit --nofile=SOFT:HARD` and reads its log up to the
        /// listening line.
        async fn start(soft: u64, hard: u64) -> (Chittyd, Vec<String>) {
            let mut child = Command::new("prlimit")
                .arg(format!("--nofile={soft}:{hard}"))
                .arg(env!("CARGO_BIN_EXE_chittyd"))
                .args(["--listen", "127.0.0.1:0", "--log-target", "stderr"])
                .args(["--audit-log", "none", "--admin-socket", "none"])
                .args(["--handshake-timeout", "1h", "--rate-limit", "0"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("start prlimit (util-linux)");
            let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
            let mut seen = Vec::new();
            let addr = tokio::time::timeout(PATIENCE, async {
                while let Some(line) = log.next_line().await.unwrap() {
                    seen.push(line.clone());
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        return rest.trim().to_owned();
                    }
                }
                panic!("chittyd exited before listening: {seen:?}");
            })
            .await
            .expect("chittyd did not start");
            (Chittyd { child, log, addr }, seen)
        }

        fn pid(&self) -> u32 {
            self.child.id().expect("chittyd exited")
        }

        /// Reads the log until a line containing `needle`.
        async fn until_log(&mut self, needle: &str) -> String {
            tokio::time::timeout(PATIENCE, async {
                while let Some(line) = self.log.next_line().await.unwrap() {
                    if line.contains(needle) {
                        return line;
                    }
                }
                panic!("chittyd's log ended before {needle:?}");
            })
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in chittyd's log"))
        }

        /// Sets both open-files limits of the running chittyd so that exactly `free` more
        /// descriptors can be opened.
        fn leave_free(&self, free: usize) {
            let pid = self.pid();
            let open: Vec<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            // The lowest free numbers are handed out: `limit` leaves `free` when exactly that
            // many numbers below it are unused.
            let limit = (1..)
                .find(|&limit| limit - open.iter().filter(|&&fd| fd < limit).count() == free)
                .unwrap();
            let ok = std::process::Command::new("prlimit")
                .args([
                    "--pid",
                    &pid.to_string(),
                    &format!("--nofile={limit}:{limit}"),
                ])
                .status()
                .unwrap()
                .success();
            assert!(ok, "prlimit --pid failed");
        }

        async fn stop(mut self) {
            let ok = std::process::Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status()
                .unwrap()
                .success();
            assert!(ok);
            // Drain the log so chittyd never blocks writing it.
            tokio::spawn(async move { while let Ok(Some(_)) = self.log.next_line().await {} });
            let status = tokio::time::timeout(PATIENCE, self.child.wait())
                .await
                .expect("chittyd did not stop")
                .unwrap();
            assert!(status.success(), "chittyd exited with {status}");
        }
    }

    /// Reads `p`'s messages until `text` from `from` arrives; returns what `from` said on the
    /// way, in order.
    async fn said_until(p: &mut Participant, from: &str, text: &str) -> Vec<String> {
        let mut said = Vec::new();
        loop {
            let m = tokio::time::timeout(PATIENCE, p.next())
                .await
                .expect("timed out")
                .expect("stream failed")
                .expect("stream ended");
            if m.kind == Kind::Message as i32 && m.username == from {
                said.push(m.message.clone());
                if m.message == text {
                    return said;
                }
            }
        }
    }

    #[tokio::test]
    async fn out_of_descriptors_it_backs_off_keeps_serving_and_recovers() {
        let (mut chittyd, startup) = Chittyd::start(64, 256).await;
        assert!(
            startup.iter().any(|l| l.contains("open-files limit: 256")),
            "the soft limit was not raised to the hard limit: {startup:?}"
        );
        let server = ServerAddr::plain(&chittyd.addr);
        let mut alice = Participant::join(&server, "alice").await.unwrap();
        let mut bob = Participant::join(&server, "bob").await.unwrap();

        chittyd.leave_free(2);
        // Two idle connections take the last descriptors; the rest wait in the backlog while
        // accept fails.
        let mut idle = Vec::new();
        for _ in 0..8 {
            idle.push(TcpStream::connect(&chittyd.addr).await.unwrap());
        }
        let line = chittyd.until_log("accept failed").await;
        assert!(line.contains("out of file descriptors"), "{line}");
        assert!(line.contains("backing off"), "{line}");

        // Those already connected keep chatting, in order.
        for i in 0..20 {
            alice.say(&format!("while full {i}")).await.unwrap();
        }
        let got = said_until(&mut bob, "alice", "while full 19").await;
        let want: Vec<_> = (0..20).map(|i| format!("while full {i}")).collect();
        assert_eq!(got, want);

        // Closing the idle connections frees descriptors: chittyd accepts again.
        drop(idle);
        let line = chittyd.until_log("accepting connections again").await;
        assert!(line.contains("failed accepts"), "{line}");
        let carol = Participant::join(&server, "carol").await.unwrap();
        carol.say("back").await.unwrap();
        said_until(&mut alice, "carol", "back").await;
        said_until(&mut bob, "carol", "back").await;
        drop((alice, bob, carol));
        chittyd.stop().await;
    }
}
