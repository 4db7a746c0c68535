//! Line mode: lines from standard input are sent, received messages are printed to standard
//! output and appended to the client log. Works in pipes and scripts: end of input leaves once
//! every line read before it is delivered, and the exit status says whether all of them were.
//!
//! - Lines are understood as the full-screen client understands them ([`super::command`]):
//!   `/msg`, `/users`, `/help`, `/quit`; an unknown `/command` is refused here, on standard
//!   error, and never sent.
//! - Input is read only once the server has said what it offers (its welcome, or the first
//!   message of a server without one), so `/msg` is checked against it before anything is sent.
//! - Lines go out at the pace the server's rate limit allows ([`super::pace`]). While they wait,
//!   at most [`super::reconnect::QUEUE_LIMIT`] are held and reading stops while that many wait:
//!   a pipe then waits for chitty, and nothing is dropped.
//! - What the server refuses (an ERROR) is reported on standard error and counted; so are lines
//!   never sent. Either makes the session end with [`ClientError::Undelivered`].
//!
//! When the connection is lost, the client says so on standard error and reconnects as
//! [`super::reconnect`] decides; lines read meanwhile are queued and sent after the rejoin.

use super::command::{self, Command, HELP};
use super::pace::Pacer;
use super::people::Directory;
use super::printable;
use super::reconnect::{Next, Policy, Queue, Reconnector};
use super::{ClientError, ClientLog, LEAVE_WAIT, Offers, Participant, endpoint, is_own_join};
use crate::pb::{self, chat_message::Kind};
use std::io::Write;
use std::path::PathBuf;
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};
use tokio::time::{Instant, sleep_until};

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
    /// The person left: end of input or `/quit`, with everything before it sent.
    Leave,
    /// Ctrl-C: leave at once, whatever still waits.
    Interrupted,
    /// The server or the connection ended the session, for this reason.
    Lost(Result<(), ClientError>),
}

/// Runs a line-mode session until standard input ends, Ctrl-C, `/quit`, or the server ends it
/// for good.
pub async fn run(opts: Options) -> Result<(), ClientError> {
    // A mistyped address is reported before anything else happens.
    endpoint(&opts.server)?;
    let mut log = opts.log.as_deref().map(ClientLog::open).transpose()?;
    if let Some(warning) = log.as_mut().and_then(ClientLog::take_warning) {
        note(&warning);
    }
    let link = Reconnector::new(&opts.server, &opts.username, opts.reconnect);
    let me = link.join().await?;
    let mut session = LineMode {
        link,
        log,
        input: BufReader::new(tokio::io::stdin()).lines(),
        closing: false,
        pending: Queue::default(),
        names: Directory::new(),
        refused: 0,
        unsent: 0,
    };
    session.run(me).await
}

/// A line-mode session, across its connections.
struct LineMode {
    link: Reconnector,
    log: Option<ClientLog>,
    input: Lines<BufReader<Stdin>>,
    /// The input ended or `/quit` was read: leave once everything read before is sent.
    closing: bool,
    /// Commands read and not yet sent, oldest first: waiting for the pace while connected, for
    /// the rejoin while disconnected. Bounded: while connected, input is not read while it is
    /// full (the writer of a pipe waits); while disconnected, lines beyond it are dropped and
    /// counted, with a notice.
    pending: Queue<Command>,
    names: Directory,
    /// ERRORs the server sent: refusals of what we sent.
    refused: u32,
    /// Lines that were never sent.
    unsent: usize,
}

impl LineMode {
    async fn run(&mut self, mut me: Participant) -> Result<(), ClientError> {
        loop {
            match self.connected(&mut me).await? {
                Phase::Leave => break,
                Phase::Interrupted => {
                    self.drop_pending("left");
                    break;
                }
                Phase::Lost(ended) => match self.reconnect(ended).await? {
                    Some(again) => me = again,
                    None => return self.outcome(),
                },
            }
        }
        self.leave(&mut me).await?;
        self.outcome()
    }

