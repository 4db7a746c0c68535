//! The state of the full-screen client, and what keys and messages do to it.
//!
//! Nothing here touches a terminal or the network: keys come in as crossterm's plain data,
//! messages as protobuf values, and what needs the network comes out as an [`Outcome`] for the
//! event loop to carry out. That keeps every rule of the UI testable on its own.

use super::input::Input;
use super::pane::{Entry, Pane, Tone};
use crate::client::command::{self, Command, HELP, KEYS};
use crate::client::people::Directory;
use crate::client::reconnect::{Queue, Retry};
use crate::client::{ClientError, Offers, is_own_join, printable};
use crate::pb::{self, chat_message::Kind};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

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

/// What the event loop has to do after a key. Commands for the server wait in the app's
/// outgoing queue ([`App::next_to_send`]), which the loop empties at the server's pace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing beyond drawing again (and sending what waits).
    Nothing,
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
    /// The participants' names by id, for direct messages and /users.
    names: Directory,
    /// What this connection's server offers; `None` until its first message.
    offers: Option<Offers>,
    /// Commands for the server, oldest first: waiting for the pace while connected, for the
    /// rejoin while reconnecting. Bounded; beyond it a command is refused with a notice and
    /// the line stays in the history (Up recalls it).
    outgoing: Queue<Command>,
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
            names: Directory::new(),
            offers: None,
            outgoing: Queue::default(),
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

    /// The join went through: from now on, what is typed is sent (once the server has said
    /// what it offers).
    pub fn joined(&mut self) {
        self.link = Link::Connected;
    }

    /// The server's first message arrived, and with it what the server offers.
    pub fn ready(&mut self, offers: Offers) {
        self.offers = Some(offers);
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
        self.offers = None;
        self.names.clear();
    }

    /// Back in the room after a lost connection; `text` tells the person.
    pub fn back(&mut self, text: String) {
        self.info(text);
        if !self.outgoing.is_empty() {
            self.info(format!("Sending {} queued messages.", self.outgoing.len()));
        }
        self.pane.to_bottom();
    }

    /// Whether a command waits and may go as soon as the pace allows: connected, and the
    /// server has said what it offers.
    pub fn sendable(&self) -> bool {
        self.link == Link::Connected && self.offers.is_some() && !self.outgoing.is_empty()
    }

    /// The next command to send, checked against what the server offers (a server met after a
    /// reconnect may offer less than the one it was typed for; what it cannot do is answered
    /// here, and the next command is taken). `None` when nothing may go now.
    pub fn next_to_send(&mut self) -> Option<Command> {
        while self.sendable() {
            let cmd = self.outgoing.pop()?;
            let offers = self.offers.clone().unwrap_or_default();
            if let Err(e) = command::check(&cmd, &offers) {
                self.error(e.to_string());
                continue;
            }
            if cmd == Command::Users && !offers.roster {
                self.users(true);
                continue;
            }
            return Some(cmd);
        }
        None
    }

    /// A command whose send failed: it goes first once the connection is back.
    pub fn put_back(&mut self, cmd: Command) {
        self.outgoing.put_back(cmd);
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

    /// A message from the server: it updates what we know and becomes a line in the pane.
    pub fn on_message(&mut self, msg: &pb::ChatMessage) {
        let kind = msg.kind();
        if self.id.is_none() && is_own_join(msg, &self.username) {
            self.id = Some(msg.sender_id);
        }
        if matches!(kind, Kind::Join | Kind::Leave) {
            self.online = Some(msg.participants);
        }
        let entry = self.entry_for(msg);
        self.names.observe(msg);
        self.pane.push(entry);
    }

    /// The pane's line for a message. Everything from the network goes through
    /// [`printable`], so no control character reaches the terminal.
    pub fn entry_for(&self, msg: &pb::ChatMessage) -> Entry {
        let time = Entry::default().with(Tone::Time, format!("[L{}] ", msg.timestamp));
        let text = printable(&msg.message);
        match msg.kind() {
            Kind::Message => {
                let tone = if msg.username == self.username {
                    Tone::Own
                } else {
                    Tone::Name
                };
                time.with(tone, Directory::sender(msg))
                    .with(Tone::Text, format!(": {text}"))
            }
            Kind::Direct if self.id == Some(msg.sender_id) => time.with(
                Tone::Direct,
                format!(
                    "[direct] you -> {}: {text}",
                    self.names.who(msg.recipient_id)
                ),
            ),
            Kind::Direct => time.with(
                Tone::Direct,
                format!("[direct] {} -> you: {text}", Directory::sender_tag(msg)),
            ),
            Kind::Join if msg.sender_id != 0 => {
                time.with(Tone::Server, format!("* {text} (#{})", msg.sender_id))
            }
            Kind::Roster => time.with(
                Tone::Server,
                format!("* {text}: {}", Directory::roster(msg)),
            ),
            Kind::Join | Kind::Leave | Kind::Notice | Kind::Shutdown | Kind::Welcome => {
                time.with(Tone::Server, format!("* {text}"))
            }
            Kind::Error => time.with(Tone::Error, format!("! {}", self.names.refusal(msg))),
        }
    }

    /// `/users` answered here: from a server that does not list who is online (`unlisted`,
    /// which is said), or while not connected, the participants seen since joining and the
    /// room's size from the last notice.
    fn users(&mut self, unlisted: bool) {
        let seen = self.names.seen();
        let seen = if seen.is_empty() {
            "nobody".to_owned()
        } else {
            seen.join(", ")
        };
        let online = self
            .online
            .map(|n| format!(" ({n} online in all)"))
            .unwrap_or_default();
        let why = if unlisted {
            "This server does not list who is online (no \"roster\" in its welcome). "
        } else {
            ""
        };
        self.info(format!("{why}Seen since you joined: {seen}{online}."));
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
        if !self.outgoing.is_empty() {
            left.push_str(&format!(" | {} waiting", self.outgoing.len()));
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
        self.pane.to_bottom();
        let cmd = match command::parse(&line) {
            Ok(None) => return Outcome::Nothing,
            Ok(Some(Command::Quit)) => return Outcome::Quit,
            Ok(Some(Command::Help)) => {
                HELP.iter().chain(KEYS).for_each(|line| self.info(*line));
                return Outcome::Nothing;
            }
            Ok(Some(cmd)) => cmd,
            Err(e) => {
                self.error(e.to_string());
                return Outcome::Nothing;
            }
        };
        if let Some(offers) = self.offers.clone() {
            if let Err(e) = command::check(&cmd, &offers) {
                self.error(e.to_string());
                return Outcome::Nothing;
            }
            if cmd == Command::Users && !offers.roster {
                self.users(true);
                return Outcome::Nothing;
            }
        } else if cmd == Command::Users {
            // Not connected, or not yet told: what this client has seen answers at once.
            self.users(false);
            return Outcome::Nothing;
        }
        self.queue(cmd);
        Outcome::Nothing
    }

    /// Puts a command for the server in the outgoing queue, or says why it cannot go.
    fn queue(&mut self, cmd: Command) {
        match self.link {
            Link::Connected | Link::Reconnecting { .. } => {
                if self.outgoing.push(cmd).is_err() {
                    self.error(format!(
                        "Not sent: {} messages already wait to be sent (Up recalls the line).",
                        self.outgoing.limit()
                    ));
                } else if self.link != Link::Connected {
                    self.info("Queued: sent once reconnected.");
                }
            }
            _ => self.error("Not sent: not connected (Up recalls the line)."),
        }
    }
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
