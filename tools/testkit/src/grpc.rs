//! gRPC participants: [`Raw`], driven event by event through the generated tonic client, and
//! [`Bystanders`], two of them who keep chatting while a test plays an attacker.

use crate::{PATIENCE, TestServer};
use chitty::pb::{self, chat_client::ChatClient, chat_event, chat_message::Kind};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A participant driven event by event through the generated tonic client.
pub struct Raw {
    /// The request stream; `None` half-closes it (or, for a stream fed otherwise, means the
    /// test sends through its own sender).
    pub tx: Option<mpsc::Sender<pb::ChatEvent>>,
    /// The response stream.
    pub rx: tonic::Streaming<pb::ChatMessage>,
    /// The participant's id, from its join notice (0 until it joined through [`TestServer::join`]).
    pub id: u64,
    /// The participant's Lamport clock: ticks on each send, follows what it receives.
    pub clock: u64,
}

impl Raw {
    /// A participant reading `rx` and sending on `tx`, for streams a test opens its own way
    /// (another codec, a header set by hand, a socket of its own).
    pub fn new(
        tx: Option<mpsc::Sender<pb::ChatEvent>>,
        rx: tonic::Streaming<pb::ChatMessage>,
    ) -> Raw {
        Raw {
            tx,
            rx,
            id: 0,
            clock: 0,
        }
    }

    /// Opens a Broadcast stream on a connection of its own to `url`.
    pub async fn open(url: &str) -> Raw {
        let mut client = ChatClient::connect(url.to_owned()).await.expect("connect");
        let (tx, rx) = mpsc::channel(1024);
        let stream = client
            .broadcast(ReceiverStream::new(rx))
            .await
            .expect("open Broadcast")
            .into_inner();
        Raw::new(Some(tx), stream)
    }

    /// Sends an event stamped with the next tick of the participant's clock.
    pub async fn send(&mut self, event: Option<chat_event::Event>) {
        self.clock += 1;
        let ev = pb::ChatEvent {
            timestamp: self.clock,
            event,
        };
        self.send_raw(ev).await;
    }

    /// Sends `ev` as it is.
    pub async fn send_raw(&mut self, ev: pb::ChatEvent) {
        let tx = self.tx.as_ref().expect("stream already closed by the test");
        // The server may already have ended the stream; that is for the test to observe.
        let _ = tx.send(ev).await;
    }

    /// Sends a join as `name`.
    pub async fn send_join(&mut self, name: &str) {
        self.send(Some(chat_event::Event::Join(chat_event::UserJoin {
            username: name.into(),
        })))
        .await;
    }

    /// Sends a message under `name` (another's, to test impersonation; `""` means "me").
    pub async fn say_as(&mut self, name: &str, text: &str) {
        self.send(Some(chat_event::Event::Message(chat_event::ChatMessage {
            username: name.into(),
            message: text.into(),
            recipient_id: 0,
        })))
        .await;
    }

    /// Sends a leave under `name`.
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

    /// The next message, failing the test on an error or the end of the stream.
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

/// Two participants who chat throughout a test: alice speaks, bob listens. Whatever an attacker
/// does meanwhile, every message alice said must reach bob, in order.
pub struct Bystanders {
    /// The speaker.
    pub alice: Raw,
    /// The listener.
    pub bob: Raw,
    said: usize,
    heard: usize,
}

impl Bystanders {
    /// alice and bob join `server`.
    pub async fn join(server: &TestServer) -> Bystanders {
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
    pub async fn say(&mut self, n: usize) {
        for _ in 0..n {
            let text = format!("message {}", self.said);
            self.alice.say_as("alice", &text).await;
            self.said += 1;
        }
    }

    /// bob has received every message alice said so far, in order, and nothing else from her.
    pub async fn all_arrived(&mut self) {
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

    /// alice says `n` more messages and bob receives them all, in order.
    pub async fn still_chat(&mut self, n: usize) {
        self.say(n).await;
        self.all_arrived().await;
    }

    /// bob sees `name` leave (call it with everything alice said already heard: it skips the
    /// rest).
    pub async fn saw_leave(&mut self, name: &str) -> pb::ChatMessage {
        self.bob
            .until(|m| m.kind == Kind::Leave as i32 && m.subject == name)
            .await
    }
}