    /// Relays messages and input while connected, until the person leaves or the session ends.
    async fn connected(&mut self, me: &mut Participant) -> Result<Phase, ClientError> {
        // Unknown until the first message: the welcome comes first, when there is one.
        let mut offers: Option<Offers> = None;
        let mut pacer = Pacer::unlimited(Instant::now());
        // A send failed: the connection is going, and the receiving side will say why.
        let mut broken = false;
        loop {
            let ready = offers.is_some() && !broken;
            if ready && self.closing && self.pending.is_empty() {
                return Ok(Phase::Leave);
            }
            let send_at =
                (ready && !self.pending.is_empty()).then(|| pacer.ready_at(Instant::now()));
            let read = ready && !self.closing && self.pending.len() < self.pending.limit();
            tokio::select! {
                msg = me.next() => {
                    let msg = match msg {
                        Ok(Some(msg)) => msg,
                        Ok(None) => return Ok(Phase::Lost(me.clean_end())),
                        Err(e) => return Ok(Phase::Lost(Err(e))),
                    };
                    if offers.is_none() {
                        let offered = me.offers();
                        pacer = Pacer::new(&offered, Instant::now());
                        offers = Some(offered);
                    }
                    self.receive(&msg, me.id())?;
                    if is_own_join(&msg, me.username())
                        && let Some(back) = self.link.joined(msg.sender_id)
                    {
                        note(&back);
                    }
                }
                line = self.input.next_line(), if read => match line? {
                    Some(line) => self.typed(&line, offers.as_ref()),
                    None => self.closing = true,
                },
                () = sleep_until(send_at.unwrap_or_else(Instant::now)), if send_at.is_some() => {
                    if let Some(cmd) = self.pending.pop() {
                        pacer.take(Instant::now());
                        let offered = offers.clone().unwrap_or_default();
                        if self.send(me, &cmd, &offered).await.is_err() {
                            self.pending.put_back(cmd);
                            broken = true;
                        }
                    }
                }
                _ = tokio::signal::ctrl_c() => return Ok(Phase::Interrupted),
            }
        }
    }

    /// One line of input: a command for the server is queued, the rest is done here.
    fn typed(&mut self, line: &str, offers: Option<&Offers>) {
        let line = line.trim_end_matches(['\r', '\n']);
        match command::parse(line) {
            Ok(None) => {}
            Ok(Some(Command::Quit)) => self.closing = true,
            Ok(Some(Command::Help)) => HELP.iter().for_each(|line| note(line)),
            Ok(Some(cmd)) => {
                if let Some(offers) = offers
                    && let Err(e) = command::check(&cmd, offers)
                {
                    note(&e.to_string());
                    return;
                }
                if self.pending.push(cmd).is_err() {
                    self.unsent += 1;
                    note(&format!(
                        "not sent: disconnected, and {} lines already wait to be sent",
                        self.pending.limit()
                    ));
                }
            }
            Err(e) => note(&e.to_string()),
        }
    }

    /// Sends one command, checked against what this server offers (a server met after a
    /// reconnect may offer less than the one the line was typed for).
    async fn send(
        &mut self,
        me: &Participant,
        cmd: &Command,
        offers: &Offers,
    ) -> Result<(), ClientError> {
        if let Err(e) = command::check(cmd, offers) {
            note(&e.to_string());
            return Ok(());
        }
        match cmd {
            Command::Say(text) => me.say(text).await,
            Command::Direct { to, text } => me.direct(*to, text).await,
            Command::Users if offers.roster => me.roster().await,
            Command::Users => {
                let seen = self.names.seen();
                let seen = if seen.is_empty() {
                    "nobody".to_owned()
                } else {
                    seen.join(", ")
                };
                note(&format!(
                    "this server does not list who is online (no \"roster\" in its welcome); \
                     seen since you joined: {seen}"
                ));
                Ok(())
            }
            Command::Help | Command::Quit => Ok(()),
        }
    }

