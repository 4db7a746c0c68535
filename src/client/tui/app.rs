//! The state of the full-screen client, and what keys and messages do to it.
//!
//! Nothing here touches a terminal or the network: keys come in as crossterm's plain data,
//! messages as protobuf values, and what needs the network comes out as an [`Outcome`] for the
//! event loop to carry out. That keeps every rule of the UI testable on its own.

use super::command::{self, Command, HELP};
use super::input::Input;
use super::pane::{Entry, Pane, Tone};
use crate::client::reconnect::{Queue, Retry};
use crate::client::{ClientError, is_own_join, printable};
use crate::pb::{self, chat_message::Kind};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::collections::BTreeMap;

/// Where the connection stands, as the status line tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Connecting and joining.
    Connecting,
    /// Joined: what is typed is sent.
    Connected,
    /// The connection was lost; waiting before this attempt to rejoin. Messages typed now are
    /// queued.
    Reconnecting {
        /// Which attempt comes next, from 1.
        attempt: u32,
    },
    /// The leave is sent; waiting for the server to end the stream.
    Leaving,
    /// The session is over, for the reason given.
    Closed(String),
}

/// What the event loop has to do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing beyond drawing again.
    Nothing,
    /// Carry out a command that needs the server.
    Run(Command),
    /// Leave the chat and the program.
    Quit,
}

/// Everything the screen shows.
#[derive(Debug)]
pub struct App {
    server: String,
    username: String,
    link: Link,
    /// Our id, from our own join notice.
    id: Option<u64>,
    /// Our Lamport clock's time, as last read.
    lamport: u64,
    /// Participants in the room, from the latest join or leave notice.
    online: Option<u32>,
    /// The participants seen since we joined, by id, for names in direct messages and /users.
    roster: BTreeMap<u64, String>,
    /// Messages typed while reconnecting, sent once back in the room.
    queued: Queue<Command>,
    /// The messages.
    pub pane: Pane,
    /// The line being typed.
    pub input: Input,
}

impl App {
    /// The state at start: connecting to `server` as `username`.
    pub fn new(server: &str, username: &str) -> App {
        let mut app = App {
            server: printable(server),
            username: username.to_owned(),
            link: Link::Connecting,
            id: None,
            lamport: 0,
            online: None,
            roster: BTreeMap::new(),
            queued: Queue::default(),
            pane: Pane::new(),
            input: Input::new(),
        };
        app.info(format!(
            "Connecting to {} as {}. Type /help for the commands.",
            app.server,
            printable(username)
        ));
        app
    }

    /// Where the connection stands.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Our id, once known.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// Records the time of our Lamport clock for the status line.
    pub fn set_lamport(&mut self, time: u64) {
        self.lamport = time;
    }

    /// The join went through: from now on, what is typed is sent.
    pub fn joined(&mut self) {
        self.link = Link::Connected;
    }

    /// The connection is lost and `retry` says when the next attempt comes. What we knew of
    /// the room is stale from now on: a restarted server gives new ids.
    pub fn reconnecting(&mut self, retry: &Retry) {
        self.error(retry.to_string());
        self.pane.to_bottom();
        self.link = Link::Reconnecting {
            attempt: retry.attempt,
        };
        self.id = None;
        self.online = None;
        self.roster.clear();
    }

    /// Back in the room after a lost connection; `text` tells the person.
    pub fn back(&mut self, text: String) {
        self.info(text);
        if !self.queued.is_empty() {
            self.info(format!("Sending {} queued messages.", self.queued.len()));
        }
        self.pane.to_bottom();
    }

    /// The messages typed while reconnecting, once we are back in the room (connected, with
    /// our new id); nothing before that.
    pub fn take_queued(&mut self) -> Vec<Command> {
        if self.link == Link::Connected && self.id.is_some() {
            self.queued.drain().collect()
        } else {
            Vec::new()
        }
    }

    /// The leave is on its way.
    pub fn leaving(&mut self) {
        if self.link == Link::Connected {
            self.link = Link::Leaving;
        }
    }

