//! `chitty` against a server without chitty's extensions: the original Chitty-Chat, whose
//! stand-in here is a real gRPC server (tonic, over a real socket) that keeps the original's
//! rules, so the test sees what a leaked direct message would look like.

use super::{chitty, stderr_lines};
use chitty::client::{Participant, ServerAddr};
use chitty::pb::{self, chat_event::Event};
use chitty_testkit::PATIENCE;
use chitty_testkit::process::wait_for_line as wait_for;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};
use tonic::{Request, Response, Status, Streaming};

/// Stands in for the original Chitty-Chat server, as its protocol defines it
/// (`proto/chitty_chat.proto` without the fields marked "chitty extension"): one
/// `chitty_chat.Chat/Broadcast` stream per participant; a join, a message or a leave takes the
/// time `max(clock, event's timestamp) + 1` and is broadcast to every participant, the sender
/// included, with only the original fields (timestamp, username, message); joins and leaves are
/// announced by `SERVER` as "Participant NAME joined/left Chitty-Chat at Lamport time L", and a
/// stream that ends is a leave. No welcome, no kinds, no ids: `recipient_id` is not a field the
/// original knows, so a message that carries one is broadcast like any other. Everything
/// received is kept, for the test to see what a client sent.
#[derive(Clone, Default)]
pub struct OriginalChat {
    room: Arc<Mutex<Room>>,
}

#[derive(Default)]
struct Room {
    clock: u64,
    next: u64,
    /// Each participant's outbound stream, by connection. Bounded (64); a participant that
    /// cannot take a broadcast is dropped from the room, as a closed stream would be.
    members: HashMap<u64, (String, mpsc::Sender<Result<pb::ChatMessage, Status>>)>,
    /// Every event received, in order.
    received: Vec<pb::ChatEvent>,
}

impl Room {
    fn broadcast(&mut self, timestamp: u64, username: &str, message: String) {
        let msg = pb::ChatMessage {
            timestamp,
            username: username.to_owned(),
            message,
            ..Default::default()
        };
        self.members
            .retain(|_, (_, tx)| tx.try_send(Ok(msg.clone())).is_ok());
    }

    fn tick(&mut self, seen: u64) -> u64 {
        self.clock = self.clock.max(seen) + 1;
        self.clock
    }

    /// Removes connection `id` and announces its leave, once.
    fn leave(&mut self, id: u64, timestamp: u64) {
        if let Some((name, _)) = self.members.remove(&id) {
            let at = self.tick(timestamp);
            let text = format!("Participant {name} left Chitty-Chat at Lamport time {at}");
            self.broadcast(at, "SERVER", text);
        }
    }

    fn event(
        &mut self,
        id: u64,
        tx: &mpsc::Sender<Result<pb::ChatMessage, Status>>,
        ev: pb::ChatEvent,
    ) {
        self.received.push(ev.clone());
        match ev.event {
            Some(Event::Join(join)) => {
                let at = self.tick(ev.timestamp);
                self.members.insert(id, (join.username.clone(), tx.clone()));
                let text = format!(
                    "Participant {} joined Chitty-Chat at Lamport time {at}",
                    join.username
                );
                self.broadcast(at, "SERVER", text);
            }
            Some(Event::Message(m)) => {
                let at = self.tick(ev.timestamp);
                self.broadcast(at, &m.username, m.message);
            }
            Some(Event::Leave(_)) => self.leave(id, ev.timestamp),
            Some(Event::Roster(_)) | None => {}
        }
    }
}