    /// A message from the server: printed (refusals on standard error), logged, and learned
    /// from.
    fn receive(&mut self, msg: &pb::ChatMessage, me: Option<u64>) -> Result<(), ClientError> {
        match line_for(msg, &self.names, me) {
            Shown::Out(line) => {
                // A closed stdout (a pipe whose reader left) is not an error worth dying for.
                let _ = writeln!(std::io::stdout(), "{line}");
            }
            Shown::Refused(why) => {
                self.refused += 1;
                note(&why);
            }
        }
        self.names.observe(msg);
        if let Some(log) = &mut self.log {
            log.record(msg)?;
        }
        Ok(())
    }

    /// Waits and rejoins until back in the room (`Some`), the person leaves (`None`), or the
    /// reconnect policy gives up (the error).
    async fn reconnect(
        &mut self,
        mut ended: Result<(), ClientError>,
    ) -> Result<Option<Participant>, ClientError> {
        // What we knew of the room is stale: a restarted server gives new ids.
        self.names.clear();
        loop {
            let retry = match self.link.lost(ended) {
                Next::Stop(result) => return result.map(|()| None),
                Next::Retry(retry) => retry,
            };
            note(&retry.to_string());
            if self.closing {
                // The input had ended: this is a leave while disconnected.
                return Ok(self.left());
            }
            let pause = tokio::time::sleep(retry.delay);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    () = &mut pause => break,
                    line = self.input.next_line() => match line? {
                        Some(line) => {
                            self.typed(&line, None);
                            if self.closing {
                                return Ok(self.left());
                            }
                        }
                        None => return Ok(self.left()),
                    },
                    _ = tokio::signal::ctrl_c() => return Ok(self.left()),
                }
            }
            tokio::select! {
                joined = self.link.join() => match joined {
                    Ok(me) => return Ok(Some(me)),
                    Err(e) => ended = Err(e),
                },
                _ = tokio::signal::ctrl_c() => return Ok(self.left()),
            }
        }
    }

    /// The person left while disconnected.
    fn left(&mut self) -> Option<Participant> {
        self.drop_pending("left while disconnected");
        None
    }

    /// Says what is dropped, and counts it.
    fn drop_pending(&mut self, how: &str) {
        if !self.pending.is_empty() {
            note(&format!(
                "{how}; {} queued lines were not sent",
                self.pending.len()
            ));
            self.unsent += self.pending.len();
            self.pending.drain().for_each(drop);
        }
    }

    /// Leaves, then prints what arrives until the server ends the stream. When the leave
    /// cannot be sent, the stream is ending already, and reading it tells why (a refused join,
    /// say).
    async fn leave(&mut self, me: &mut Participant) -> Result<(), ClientError> {
        let _ = me.leave().await;
        let drain = async {
            while let Some(msg) = me.next().await? {
                self.receive(&msg, me.id())?;
            }
            Ok::<(), ClientError>(())
        };
        match tokio::time::timeout(LEAVE_WAIT, drain).await {
            Ok(result) => result,
            Err(_) => Ok(()),
        }
    }

    /// How a session that ended by itself went: well, or with something undelivered.
    fn outcome(&mut self) -> Result<(), ClientError> {
        let unsent = self.unsent + self.pending.len();
        if self.refused > 0 || unsent > 0 {
            return Err(ClientError::Undelivered {
                refused: self.refused,
                unsent,
            });
        }
        Ok(())
    }
}

/// A remark of the client's own, on standard error so standard output stays the chat.
fn note(text: &str) {
    eprintln!("chitty: {text}");
}

/// Where a message goes.
#[derive(Debug, PartialEq, Eq)]
enum Shown {
    /// A line of the chat, on standard output.
    Out(String),
    /// A refusal of something we sent, on standard error.
    Refused(String),
}

