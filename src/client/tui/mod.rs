//! The full-screen client, for a person at a terminal: a scrolling message pane, a status line
//! and an input line with the usual editing keys.
//!
//! - [`app`]: the state and what keys and messages do to it (no terminal, no network).
//! - [`input`]: the line editor with its history.
//! - [`pane`]: the messages, wrapped and scrolled.
//! - [`view`]: drawing all of it with ratatui.
//! - [`net`]: the task that joins and relays the server's messages and writes the client log.
//! - [`terminal`]: taking over the terminal and giving it back, on every way out.
//!
//! [`run`] ties them together in one loop that waits on the keyboard, the network task and the
//! pace ([`crate::client::pace`]): commands for the server wait in the app's outgoing queue and
//! go out as fast as the server's rate limit allows, never faster.

pub mod app;
pub mod input;
pub mod net;
pub mod pane;
pub mod terminal;
pub mod view;

use crate::client::command::Command;
use crate::client::pace::Pacer;
use crate::client::reconnect::Policy;
use crate::client::{ClientError, ClientLog, LEAVE_WAIT, SendHalf, endpoint};
use app::{App, Outcome};
use crossterm::event::{Event, EventStream};
use futures_util::StreamExt;
use net::NetEvent;
use std::path::PathBuf;
use terminal::Screen;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

/// What the full-screen client needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// chittyd's address, and whether over TLS.
    pub server: crate::client::ServerAddr,
    /// The username to join with.
    pub username: String,
    /// The client log file (appended).
    pub log: Option<PathBuf>,
    /// When to reconnect after the connection is lost.
    pub reconnect: Policy,
}

