//! Line mode: lines from standard input are sent, received messages are printed to standard
//! output and appended to the client log. Works in pipes and scripts: end of input leaves cleanly.

use super::{ClientError, ClientLog, LEAVE_WAIT, Participant, printable};
use crate::pb::{self, chat_message::Kind};
use std::io::Write;
use std::path::PathBuf;
use tokio::io::{AsyncBufReadExt, BufReader};

/// What line mode needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// chittyd's address, and whether over TLS.
    pub server: super::ServerAddr,
    /// The username to join with.
    pub username: String,
    /// The client log file (appended).
    pub log: Option<PathBuf>,
}

/// Runs a line-mode session until standard input ends, Ctrl-C, `/quit`, or the server ends it.
pub async fn run(opts: Options) -> Result<(), ClientError> {
    let mut log = opts.log.as_deref().map(ClientLog::open).transpose()?;
    let mut me = Participant::join(&opts.server, &opts.username).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            msg = me.next() => {
                let Some(msg) = msg? else { return Ok(()) };
                show(&mut stdout, &msg);
                if let Some(log) = &mut log {
                    log.record(&msg)?;
                }
            }
            line = lines.next_line() => {
                match line? {
                    Some(line) => {
                        if !command(&me, &line).await? {
                            break;
                        }
                    }
                    None => break,
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Leave, then print what arrives until the server ends the stream.
    me.leave().await?;
    let drain = async {
        while let Some(msg) = me.next().await? {
            show(&mut stdout, &msg);
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

/// Handles one input line; false means quit.
async fn command(me: &Participant, line: &str) -> Result<bool, ClientError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line == "/quit" {
        return Ok(false);
    }
    if let Some(rest) = line.strip_prefix("/msg ") {
        let (id, text) = rest.trim_start().split_once(' ').unwrap_or((rest, ""));
        match id.parse::<u64>() {
            Ok(id) if id > 0 => me.direct(id, text).await?,
            _ => eprintln!("usage: /msg ID text"),
        }
        return Ok(true);
    }
    if line.is_empty() {
        return Ok(true);
    }
    me.say(line).await?;
    Ok(true)
}

fn show(out: &mut impl Write, msg: &pb::ChatMessage) {
    let text = printable(&msg.message);
    let from = printable(&msg.username);
    let line = match msg.kind() {
        Kind::Message => format!("[L{}] {from}: {text}", msg.timestamp),
        Kind::Direct => format!(
            "[L{}] {from} (#{}) -> you: {text}",
            msg.timestamp, msg.sender_id
        ),
        Kind::Error => format!("[L{}] ! {text}", msg.timestamp),
        Kind::Join | Kind::Leave | Kind::Notice | Kind::Welcome => {
            format!("[L{}] * {text}", msg.timestamp)
        }
    };
    // A closed stdout (a pipe whose reader left) is not an error worth dying for.
    let _ = writeln!(out, "{line}");
}
