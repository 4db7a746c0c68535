//! Line mode: lines from standard input are sent, received messages are printed to standard
//! output and appended to the client log. Works in pipes and scripts: end of input leaves cleanly.
//!
//! When the connection is lost, the client says so on standard error and reconnects as
//! [`super::reconnect`] decides; lines read meanwhile are queued and sent after the rejoin.

use super::reconnect::{Next, Policy, Queue, Reconnector};
use super::{ClientError, ClientLog, LEAVE_WAIT, Participant, is_own_join, printable};
use crate::pb::{self, chat_message::Kind};
use std::io::Write;
use std::path::PathBuf;
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};

/// What line mode needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// chittyd's address, and whether over TLS.
    pub server: super::ServerAddr,
    /// The username to join with.
    pub username: String,
    /// The client log file (appended).
    pub log: Option<PathBuf>,
    /// When to reconnect after the connection is lost.
    pub reconnect: Policy,
}

/// Where a connected stretch of the session ended.
enum Phase {
    /// The person left: end of input, `/quit` or Ctrl-C.
    Leave,
    /// The server or the connection ended the session, for this reason.
    Lost(Result<(), ClientError>),
}

/// Runs a line-mode session until standard input ends, Ctrl-C, `/quit`, or the server ends it
/// for good.
pub async fn run(opts: Options) -> Result<(), ClientError> {
    let mut log = opts.log.as_deref().map(ClientLog::open).transpose()?;
    let mut link = Reconnector::new(&opts.server, &opts.username, opts.reconnect);
    let mut me = link.join().await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut queue = Queue::default();
    loop {
        let ended = match connected(&mut me, &mut link, &mut lines, &mut log, &mut queue).await? {
            Phase::Leave => break,
            Phase::Lost(ended) => ended,
        };
        me = match reconnect(&mut link, ended, &mut lines, &mut queue).await? {
            Some(again) => again,
            None => return Ok(()),
        };
    }
    // Leave, then print what arrives until the server ends the stream. When the leave cannot be
    // sent, the stream is ending already, and reading it tells why (a refused join, say).
    let _ = me.leave().await;
    let drain = async {
        while let Some(msg) = me.next().await? {
            show(&msg);
            if let Some(log) = &mut log {
                log.record(&msg)?;
            }
        }
        Ok::<(), ClientError>(())
    };
    match tokio::time::timeout(LEAVE_WAIT, drain).await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

/// Relays messages and input while connected, until the person leaves or the session ends.
async fn connected(
    me: &mut Participant,
    link: &mut Reconnector,
    lines: &mut Lines<BufReader<Stdin>>,
    log: &mut Option<ClientLog>,
    queue: &mut Queue<String>,
) -> Result<Phase, ClientError> {
    loop {
        tokio::select! {
            msg = me.next() => {
                let msg = match msg {
                    Ok(Some(msg)) => msg,
                    Ok(None) => return Ok(Phase::Lost(me.clean_end())),
                    Err(e) => return Ok(Phase::Lost(Err(e))),
                };
                show(&msg);
                if let Some(log) = log {
                    log.record(&msg)?;
                }
                if is_own_join(&msg, me.username()) {
                    if let Some(back) = link.joined(msg.sender_id) {
                        note(&back);
                    }
                    let waiting: Vec<String> = queue.drain().collect();
                    for line in waiting {
                        send(me, line, queue).await;
                    }
                }
            }
            line = lines.next_line() => match line? {
                Some(line) if line.trim_end_matches(['\r', '\n']) == "/quit" => {
                    return Ok(Phase::Leave);
                }
                Some(line) => send(me, line, queue).await,
                None => return Ok(Phase::Leave),
            },
            _ = tokio::signal::ctrl_c() => return Ok(Phase::Leave),
        }
    }
}

/// Sends one input line. A send that fails means the connection is going (the receiving side
/// will say why), so the line is queued for after the rejoin rather than lost.
async fn send(me: &Participant, line: String, queue: &mut Queue<String>) {
    if command(me, &line).await.is_err() {
        keep(queue, line);
    }
}

/// Waits and rejoins until back in the room (`Some`), the person leaves (`None`), or the
/// reconnect policy gives up (the error).
async fn reconnect(
    link: &mut Reconnector,
    mut ended: Result<(), ClientError>,
    lines: &mut Lines<BufReader<Stdin>>,
    queue: &mut Queue<String>,
) -> Result<Option<Participant>, ClientError> {
    loop {
        let retry = match link.lost(ended) {
            Next::Stop(result) => return result.map(|()| None),
            Next::Retry(retry) => retry,
        };
        note(&retry.to_string());
        let pause = tokio::time::sleep(retry.delay);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => break,
                line = lines.next_line() => match line? {
                    Some(line) if line.trim_end_matches(['\r', '\n']) == "/quit" => {
                        return Ok(left(queue));
                    }
                    Some(line) => keep(queue, line),
                    None => return Ok(left(queue)),
                },
                _ = tokio::signal::ctrl_c() => return Ok(left(queue)),
            }
        }
        tokio::select! {
            joined = link.join() => match joined {
                Ok(me) => return Ok(Some(me)),
                Err(e) => ended = Err(e),
            },
            _ = tokio::signal::ctrl_c() => return Ok(left(queue)),
        }
    }
}

/// Queues a line typed while disconnected, or says why it is dropped.
fn keep(queue: &mut Queue<String>, line: String) {
    if line.trim_end_matches(['\r', '\n']).is_empty() {
        return;
    }
    if queue.push(line).is_err() {
        note(&format!(
            "not sent: disconnected, and {} lines already wait to be sent",
            queue.limit()
        ));
    }
}

/// The person left while disconnected: says what is lost.
fn left(queue: &Queue<String>) -> Option<Participant> {
    if !queue.is_empty() {
        note(&format!(
            "left while disconnected; {} queued lines were not sent",
            queue.len()
        ));
    }
    None
}

/// A remark of the client's own, on standard error so standard output stays the chat.
fn note(text: &str) {
    eprintln!("chitty: {text}");
}

/// Handles one input line other than `/quit`.
async fn command(me: &Participant, line: &str) -> Result<(), ClientError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(rest) = line.strip_prefix("/msg ") {
        let (id, text) = rest.trim_start().split_once(' ').unwrap_or((rest, ""));
        match id.parse::<u64>() {
            Ok(id) if id > 0 => me.direct(id, text).await?,
            _ => eprintln!("usage: /msg ID text"),
        }
        return Ok(());
    }
    if line.is_empty() {
        return Ok(());
    }
    me.say(line).await
}

fn show(msg: &pb::ChatMessage) {
    let text = printable(&msg.message);
    let from = printable(&msg.username);
    let line = match msg.kind() {
        Kind::Message => format!("[L{}] {from}: {text}", msg.timestamp),
        Kind::Direct => format!(
            "[L{}] {from} (#{}) -> you: {text}",
            msg.timestamp, msg.sender_id
        ),
        Kind::Error => format!("[L{}] ! {text}", msg.timestamp),
        Kind::Join | Kind::Leave | Kind::Notice | Kind::Shutdown | Kind::Welcome | Kind::Roster => {
            format!("[L{}] * {text}", msg.timestamp)
        }
    };
    // A closed stdout (a pipe whose reader left) is not an error worth dying for.
    let _ = writeln!(std::io::stdout(), "{line}");
}
