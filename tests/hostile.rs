//! Hostile clients against a real chittyd: each test plays one attacker while well-behaved
//! participants keep chatting, and checks that the attacker is refused or cut off, that every
//! message of the others still arrives in order, and that what the server keeps stays bounded.

mod common;

use chitty::audit::AuditConfig;
use chitty::pb::chat_message::Kind;
use chitty::pb::{self, chat_client::ChatClient, chat_event};
use chitty::server::ServerConfig;
use chitty::server::limits::ConnLimits;
use common::{PATIENCE, Raw, TestServer, start};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::codec::CompressionEncoding;

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

/// What a raw-bytes client sends next.
enum Out {
    /// A gRPC message with exactly these bytes.
    Bytes(Vec<u8>),
    /// No message: the client's request body fails, so hyper resets the stream
    /// (RST_STREAM INTERNAL_ERROR).
    Reset,
}

/// gRPC messages written as given bytes, so a test can send what no generated client would;
/// what comes back is decoded as usual.
#[derive(Clone, Copy)]
struct RawBytesCodec;

struct RawBytesEncoder;

impl tonic::codec::Encoder for RawBytesEncoder {
    type Item = Out;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Out,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        match item {
            Out::Bytes(bytes) => {
                dst.put_slice(&bytes);
                Ok(())
            }
            Out::Reset => Err(tonic::Status::internal("the test resets the stream")),
        }
    }
}

impl tonic::codec::Codec for RawBytesCodec {
    type Encode = Out;
    type Decode = pb::ChatMessage;
    type Encoder = RawBytesEncoder;
    type Decoder = tonic_prost::ProstDecoder<pb::ChatMessage>;

    fn encoder(&mut self) -> RawBytesEncoder {
        RawBytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

/// Opens a Broadcast stream whose messages are the bytes sent on the returned sender; the
/// returned `Raw` reads the server's side (its own sender is unused).
async fn open_raw_bytes(server: &TestServer) -> (mpsc::Sender<Out>, Raw) {
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let (tx, rx) = mpsc::channel(16);
    let path = http::uri::PathAndQuery::from_static("/chitty_chat.Chat/Broadcast");
    let stream = grpc
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            path,
            RawBytesCodec,
        )
        .await
        .expect("open Broadcast")
        .into_inner();
    let raw = Raw {
        tx: None,
        rx: stream,
        id: 0,
        clock: 0,
    };
    (tx, raw)
}

/// A join event for `name`, encoded.
fn join_bytes(name: &str) -> Out {
    use prost::Message;
    let join = pb::ChatEvent {
        timestamp: 1,
        event: Some(chat_event::Event::Join(chat_event::UserJoin {
            username: name.into(),
        })),
    };
    Out::Bytes(join.encode_to_vec())
}

/// Opens a Broadcast stream through the generated client with `grpc-encoding` set by hand (the
/// client itself compresses nothing) or with the client's own gzip compression.
async fn open_encoded(
    server: &TestServer,
    header: Option<&'static str>,
    gzip: bool,
) -> Result<(Raw, tonic::metadata::MetadataMap), tonic::Status> {
    let mut client = ChatClient::connect(server.url()).await.expect("connect");
    if gzip {
        client = client.send_compressed(CompressionEncoding::Gzip);
    }
    let (tx, rx) = mpsc::channel(16);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(value) = header {
        request
            .metadata_mut()
            .insert("grpc-encoding", value.parse().unwrap());
    }
    let response = client.broadcast(request).await?;
    let headers = response.metadata().clone();
    let raw = Raw {
        tx: Some(tx),
        rx: response.into_inner(),
        id: 0,
        clock: 0,
    };
    Ok((raw, headers))
}

/// Joins as `name` over a TCP connection of its own, and returns a second handle on that
/// socket, so the test can end the connection under the client (FIN, no HTTP/2 goodbye).
async fn join_on_own_socket(server: &TestServer, name: &str) -> (Raw, std::net::TcpStream) {
    let stream = std::net::TcpStream::connect(server.addr).unwrap();
    let handle = stream.try_clone().unwrap();
    stream.set_nonblocking(true).unwrap();
    let stream = std::sync::Mutex::new(Some(stream));
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let stream = stream.lock().unwrap().take();
            async move {
                let stream = stream.ok_or_else(|| std::io::Error::other("one connection only"))?;
                tokio::net::TcpStream::from_std(stream).map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(16);
    let stream = ChatClient::new(channel)
        .broadcast(ReceiverStream::new(rx))
        .await
        .expect("open Broadcast")
        .into_inner();
    let mut raw = Raw {
        tx: Some(tx),
        rx: stream,
        id: 0,
        clock: 0,
    };
    raw.send_join(name).await;
    raw.until_joined(name).await;
    (raw, handle)
}

/// The audit file's records, once one satisfying `done` has been written.
async fn audit_until(
    path: &Path,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let records: Vec<serde_json::Value> = std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).expect("every audit line is one JSON object"))
                .collect();
            if records.iter().any(&done) {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the audit record never arrived")
}

/// A server with a 1 KiB frame limit and an audit file in `dir`.
async fn start_audited(dir: &Path) -> TestServer {
    start(ServerConfig {
        max_frame: 1024,
        audit: AuditConfig {
            file: Some(dir.join("audit.log")),
            queue: 1024,
            ..AuditConfig::default()
        },
        ..common::config()
    })
    .await
}

/// bob sees `name` leave (call it with everything alice said already heard: it skips the rest).
async fn left(chat: &mut Bystanders, name: &str) {
    chat.bob
        .until(|m| m.kind == Kind::Leave as i32 && m.subject == name)
        .await;
}

#[tokio::test]
async fn bad_grpc_frames_end_the_session_as_a_counted_audited_violation() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let server = start_audited(dir.path()).await;
    let mut chat = Bystanders::join(&server).await;
    let rejected = || server.hub.stats().rejected.load(Ordering::Relaxed);
    let before = rejected();