    /// The session ended: cleanly when the server closed the stream, or with `error`.
    pub fn ended(&mut self, error: Option<&ClientError>) {
        let reason = match error {
            Some(e) => e.to_string(),
            None => "the server ended the session".to_owned(),
        };
        let stop = if reason.ends_with(['.', '?', '!']) {
            ""
        } else {
            "."
        };
        self.pane.push(
            Entry::default()
                .with(Tone::Error, format!("Disconnected: {reason}{stop}"))
                .with(Tone::Info, " Esc leaves."),
        );
        self.pane.to_bottom();
        self.link = Link::Closed(reason);
    }

    /// A remark of the client's own in the pane.
    pub fn info(&mut self, text: impl Into<String>) {
        self.pane.push(Entry::default().with(Tone::Info, text));
    }

    /// A problem the person should see, in the pane.
    pub fn error(&mut self, text: impl Into<String>) {
        self.pane.push(Entry::default().with(Tone::Error, text));
    }

    /// How a participant is named: `bob #2`, or `#2` when its name is not known here.
    fn who(&self, id: u64) -> String {
        match self.roster.get(&id) {
            Some(name) => format!("{name} #{id}"),
            None => format!("#{id}"),
        }
    }

    /// A message from the server: it updates what we know and becomes a line in the pane.
    pub fn on_message(&mut self, msg: &pb::ChatMessage) {
        let kind = msg.kind();
        if self.id.is_none() && is_own_join(msg, &self.username) {
            self.id = Some(msg.sender_id);
        }
        match kind {
            Kind::Join | Kind::Leave => self.online = Some(msg.participants),
            _ => {}
        }
        match kind {
            Kind::Join if msg.sender_id != 0 => {
                self.roster.insert(msg.sender_id, printable(&msg.subject));
            }
            Kind::Message | Kind::Direct if msg.sender_id != 0 => {
                self.roster.insert(msg.sender_id, printable(&msg.username));
            }
            _ => {}
        }
        let entry = self.entry_for(msg);
        if kind == Kind::Leave {
            self.roster.remove(&msg.sender_id);
        }
        self.pane.push(entry);
    }

    /// The pane's line for a message. Everything from the network goes through
    /// [`printable`], so no control character reaches the terminal.
    pub fn entry_for(&self, msg: &pb::ChatMessage) -> Entry {
        let time = Entry::default().with(Tone::Time, format!("[L{}] ", msg.timestamp));
        let text = printable(&msg.message);
        let from = printable(&msg.username);
        match msg.kind() {
            Kind::Message => {
                let tone = if msg.username == self.username {
                    Tone::Own
                } else {
                    Tone::Name
                };
                time.with(tone, from).with(Tone::Text, format!(": {text}"))
            }
            Kind::Direct => time.with(
                Tone::Direct,
                format!("[direct] {from} #{} -> you: {text}", msg.sender_id),
            ),
            Kind::Join if msg.sender_id != 0 => {
                time.with(Tone::Server, format!("* {text} (#{})", msg.sender_id))
            }
            Kind::Join
            | Kind::Leave
            | Kind::Notice
            | Kind::Shutdown
            | Kind::Welcome
            | Kind::Roster => time.with(Tone::Server, format!("* {text}")),
            Kind::Error => time.with(Tone::Error, format!("! {text}")),
        }
    }

    /// Our own copy of a direct message we sent (the server does not echo them), stamped with
    /// the Lamport time it was sent at.
    pub fn sent_direct(&mut self, to: u64, text: &str, lamport: u64) {
        let entry = Entry::default()
            .with(Tone::Time, format!("[L{lamport}] "))
            .with(
                Tone::Direct,
                format!("[direct] you -> {}: {}", self.who(to), printable(text)),
            );
        self.pane.push(entry);
    }

    /// The answer to `/users`: the chat protocol has no list of participants, so it is the
    /// participants seen since joining, and the room's size from the last notice.
    fn users(&mut self) {
        let seen: Vec<_> = self.roster.keys().map(|&id| self.who(id)).collect();
        let seen = if seen.is_empty() {
            "nobody".to_owned()
        } else {
            seen.join(", ")
        };
        let online = self
            .online
            .map(|n| format!(" ({n} online in all)"))
            .unwrap_or_default();
        self.info(format!("Seen since you joined: {seen}{online}."));
    }

