//! The network side of the full-screen client: one task joins, then relays every message from
//! the server to the UI and writes the client log, so that the UI's loop only ever waits on a
//! channel and the keyboard. When the connection is lost, the task waits and rejoins as
//! [`crate::client::reconnect`] decides, and tells the UI at every step.

use crate::client::reconnect::{Next, Policy, Reconnector, Retry};
use crate::client::{
    ClientError, ClientLog, Offers, Participant, SendHalf, ServerAddr, is_own_join,
};
use crate::pb;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the network task tells the UI, in order: `Joined`, then the first message and `Ready`,
/// then messages; after a lost connection `Lost`, then the same again, with `Back` once the
/// rejoin went through; finally `Ended`, once.
pub enum NetEvent {
    /// A stream is open and the join is sent; this is how to send on it.
    Joined(SendHalf),
    /// A message from the server, already logged.
    Message(pb::ChatMessage),
    /// The connection's first message has arrived, and with it (or without, from a server
    /// that sends none) the welcome: what this server offers.
    Ready(Offers),
    /// The client log could not be written; logging has stopped, the chat goes on.
    LogFailed(std::io::Error),
    /// The connection is gone; the task tries again after the wait given.
    Lost(Retry),
    /// Back in the room after a lost connection; what to tell the person.
    Back(String),
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
    policy: Policy,
) -> (JoinHandle<()>, mpsc::Receiver<NetEvent>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(async move {
        let mut link = Reconnector::new(&server, &username, policy);
        let ended = relay(&mut link, log, &tx).await;
        // The UI may be gone already; then nobody is left to tell.
        let _ = tx.send(NetEvent::Ended(ended)).await;
    });
    (task, rx)
}

/// Joins, relays, and rejoins after every lost connection the policy allows.
async fn relay(
    link: &mut Reconnector,
    mut log: Option<ClientLog>,
    tx: &mpsc::Sender<NetEvent>,
) -> Result<(), ClientError> {
    let mut joined = link.join().await;
    loop {
        let ended = match joined {
            Ok(me) => match session(me, link, &mut log, tx).await {
                Some(ended) => ended,
                None => return Ok(()),
            },
            Err(e) => Err(e),
        };
        let retry = match link.lost(ended) {
            Next::Stop(result) => return result,
            Next::Retry(retry) => retry,
        };
        let delay = retry.delay;
        if tx.send(NetEvent::Lost(retry)).await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(delay).await;
        joined = link.join().await;
    }
}

/// Relays one connection's messages; returns how it ended, or `None` when the UI is gone.
async fn session(
    me: Participant,
    link: &mut Reconnector,
    log: &mut Option<ClientLog>,
    tx: &mpsc::Sender<NetEvent>,
) -> Option<Result<(), ClientError>> {
    let (send, mut recv) = me.split();
    let username = send.username().to_owned();
    tx.send(NetEvent::Joined(send)).await.ok()?;
    let mut first = true;
    loop {
        let msg = match recv.next().await {
            Ok(Some(msg)) => msg,
            Ok(None) => return Some(recv.clean_end()),
            Err(e) => return Some(Err(e)),
        };
        if let Some(file) = log
            && let Err(e) = file.record(&msg)
        {
            *log = None;
            tx.send(NetEvent::LogFailed(e)).await.ok()?;
        }
        let back = is_own_join(&msg, &username)
            .then(|| link.joined(msg.sender_id))
            .flatten();
        tx.send(NetEvent::Message(msg)).await.ok()?;
        if std::mem::take(&mut first) {
            tx.send(NetEvent::Ready(recv.offers())).await.ok()?;
        }
        if let Some(back) = back {
            tx.send(NetEvent::Back(back)).await.ok()?;
        }
    }
}
