//! The one helper every integration test uses: chittyd in-process on an ephemeral port, and
//! plain gRPC clients built from the generated code.
#![allow(dead_code)]

pub mod daemon;

use chitty::hub::Hub;
use chitty::pb::{self, chat_client::ChatClient, chat_event, chat_message::Kind};
use chitty::server::stats::EdgeStats;
use chitty::server::{Server, ServerConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// A WebSocket client connection (tokio-tungstenite).
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    pub admin: Option<std::path::PathBuf>,
    pub metrics: Option<SocketAddr>,
    pub hub: Arc<Hub>,
    pub edge: Arc<EdgeStats>,
    pub stop: CancellationToken,
    pub task: JoinHandle<()>,
}

/// Starts chittyd on 127.0.0.1:0 with `config` (its `listen` is overridden).
pub async fn start(mut config: ServerConfig) -> TestServer {
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server = Server::bind(config).await.expect("bind chittyd");
    let addr = server.local_addr();
    let admin = server.admin_socket().map(|p| p.to_owned());
    let metrics = server.metrics_addr();
    let hub = Arc::clone(server.hub());
    let edge = Arc::clone(server.edge_stats());
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.run(stop.clone()));
    TestServer {
        addr,
        admin,
        metrics,
        hub,
        edge,
        stop,
        task,
    }
}

/// The server's defaults, minus the per-session rate limit: most tests send bursts that are
/// not what they test. Tests of the limits set them explicitly.
pub fn config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.hub.rate = None;
    config
}

pub async fn start_default() -> TestServer {
    start(config()).await
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits until it has shut down completely.
    pub async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("chittyd did not shut down in time")
            .expect("chittyd task panicked");
    }

    /// Opens a Broadcast stream without joining.
    pub async fn open(&self) -> Raw {
        Raw::open(&self.url()).await
    }

    /// Opens a stream, joins as `name`, and reads up to its own join notice.
    pub async fn join(&self, name: &str) -> Raw {
        let mut raw = self.open().await;
        raw.send_join(name).await;
        raw.id = raw.until_joined(name).await.sender_id;
        raw
    }
}

/// A participant driven event by event through the generated tonic client.
pub struct Raw {
    pub tx: Option<mpsc::Sender<pb::ChatEvent>>,
    pub rx: tonic::Streaming<pb::ChatMessage>,
    pub id: u64,
    pub clock: u64,
}

impl Raw {
    pub async fn open(url: &str) -> Raw {
        let mut client = ChatClient::connect(url.to_owned()).await.expect("connect");
        let (tx, rx) = mpsc::channel(1024);
        let stream = client
            .broadcast(ReceiverStream::new(rx))
            .await
            .expect("open Broadcast")
            .into_inner();
        Raw {
            tx: Some(tx),
            rx: stream,
            id: 0,
            clock: 0,
        }
    }

    pub async fn send(&mut self, event: Option<chat_event::Event>) {
        self.clock += 1;
        let ev = pb::ChatEvent {
            timestamp: self.clock,
            event,
        };
        self.send_raw(ev).await;
    }

    pub async fn send_raw(&mut self, ev: pb::ChatEvent) {
        let tx = self.tx.as_ref().expect("stream already closed by the test");
        // The server may already have ended the stream; that is for the test to observe.
        let _ = tx.send(ev).await;
    }

    pub async fn send_join(&mut self, name: &str) {
        self.send(Some(chat_event::Event::Join(chat_event::UserJoin {
            username: name.into(),
        })))
        .await;
    }

    pub async fn say_as(&mut self, name: &str, text: &str) {
        self.send(Some(chat_event::Event::Message(chat_event::ChatMessage {
            username: name.into(),
            message: text.into(),
            recipient_id: 0,
        })))
        .await;
    }

    pub async fn leave_as(&mut self, name: &str) {
        self.send(Some(chat_event::Event::Leave(chat_event::UserLeave {
            username: name.into(),
        })))
        .await;
    }

    /// The next message, failing the test on timeout.
    pub async fn next(&mut self) -> Result<Option<pb::ChatMessage>, tonic::Status> {
        let msg = tokio::time::timeout(PATIENCE, self.rx.message())
            .await
            .expect("timed out waiting for a message")?;
        if let Some(m) = &msg {
            self.clock = self.clock.max(m.timestamp) + 1;
        }
        Ok(msg)
    }

    pub async fn expect_msg(&mut self) -> pb::ChatMessage {
        match self.next().await {
            Ok(Some(m)) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Reads until the stream ends with an error status, which it returns.
    pub async fn expect_status(&mut self) -> tonic::Status {
        loop {
            match self.next().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("stream ended cleanly, expected an error status"),
                Err(status) => return status,
            }
        }
    }

    /// Reads until the stream ends cleanly; returns what arrived on the way.
    pub async fn expect_clean_end(&mut self) -> Vec<pb::ChatMessage> {
        let mut seen = Vec::new();
        loop {
            match self.next().await {
                Ok(Some(m)) => seen.push(m),
                Ok(None) => return seen,
                Err(status) => panic!("expected a clean end, got {status:?} after {seen:?}"),
            }
        }
    }

    /// Reads up to the join notice for `name` (whose `sender_id` is that participant's id).
    pub async fn until_joined(&mut self, name: &str) -> pb::ChatMessage {
        self.until(|m| m.kind == Kind::Join as i32 && m.subject == name)
            .await
    }

    /// Reads until a message satisfying `pred` arrives.
    pub async fn until(&mut self, pred: impl Fn(&pb::ChatMessage) -> bool) -> pb::ChatMessage {
        loop {
            let m = self.expect_msg().await;
            if pred(&m) {
                return m;
            }
        }
    }
}