/// How line mode shows `msg`, with the names known so far; `me` is our id.
fn line_for(msg: &pb::ChatMessage, names: &Directory, me: Option<u64>) -> Shown {
    let text = printable(&msg.message);
    let at = msg.timestamp;
    Shown::Out(match msg.kind() {
        Kind::Message => format!("[L{at}] {}: {text}", Directory::sender(msg)),
        Kind::Direct if me.is_some_and(|me| me == msg.sender_id) => {
            format!("[L{at}] -> {}: {text}", names.who(msg.recipient_id))
        }
        Kind::Direct => format!("[L{at}] {} -> you: {text}", Directory::sender_tag(msg)),
        Kind::Join if msg.sender_id != 0 => format!("[L{at}] * {text} (#{})", msg.sender_id),
        Kind::Roster => format!("[L{at}] * {text}: {}", Directory::roster(msg)),
        Kind::Error if msg.recipient_id != 0 => return Shown::Refused(names.refusal(msg)),
        Kind::Error => return Shown::Refused(format!("refused: {text}")),
        Kind::Join | Kind::Leave | Kind::Notice | Kind::Shutdown | Kind::Welcome => {
            format!("[L{at}] * {text}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: Kind, at: u64, from: &str, id: u64, text: &str) -> pb::ChatMessage {
        pb::ChatMessage {
            kind: kind as i32,
            timestamp: at,
            username: from.into(),
            sender_id: id,
            message: text.into(),
            ..Default::default()
        }
    }

    fn out(line: &str) -> Shown {
        Shown::Out(line.into())
    }

    #[test]
    fn every_kind_has_its_line() {
        let mut names = Directory::new();
        let join = pb::ChatMessage {
            subject: "bob".into(),
            ..msg(
                Kind::Join,
                3,
                "SERVER",
                3,
                "Participant bob joined Chitty-Chat at Lamport time 3",
            )
        };
        assert_eq!(
            line_for(&join, &names, Some(1)),
            out("[L3] * Participant bob joined Chitty-Chat at Lamport time 3 (#3)")
        );
        names.observe(&join);
        assert_eq!(
            line_for(&msg(Kind::Message, 6, "alice", 1, "hello"), &names, Some(1)),
            out("[L6] alice: hello")
        );
        assert_eq!(
            line_for(&msg(Kind::Direct, 7, "bob", 3, "psst"), &names, Some(1)),
            out("[L7] bob #3 -> you: psst")
        );
        assert_eq!(
            line_for(&msg(Kind::Direct, 8, "", 5, "anon"), &names, Some(1)),
            out("[L8] #5 -> you: anon")
        );
        let echo = pb::ChatMessage {
            recipient_id: 3,
            ..msg(Kind::Direct, 12, "alice", 1, "back at you")
        };
        assert_eq!(
            line_for(&echo, &names, Some(1)),
            out("[L12] -> bob #3: back at you")
        );
        assert_eq!(
            line_for(
                &msg(Kind::Error, 9, "SERVER", 0, "message is too long"),
                &names,
                Some(1)
            ),
            Shown::Refused("refused: message is too long".into())
        );
        let gone = pb::ChatMessage {
            recipient_id: 7,
            ..msg(Kind::Error, 10, "SERVER", 0, "user 7 is not connected")
        };
        assert_eq!(
            line_for(&gone, &names, Some(1)),
            Shown::Refused("not delivered to #7: user 7 is not connected".into())
        );
        let roster = pb::ChatMessage {
            roster: vec![pb::Participant {
                id: 1,
                username: "alice".into(),
                transport: "grpc".into(),
            }],
            ..msg(Kind::Roster, 11, "SERVER", 0, "1 online")
        };
        assert_eq!(
            line_for(&roster, &names, Some(1)),
            out("[L11] * 1 online: alice #1 (grpc)")
        );
        assert_eq!(
            line_for(
                &msg(Kind::Shutdown, 13, "SERVER", 0, "bye\u{1b}[2J"),
                &names,
                None
            ),
            out("[L13] * bye\u{fffd}[2J")
        );
    }
}