impl OriginalChat {
    /// Serves on 127.0.0.1:0 until `stop`; returns the address.
    pub async fn serve(&self, stop: CancellationToken) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = self.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled())
                .await
                .expect("the stand-in server runs");
        });
        addr
    }

    /// Every event received so far.
    pub fn received(&self) -> Vec<pb::ChatEvent> {
        self.room.lock().unwrap().received.clone()
    }

    fn open(
        &self,
        inbound: Streaming<pb::ChatEvent>,
    ) -> ReceiverStream<Result<pb::ChatMessage, Status>> {
        let (tx, rx) = mpsc::channel(64);
        let room = Arc::clone(&self.room);
        let id = {
            let mut r = room.lock().unwrap();
            r.next += 1;
            r.next
        };
        tokio::spawn(async move {
            let mut inbound = inbound;
            while let Ok(Some(ev)) = inbound.message().await {
                room.lock().unwrap().event(id, &tx, ev);
            }
            room.lock().unwrap().leave(id, 0);
        });
        ReceiverStream::new(rx)
    }
}

impl tonic::server::NamedService for OriginalChat {
    const NAME: &'static str = "chitty_chat.Chat";
}

impl<B> Service<http::Request<B>> for OriginalChat
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let chat = self.clone();
        Box::pin(async move {
            if req.uri().path() != "/chitty_chat.Chat/Broadcast" {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.streaming(Broadcast(chat), req).await)
        })
    }
}

/// The Broadcast method.
struct Broadcast(OriginalChat);

impl tonic::server::StreamingService<pb::ChatEvent> for Broadcast {
    type Response = pb::ChatMessage;
    type ResponseStream = ReceiverStream<Result<pb::ChatMessage, Status>>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<pb::ChatEvent>>) -> Self::Future {
        let stream = self.0.open(request.into_inner());
        Box::pin(async move { Ok(Response::new(stream)) })
    }
}

#[tokio::test]
async fn msg_is_refused_before_sending_to_a_server_without_direct_messages() {
    let original = OriginalChat::default();
    let stop = CancellationToken::new();
    let addr = original.serve(stop.clone()).await.to_string();
    let mut carol = Participant::join(&ServerAddr::plain(&addr), "carol")
        .await
        .expect("join the stand-in");

    let dir = tempfile::tempdir().unwrap();
    let mut alice = chitty(&addr, "alice", &dir.path().join("alice.log"));
    let mut out = BufReader::new(alice.stdout.take().unwrap()).lines();
    let mut err = stderr_lines(&mut alice);
    let mut input = alice.stdin.take().unwrap();
    wait_for(&mut out, "Participant alice joined").await;
    input
        .write_all(b"/msg 1 a secret for carol\n/users\nin the open\n")
        .await
        .unwrap();

    let refused = wait_for(&mut err, "/msg refused").await;
    assert_eq!(
        refused,
        "chitty: /msg refused: this server does not offer direct messages (it sent no \
         welcome, like the original Chitty-Chat, which ignores the recipient); it would show \
         the text to everyone"
    );
    let users = wait_for(&mut err, "who is online").await;
    assert!(
        users.starts_with("chitty: this server does not list who is online"),
        "{users}"
    );
    // carol sees the line after it, and never the secret; nor did the server get it.
    let seen = tokio::time::timeout(PATIENCE, async {
        let mut seen = Vec::new();
        while let Some(msg) = carol.next().await.unwrap() {
            seen.push(format!("{}: {}", msg.username, msg.message));
            if msg.message == "in the open" {
                return seen;
            }
        }
        panic!("carol's stream ended: {seen:?}");
    })
    .await
    .expect("carol never saw alice's line");
    assert!(!seen.iter().any(|l| l.contains("secret")), "{seen:?}");
    let sent: Vec<_> = original
        .received()
        .into_iter()
        .filter_map(|ev| match ev.event {
            Some(Event::Message(m)) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].message, "in the open");
    assert!(
        !original
            .received()
            .iter()
            .any(|ev| matches!(ev.event, Some(Event::Roster(_)))),
        "no roster request to a server that does not know it"
    );

    drop(input);
    let status = tokio::time::timeout(PATIENCE, alice.wait())
        .await
        .expect("alice left")
        .unwrap();
    assert!(status.success(), "{status}");
    drop(carol);
    stop.cancel();
}