/// Runs the full-screen client until the person leaves (Esc, Ctrl-C, `/quit`) or the terminal
/// goes away (SIGHUP, SIGTERM). A session the server ended stays on screen, with the reason,
/// until the person leaves; its error is then returned so the caller can report it and exit
/// accordingly. The terminal is restored before this returns, whatever happened.
pub async fn run(opts: Options) -> Result<(), ClientError> {
    // Checked and opened before the screen is taken, so a mistyped address or a bad path is
    // reported on a normal terminal.
    endpoint(&opts.server)?;
    let mut log = opts.log.as_deref().map(ClientLog::open).transpose()?;
    let warning = log.as_mut().and_then(ClientLog::take_warning);
    let mut signals = Signals::new()?;
    let mut screen = Screen::take()?;
    let mut app = App::new(&opts.server.tried(), &opts.username);
    if let Some(warning) = warning {
        app.error(format!("Note: {warning}."));
    }
    let (task, mut net) = net::spawn(
        opts.server.clone(),
        opts.username.clone(),
        log,
        opts.reconnect,
    );
    let mut session = Session {
        me: None,
        ended: None,
        pacer: Pacer::unlimited(Instant::now()),
    };

    let looped = event_loop(&mut screen, &mut app, &mut net, &mut session, &mut signals).await;

    // Leave, and keep taking what arrives (the task logs it) until the server ends the stream.
    if session.ended.is_none()
        && let Some(me) = &session.me
    {
        app.leaving();
        let _ = screen.terminal.draw(|f| view::draw(f, &mut app));
        if me.leave().await.is_ok() {
            let _ = tokio::time::timeout(LEAVE_WAIT, async {
                while let Some(event) = net.recv().await {
                    if let NetEvent::Ended(result) = event {
                        session.ended = Some(result);
                        break;
                    }
                }
            })
            .await;
        }
    }
    task.abort();
    // A task that ended by itself gives back (); an aborted one, a cancellation error.
    let _ = task.await;
    drop(screen);
    looped?;
    match session.ended {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// What the loop learns about the session.
struct Session {
    /// How to send, while joined; `None` before and while reconnecting.
    me: Option<SendHalf>,
    /// How the session ended, once it has.
    ended: Option<Result<(), ClientError>>,
    /// The pace of this connection's server.
    pacer: Pacer,
}

/// The signals that end the client as a leave: the terminal closed (SIGHUP), a polite kill
/// (SIGTERM), an interrupt sent from elsewhere (SIGINT; Ctrl-C typed here is a key, not a
/// signal, in raw mode).
struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals, ClientError> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn any(&mut self) {
        tokio::select! {
            _ = self.hangup.recv() => {}
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// Draws, then waits for a key, a network event or a signal, until it is time to leave.
async fn event_loop(
    screen: &mut Screen,
    app: &mut App,
    net: &mut mpsc::Receiver<NetEvent>,
    session: &mut Session,
    signals: &mut Signals,
) -> Result<(), ClientError> {
    let mut keys = EventStream::new();
    loop {
        send_due(app, session).await;
        if let Some(me) = &session.me {
            app.set_lamport(me.clock().now());
        }
        screen
            .terminal
            .draw(|f| view::draw(f, app))
            .map_err(ClientError::Terminal)?;
        let send_at = app
            .sendable()
            .then(|| session.pacer.ready_at(Instant::now()));
        tokio::select! {
            event = net.recv(), if session.ended.is_none() => {
                let vanished = event.is_none();
                on_net(app, session, event);
                if vanished {
                    // Only a panic ends the task without a word, and the panic hook has given
                    // the terminal back already: nothing more can be shown.
                    return Ok(());
                }
                // Take whatever else is ready before drawing again, so a burst of messages
                // costs one draw rather than one each.
                while session.ended.is_none() {
                    match net.try_recv() {
                        Ok(event) => on_net(app, session, Some(event)),
                        Err(_) => break,
                    }
                }
            }
            // The pace allows the next command; the top of the loop sends it.
            () = sleep_until(send_at.unwrap_or_else(Instant::now)), if send_at.is_some() => {}
            key = keys.next() => match key {
                Some(Ok(Event::Key(key))) => match app.on_key(key) {
                    Outcome::Nothing => {}
                    Outcome::Quit => return Ok(()),
                },
                Some(Ok(Event::Paste(text))) => app.input.paste(&text),
                // A resize needs nothing but the draw at the top of the loop.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(ClientError::Terminal(e)),
                // The terminal's input is gone: nobody is left to type.
                None => return Ok(()),
            },
            () = signals.any() => return Ok(()),
        }
    }
}

/// One event from the network task. `None` means the task stopped without saying why, which
/// only a bug in it can cause; the session is over all the same.
fn on_net(app: &mut App, session: &mut Session, event: Option<NetEvent>) {
    match event {
        Some(NetEvent::Joined(me)) => {
            app.joined();
            session.me = Some(me);
        }
        Some(NetEvent::Message(msg)) => app.on_message(&msg),
        Some(NetEvent::Ready(offers)) => {
            session.pacer = Pacer::new(&offers, Instant::now());
            app.ready(offers);
        }
        Some(NetEvent::Lost(retry)) => {
            // The old stream is gone; a leave on it would go nowhere.
            session.me = None;
            app.reconnecting(&retry);
        }
        Some(NetEvent::Back(text)) => app.back(text),
        Some(NetEvent::LogFailed(e)) => {
            app.error(format!(
                "Cannot write the client log ({e}); logging has stopped."
            ));
        }
        Some(NetEvent::Ended(result)) => {
            app.ended(result.as_ref().err());
            session.ended = Some(result);
        }
        None => {
            app.ended(Some(&ClientError::Closed));
            session.ended = Some(Err(ClientError::Closed));
        }
    }
}

/// Sends the commands that wait, as many as the pace allows now. A send that fails means the
/// connection is going; the network task reports why, and the command goes first after the
/// rejoin.
async fn send_due(app: &mut App, session: &mut Session) {
    let Some(me) = &session.me else {
        return;
    };
    while app.sendable() && session.pacer.wait(Instant::now()).is_zero() {
        let Some(cmd) = app.next_to_send() else {
            return;
        };
        session.pacer.take(Instant::now());
        let sent = match &cmd {
            Command::Say(text) => me.say(text).await,
            Command::Direct { to, text } => me.direct(*to, text).await,
            Command::Users => me.roster().await,
            // Handled by the state itself; never queued.
            Command::Help | Command::Quit => continue,
        };
        if let Err(e) = sent {
            app.error(format!("Not sent yet: {e}."));
            app.put_back(cmd);
            session.me = None;
            return;
        }
    }
}
