//! The network side of the full-screen client: one task joins, then relays every message from
//! the server to the UI and writes the client log, so that the UI's loop only ever waits on a
//! channel and the keyboard.

use crate::client::{ClientError, ClientLog, Participant, SendHalf, ServerAddr};
use crate::pb;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the network task tells the UI, in order: `Joined`, then messages, then `Ended` once.
pub enum NetEvent {
    /// The join went through; this is how to send.
    Joined(SendHalf),
    /// A message from the server, already logged.
    Message(pb::ChatMessage),
    /// The client log could not be written; logging has stopped, the chat goes on.
    LogFailed(std::io::Error),
    /// The session is over: `Ok` when the server ended the stream cleanly.
    Ended(Result<(), ClientError>),
}

/// How many events may wait for the UI. When full the task waits, so the server's bounded
/// outbox for this participant fills in turn and the server cuts the session off as a slow
/// consumer rather than anyone buffering without bound. The UI drains this far faster than a
/// chat fills it; only a terminal that stops accepting output could stall it.
const QUEUE: usize = 256;

/// Starts the task that joins `server` as `username`. The task ends after sending `Ended`, or
/// as soon as the UI drops its receiver.
pub fn spawn(
    server: ServerAddr,
    username: String,
    log: Option<ClientLog>,
) -> (JoinHandle<()>, mpsc::Receiver<NetEvent>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(async move {
        let ended = relay(&server, &username, log, &tx).await;
        // The UI may be gone already; then nobody is left to tell.
        let _ = tx.send(NetEvent::Ended(ended)).await;
    });
    (task, rx)
}

async fn relay(
    server: &ServerAddr,
    username: &str,
    mut log: Option<ClientLog>,
    tx: &mpsc::Sender<NetEvent>,
) -> Result<(), ClientError> {
    let (send, mut recv) = Participant::join(server, username).await?.split();
    if tx.send(NetEvent::Joined(send)).await.is_err() {
        return Ok(());
    }
    while let Some(msg) = recv.next().await? {
        if let Some(file) = &mut log
            && let Err(e) = file.record(&msg)
        {
            log = None;
            if tx.send(NetEvent::LogFailed(e)).await.is_err() {
                return Ok(());
            }
        }
        if tx.send(NetEvent::Message(msg)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}
