//! What a typed line means: chat text, or one of the slash commands. Line mode and the
//! full-screen client both understand lines through [`parse`], so they accept the same commands
//! and refuse the same mistakes, locally: an unknown `/command` is never sent as chat text.
//!
//! Parsing is kept apart from doing, so the rules read as a table and are tested without a
//! server or a terminal. [`check`] then asks whether the server at hand can carry a command out.

use super::offers::Offers;
use thiserror::Error;

/// A line the person entered, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Broadcast this text to everyone.
    Say(String),
    /// `/msg ID text`: a direct message to participant `to`.
    Direct {
        /// The recipient's id.
        to: u64,
        /// What to send.
        text: String,
    },
    /// `/users`: who is online, from the server's roster (or, from a server without one, the
    /// participants seen since joining).
    Users,
    /// `/help`: what can be typed.
    Help,
    /// `/quit`: leave the chat.
    Quit,
}

/// Why a typed line is not a command that can be carried out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// `/msg` without a usable id or without text.
    #[error("usage: /msg ID text, where ID is the number after a name, as in bob #2")]
    MsgUsage,
    /// A slash word that is no command.
    #[error(
        "unknown command {0}; /help lists the commands (start with // to send a line that begins with /)"
    )]
    Unknown(String),
    /// `/msg` to a server that would broadcast the text: it does not offer direct messages.
    #[error(
        "/msg refused: this server does not offer direct messages ({0}); it would show the \
         text to everyone"
    )]
    NoDirect(&'static str),
}

/// The help the pane shows for `/help`, one line each.
pub const HELP: &[&str] = &[
    "A line is sent to everyone.",
    "/msg ID text  sends a direct message to participant ID (ids are shown as #N).",
    "/users        lists who is online: names, ids and transports.",
    "/help         shows this.",
    "/quit         leaves the chat.",
    "A line starting with // is sent with one slash, so it is not taken as a command.",
];

/// The full-screen client's keys, after [`HELP`].
pub const KEYS: &[&str] = &[
    "Esc or Ctrl-C leaves, too.",
    "Left/Right, Home/End, Backspace/Delete edit; Ctrl-U and Ctrl-K cut before and after the cursor.",
    "Up/Down recall what you sent; PageUp/PageDown scroll the messages.",
];

/// Understands one entered line. `Ok(None)` means there is nothing to do (a blank line).
pub fn parse(line: &str) -> Result<Option<Command>, CommandError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    if let Some(literal) = line.strip_prefix("//") {
        return Ok(Some(Command::Say(format!("/{literal}"))));
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Some(Command::Say(line.to_owned())));
    };
    let (word, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    match word {
        "quit" => Ok(Some(Command::Quit)),
        "help" => Ok(Some(Command::Help)),
        "users" => Ok(Some(Command::Users)),
        "msg" => direct(args).map(Some),
        _ => Err(CommandError::Unknown(format!("/{word}"))),
    }
}

/// Whether the server described by `offers` can carry out `cmd`. Only a direct message can be
/// refused here: sent to a server that does not know them, it would reach everyone.
pub fn check(cmd: &Command, offers: &Offers) -> Result<(), CommandError> {
    match cmd {
        Command::Direct { .. } if !offers.direct => {
            Err(CommandError::NoDirect(if offers.welcomed {
                "its welcome does not list \"direct\""
            } else {
                "it sent no welcome, like the original Chitty-Chat, which ignores the recipient"
            }))
        }
        _ => Ok(()),
    }
}

/// The arguments of `/msg`: an id (`2` or `#2`), then the text.
fn direct(args: &str) -> Result<Command, CommandError> {
    let args = args.trim_start();
    let (id, text) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
    let id = id.strip_prefix('#').unwrap_or(id);
    let to = match id.parse::<u64>() {
        Ok(to) if to > 0 => to,
        _ => return Err(CommandError::MsgUsage),
    };
    let text = text.trim_start();
    if text.is_empty() {
        return Err(CommandError::MsgUsage);
    }
    Ok(Command::Direct {
        to,
        text: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(text: &str) -> Result<Option<Command>, CommandError> {
        Ok(Some(Command::Say(text.to_owned())))
    }

    #[test]
    fn plain_text_is_said_as_typed() {
        assert_eq!(parse("hello bob"), say("hello bob"));
        assert_eq!(parse("  indented  "), say("  indented  "));
        assert_eq!(parse("héllo wörld ✓"), say("héllo wörld ✓"));
    }

    #[test]
    fn blank_lines_do_nothing() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   "), Ok(None));
    }

    #[test]
    fn slash_commands() {
        assert_eq!(parse("/quit"), Ok(Some(Command::Quit)));
        assert_eq!(parse("/help"), Ok(Some(Command::Help)));
        assert_eq!(parse("/users"), Ok(Some(Command::Users)));
        assert_eq!(
            parse("/msg 2 hi there"),
            Ok(Some(Command::Direct {
                to: 2,
                text: "hi there".into()
            }))
        );
        assert_eq!(
            parse("/msg   #17   spaced"),
            Ok(Some(Command::Direct {
                to: 17,
                text: "spaced".into()
            }))
        );
    }

    #[test]
    fn msg_needs_a_positive_id_and_text() {
        for bad in [
            "/msg",
            "/msg ",
            "/msg 2",
            "/msg 2   ",
            "/msg bob hi",
            "/msg 0 hi",
            "/msg -1 hi",
        ] {
            assert_eq!(parse(bad), Err(CommandError::MsgUsage), "{bad:?}");
        }
    }

    #[test]
    fn unknown_commands_are_refused_not_sent() {
        assert_eq!(
            parse("/nick carol"),
            Err(CommandError::Unknown("/nick".into()))
        );
        assert_eq!(parse("/"), Err(CommandError::Unknown("/".into())));
        // Commands are whole words: /quitter is not /quit.
        assert_eq!(
            parse("/quitter"),
            Err(CommandError::Unknown("/quitter".into()))
        );
    }

    #[test]
    fn direct_messages_need_a_server_that_offers_them() {
        let dm = Command::Direct {
            to: 2,
            text: "psst".into(),
        };
        let chittyd = Offers {
            welcomed: true,
            direct: true,
            ..Offers::default()
        };
        assert_eq!(check(&dm, &chittyd), Ok(()));
        let original = Offers::default();
        let err = check(&dm, &original).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "/msg refused: this server does not offer direct messages (it sent no welcome"
            ),
            "{err}"
        );
        assert!(err.ends_with("it would show the text to everyone"), "{err}");
        let welcomed = Offers {
            welcomed: true,
            ..Offers::default()
        };
        assert!(check(&dm, &welcomed).is_err());
        for other in [Command::Say("hi".into()), Command::Users, Command::Help] {
            assert_eq!(check(&other, &original), Ok(()));
        }
    }

    #[test]
    fn a_double_slash_sends_a_literal_slash_line() {
        assert_eq!(parse("//quit"), say("/quit"));
        assert_eq!(parse("// shrug"), say("/ shrug"));
    }
}
