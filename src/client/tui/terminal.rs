//! Taking over the terminal and giving it back.
//!
//! The terminal is put in raw mode on the alternate screen, with bracketed paste, for as long as
//! a [`Screen`] lives.
//! It is given back exactly once, whichever comes first: the `Screen` dropped (a normal end, an
//! error, an unwinding panic on this thread) or the panic hook (a panic anywhere, before its
//! message is printed, so the message lands on a normal terminal where it can be read).

use crate::client::ClientError;
use crossterm::{cursor, event, execute, terminal};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use std::io::{Stdout, stdout};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the terminal is currently taken over; the restore runs only while it is.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The terminal, taken over for drawing.
pub struct Screen {
    /// ratatui's handle, which draws only what changed since the last frame.
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    /// Puts the terminal in raw mode on the alternate screen. If a step fails, what was already
    /// changed is undone.
    pub fn take() -> Result<Screen, ClientError> {
        install_panic_hook();
        terminal::enable_raw_mode().map_err(ClientError::Terminal)?;
        TAKEN.store(true, Ordering::SeqCst);
        // Bracketed paste: a pasted text arrives as one piece, so its line breaks do not send
        // each line as it goes.
        let screen = execute!(
            stdout(),
            terminal::EnterAlternateScreen,
            event::EnableBracketedPaste
        )
        .and_then(|()| Terminal::new(CrosstermBackend::new(stdout())))
        .map(|terminal| Screen { terminal });
        screen.map_err(|e| {
            restore();
            ClientError::Terminal(e)
        })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Gives the terminal back: leaves the alternate screen, shows the cursor, ends raw mode. Does
/// nothing if the terminal is not taken, so every path may call it.
pub fn restore() {
    if TAKEN.swap(false, Ordering::SeqCst) {
        // Each step is tried even if one before failed: a half-restored terminal is worse.
        let _ = execute!(
            stdout(),
            event::DisableBracketedPaste,
            terminal::LeaveAlternateScreen,
            cursor::Show
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// Installs, once per process, a panic hook that restores the terminal before the panic is
/// reported.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| chain_panic_hook(restore));
}

/// Puts `first` in front of the current panic hook.
fn chain_panic_hook(first: fn()) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        first();
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static CALLS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

    fn note(what: &'static str) {
        if let Ok(mut calls) = CALLS.lock() {
            calls.push(what);
        }
    }

    #[test]
    fn a_panic_restores_first_then_reports_as_before() {
        std::panic::set_hook(Box::new(|_| note("report")));
        chain_panic_hook(|| note("restore"));
        let panicked = std::thread::spawn(|| panic!("on purpose")).join();
        let _ = std::panic::take_hook();
        assert!(panicked.is_err());
        let calls = CALLS.lock().unwrap().clone();
        assert_eq!(calls[..2], ["restore", "report"]);
    }
}