    // A frame over --max-frame: OUT_OF_RANGE, and the others see big leave.
    let mut big = server.join("big").await;
    big.say_as("big", &"y".repeat(4000)).await;
    let status = big.expect_status().await;
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("1024"), "{status:?}");
    left(&mut chat, "big").await;
    chat.say(5).await;
    chat.all_arrived().await;
    assert_eq!(rejected(), before + 1, "the oversized frame is counted");

    // Bytes that are no ChatEvent: INVALID_ARGUMENT saying what was wrong.
    let (junk_tx, mut junk) = open_raw_bytes(&server).await;
    junk_tx.send(join_bytes("junk")).await.unwrap();
    junk.until_joined("junk").await;
    junk_tx.send(Out::Bytes(vec![0xff; 12])).await.unwrap();
    let status = junk.expect_status().await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("malformed ChatEvent"),
        "{status:?}"
    );
    left(&mut chat, "junk").await;
    chat.say(5).await;
    chat.all_arrived().await;
    assert_eq!(rejected(), before + 2, "the undecodable frame is counted");

    // Garbage before any join: refused and counted too, with no leave to announce.
    let (anon_tx, mut anon) = open_raw_bytes(&server).await;
    anon_tx.send(Out::Bytes(vec![0xff; 12])).await.unwrap();
    assert_eq!(anon.expect_status().await.code(), Code::InvalidArgument);
    assert_eq!(rejected(), before + 3);

    // A stream the client drops (RST_STREAM CANCEL) or resets for its own failure
    // (INTERNAL_ERROR), and a connection that ends without a word, are plain disconnects.
    let carol = server.join("carol").await;
    chat.bob.until_joined("carol").await;
    drop(carol);
    left(&mut chat, "carol").await;
    let (eve_tx, mut eve) = open_raw_bytes(&server).await;
    eve_tx.send(join_bytes("eve")).await.unwrap();
    eve.until_joined("eve").await;
    chat.bob.until_joined("eve").await;
    eve_tx.send(Out::Reset).await.unwrap();
    left(&mut chat, "eve").await;
    let (dave, socket) = join_on_own_socket(&server, "dave").await;
    chat.bob.until_joined("dave").await;
    socket.shutdown(std::net::Shutdown::Both).unwrap();
    left(&mut chat, "dave").await;
    drop(dave);
    chat.say(5).await;
    chat.all_arrived().await;
    assert_eq!(
        rejected(),
        before + 3,
        "a dropped stream is not a violation"
    );
    assert_eq!(server.hub.participants(), 2);

    let records = audit_until(&audit, |r| r["event"] == "leave" && r["user"] == "dave").await;
    let find = |event: &str, user: &str| {
        records
            .iter()
            .find(|r| r["event"] == event && r["user"] == user)
            .unwrap_or_else(|| panic!("no {event} record for {user}: {records:?}"))
    };
    let reason = |r: &serde_json::Value| r["reason"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason(find("reject", "big")).starts_with("frame_too_large: "),
        "{records:?}"
    );
    assert_eq!(reason(find("leave", "big")), "violation: frame_too_large");
    let junk_reject = reason(find("reject", "junk"));
    assert!(
        junk_reject.starts_with("bad_frame: ") && junk_reject.contains("malformed ChatEvent"),
        "the decoder's detail is kept: {junk_reject}"
    );
    assert_eq!(reason(find("leave", "junk")), "violation: bad_frame");
    let anonymous: Vec<_> = records
        .iter()
        .filter(|r| r["event"] == "reject" && r.get("user").is_none())
        .collect();
    assert_eq!(anonymous.len(), 1, "{records:?}");
    assert!(reason(anonymous[0]).starts_with("bad_frame: "));
    assert_eq!(reason(find("leave", "carol")), "disconnect");
    assert_eq!(reason(find("leave", "dave")), "disconnect");
    assert_eq!(reason(find("leave", "eve")), "disconnect");
    server.shutdown().await;
}