    /// The status line's two parts: facts on the left, a hint on the right.
    pub fn status(&self) -> (String, String) {
        let link = match &self.link {
            Link::Connecting => "connecting".to_owned(),
            Link::Connected => "connected".to_owned(),
            Link::Reconnecting { attempt } => format!("reconnecting (attempt {attempt})"),
            Link::Leaving => "leaving".to_owned(),
            Link::Closed(why) => format!("disconnected: {why}"),
        };
        let me = match self.id {
            Some(id) => format!("{} #{id}", printable(&self.username)),
            None => printable(&self.username),
        };
        let mut left = format!(" {} | {link} | {me} | L{}", self.server, self.lamport);
        if let Some(n) = self.online {
            left.push_str(&format!(" | {n} online"));
        }
        let right = if self.pane.scroll() > 0 {
            "scrolled back: PgDn for newer "
        } else {
            "/help | Esc quits "
        };
        (left, right.to_owned())
    }

    /// A key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Outcome {
        if key.kind == KeyEventKind::Release {
            return Outcome::Nothing;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let input = &mut self.input;
        match key.code {
            KeyCode::Esc => return Outcome::Quit,
            KeyCode::Char('c') if ctrl => return Outcome::Quit,
            KeyCode::Char('d') if ctrl && input.text().is_empty() => return Outcome::Quit,
            KeyCode::Char('d') if ctrl => input.delete(),
            KeyCode::Char('a') if ctrl => input.home(),
            KeyCode::Char('e') if ctrl => input.end(),
            KeyCode::Char('u') if ctrl => input.cut_before(),
            KeyCode::Char('k') if ctrl => input.cut_after(),
            KeyCode::Char('w') if ctrl => input.cut_word(),
            KeyCode::Char(_) if ctrl => {}
            KeyCode::Char(c) => input.insert(c),
            KeyCode::Backspace => input.backspace(),
            KeyCode::Delete => input.delete(),
            KeyCode::Left => input.left(),
            KeyCode::Right => input.right(),
            KeyCode::Home => input.home(),
            KeyCode::End => input.end(),
            KeyCode::Up => input.recall_older(),
            KeyCode::Down => input.recall_newer(),
            KeyCode::PageUp => self.pane.page_up(),
            KeyCode::PageDown => self.pane.page_down(),
            KeyCode::Enter => return self.enter(),
            _ => {}
        }
        Outcome::Nothing
    }

    /// Enter: the typed line becomes a command.
    fn enter(&mut self) -> Outcome {
        let line = self.input.submit();
        match command::parse(&line) {
            Ok(None) => Outcome::Nothing,
            Ok(Some(Command::Quit)) => Outcome::Quit,
            Ok(Some(Command::Help)) => {
                HELP.iter().for_each(|line| self.info(*line));
                self.pane.to_bottom();
                Outcome::Nothing
            }
            Ok(Some(Command::Users)) => {
                self.users();
                self.pane.to_bottom();
                Outcome::Nothing
            }
            Ok(Some(cmd)) => {
                self.pane.to_bottom();
                let message = matches!(cmd, Command::Say(_) | Command::Direct { .. });
                match self.link {
                    // Queued messages go first, so nothing overtakes them.
                    Link::Connected if self.queued.is_empty() => Outcome::Run(cmd),
                    Link::Connected | Link::Reconnecting { .. } if message => {
                        match self.queued.push(cmd) {
                            Ok(_) => self.info("Queued: sent once reconnected."),
                            Err(_) => self.error(format!(
                                "Not sent: disconnected, and {} messages already wait \
                                 (Up recalls the line).",
                                self.queued.limit()
                            )),
                        }
                        Outcome::Nothing
                    }
                    _ => {
                        self.error("Not sent: not connected (Up recalls the line).");
                        Outcome::Nothing
                    }
                }
            }
            Err(e) => {
                self.error(e.to_string());
                self.pane.to_bottom();
                Outcome::Nothing
            }
        }
    }
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
