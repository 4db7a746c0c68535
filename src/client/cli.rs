//! The `chitty` command line, in the library so its man page and completions come from the same
//! definition.

use super::reconnect::Policy;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The Chitty-Chat client.
#[derive(Debug, Parser)]
#[command(
    name = "chitty",
    version,
    about = "The Chitty-Chat client",
    long_about = "The Chitty-Chat client. `chitty chat -u NAME` joins the chat on a chittyd \
                  server; every message shows its Lamport time. The client keeps its own Lamport \
                  clock and appends every received message to a log file."
)]
pub struct ChittyCli {
    /// What to do.
    #[command(subcommand)]
    pub command: ChittyCommand,
}

/// chitty's subcommands.
#[derive(Debug, Subcommand)]
pub enum ChittyCommand {
    /// Join the chat. At a terminal, a full-screen chat opens: messages scroll above, each as
    /// `[L12] alice: hello`; the status line shows the server, the connection, your name and id,
    /// your Lamport time and who is online; Enter sends what you type, Esc, Ctrl-C or /quit
    /// leaves, PageUp/PageDown scroll, /help lists the commands. In a pipe or script (or with
    /// --plain), lines from standard input are sent and messages are printed, one a line; end of
    /// input leaves. In both, `/msg ID text` sends a direct message to user ID.
    Chat(ChatArgs),
}

/// Options of `chitty chat`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// Your username (1 to 16 characters, no spaces).
    #[arg(short, long)]
    pub username: String,
    /// The server: host, host:port, [v6]:port, or an http:// or https:// URL (https:// means
    /// --tls); without a port, 8080.
    #[arg(
        short = 'H',
        long,
        env = "CHITTY_SERVER",
        default_value = "localhost:8080"
    )]
    pub host: String,
    /// Connect over TLS (to a chittyd run with --tls-cert), checking the server's certificate
    /// against the system's trusted certificate authorities, or --ca. The name in --host must
    /// match the certificate.
    #[arg(long)]
    pub tls: bool,
    /// Trust this certificate authority (PEM) for the server's certificate, instead of the
    /// system's: for a private CA (ca.pem from `chittyctl tls-cert`) or a self-signed
    /// certificate. Implies --tls.
    #[arg(long, env = "CHITTY_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Append every received message to this file, as `L[12] @ alice: hello`.
    /// Default: $XDG_STATE_HOME/chitty/USERNAME.log (~/.local/state/chitty/). It holds chat
    /// text, so it is private: created mode 0600, and tightened to that if others could read it.
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// Do not write the client log.
    #[arg(long, conflicts_with = "log")]
    pub no_log: bool,
    /// Line mode even at a terminal: read lines from standard input, print one message a line.
    /// Line mode is chosen by itself when standard input or output is not a terminal.
    #[arg(long)]
    pub plain: bool,
    /// Do not reconnect when the connection drops or the server restarts: end the session.
    /// By default chitty reconnects with exponential back-off (up to 30 s between attempts,
    /// randomised), rejoins under the same name, and sends what was typed meanwhile.
    #[arg(long)]
    pub no_reconnect: bool,
    /// Give up after N reconnection attempts in a row (default: keep trying until you leave).
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "no_reconnect",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub reconnect_max: Option<u32>,
}

impl ChatArgs {
    /// The server to connect to, and how.
    pub fn server(&self) -> crate::client::ServerAddr {
        crate::client::ServerAddr {
            addr: self.host.clone(),
            tls: (self.tls || self.ca.is_some()).then(|| crate::client::ClientTls {
                ca: self.ca.clone(),
            }),
        }
    }

    /// The client log to write, if any.
    pub fn log_path(&self) -> Option<PathBuf> {
        if self.no_log {
            return None;
        }
        if let Some(log) = &self.log {
            return Some(log.clone());
        }
        let state = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
        Some(state.join("chitty").join(format!("{}.log", self.username)))
    }

    /// When to reconnect, from `--no-reconnect` and `--reconnect-max`.
    pub fn reconnect(&self) -> Policy {
        Policy {
            enabled: !self.no_reconnect,
            max_attempts: self.reconnect_max,
            ..Policy::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        ChittyCli::command().debug_assert();
    }

    fn chat(args: &[&str]) -> Result<ChatArgs, clap::Error> {
        let argv = ["chitty", "chat", "-u", "alice"].iter().chain(args);
        ChittyCli::try_parse_from(argv).map(|cli| {
            let ChittyCommand::Chat(args) = cli.command;
            args
        })
    }

    #[test]
    fn reconnecting_is_on_by_default_and_can_be_limited_or_turned_off() {
        assert_eq!(chat(&[]).unwrap().reconnect(), Policy::default());
        assert!(Policy::default().enabled);
        assert_eq!(Policy::default().max_attempts, None);
        assert!(!chat(&["--no-reconnect"]).unwrap().reconnect().enabled);
        let limited = chat(&["--reconnect-max", "5"]).unwrap().reconnect();
        assert!(limited.enabled);
        assert_eq!(limited.max_attempts, Some(5));
        assert!(chat(&["--reconnect-max", "0"]).is_err());
        assert!(chat(&["--no-reconnect", "--reconnect-max", "3"]).is_err());
    }
}