#[tokio::test]
async fn identity_is_no_compression_and_unknown_encodings_are_unimplemented() {
    let server = start(common::config()).await;
    let mut chat = Bystanders::join(&server).await;

    let (mut dora, headers) = open_encoded(&server, Some("identity"), false)
        .await
        .expect("grpc-encoding: identity is accepted");
    assert_eq!(
        headers.get("grpc-accept-encoding").unwrap(),
        "gzip,identity"
    );
    dora.send_join("dora").await;
    dora.until_joined("dora").await;
    dora.say_as("dora", "plain as ever").await;
    chat.bob
        .until(|m| m.username == "dora" && m.message == "plain as ever")
        .await;

    let status = open_encoded(&server, Some("snappy"), false)
        .await
        .err()
        .expect("snappy is refused");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("snappy"), "{status:?}");
    assert_eq!(
        status.metadata().get("grpc-accept-encoding").unwrap(),
        "gzip,identity",
        "the refusal says what chittyd takes"
    );
    chat.say(5).await;
    chat.all_arrived().await;
    assert_eq!(server.hub.participants(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn gzip_requests_are_decoded_and_a_gzip_bomb_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let server = start_audited(dir.path()).await;
    let mut chat = Bystanders::join(&server).await;

    // Every message of this client is gzip-compressed.
    let (mut zed, _) = open_encoded(&server, None, true).await.unwrap();
    zed.send_join("zed").await;
    zed.until_joined("zed").await;
    zed.say_as("zed", "squeezed").await;
    chat.bob
        .until(|m| m.username == "zed" && m.message == "squeezed")
        .await;

    // 256 KiB of one letter compresses to about 300 bytes, well under the 1 KiB frame limit;
    // decompressed it is far over, and decompression stops at the limit: an oversized frame.
    let before = server.hub.stats().rejected.load(Ordering::Relaxed);
    zed.say_as("zed", &"a".repeat(256 << 10)).await;
    let status = zed.expect_status().await;
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    left(&mut chat, "zed").await;
    assert_eq!(
        server.hub.stats().rejected.load(Ordering::Relaxed),
        before + 1
    );
    chat.say(5).await;
    chat.all_arrived().await;
    let records = audit_until(&audit, |r| r["event"] == "leave" && r["user"] == "zed").await;
    let leave = records
        .iter()
        .find(|r| r["event"] == "leave" && r["user"] == "zed")
        .unwrap();
    assert_eq!(leave["reason"], "violation: frame_too_large");
    server.shutdown().await;
}
