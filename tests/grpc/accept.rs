//! Hostile clients at the accept loop, before any gRPC: noise, silence, connection storms and
//! many addresses, each while alice and bob keep chatting. Each attacker is refused or cut off,
//! every message of the others still arrives in order, and what the server keeps stays bounded.

use chitty::server::ServerConfig;
use chitty::server::limits::ConnLimits;
use chitty_testkit::time::{HeldClock, TICK, until_count};
use chitty_testkit::{Bystanders, PATIENCE, config, start};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

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
    let server = start(config()).await;
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

#[tokio::test(start_paused = true)]
async fn connections_that_never_send_a_request_are_closed() {
    const DEADLINE: Duration = Duration::from_millis(500);
    // Paused time, held while the sockets work: the deadline passes when the test says so, not
    // while a request is still on its way.
    let _clock = HeldClock::hold();
    let server = start(ServerConfig {
        handshake_timeout: DEADLINE,
        ..config()
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
    // Once chittyd has accepted them all (alice's and bob's connections, and the four), their
    // deadlines run: then the deadline passes.
    until_count(&stats.accepted, 2 + 4).await;
    tokio::time::advance(DEADLINE + TICK).await;
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
        ..config()
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
        ..config()
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
        ..config()
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
