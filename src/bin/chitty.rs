//! chitty: the Chitty-Chat client.

use chitty::client::{ClientError, plain};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// The Chitty-Chat client.
#[derive(Debug, Parser)]
#[command(name = "chitty", version, about = "The Chitty-Chat client")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join the chat. Lines you type are sent; messages arrive as `[L12] alice: hello`. End of
    /// input, Ctrl-C or /quit leaves. `/msg ID text` sends a direct message to user ID.
    Chat {
        /// Your username (1 to 16 characters, no spaces).
        #[arg(short, long)]
        username: String,
        /// The server, as host:port.
        #[arg(
            short = 'H',
            long,
            env = "CHITTY_SERVER",
            default_value = "localhost:8080"
        )]
        host: String,
        /// Append every received message to this file, as `L[12] @ alice: hello`.
        /// Default: $XDG_STATE_HOME/chitty/USERNAME.log (~/.local/state/chitty/).
        #[arg(long, value_name = "PATH")]
        log: Option<PathBuf>,
        /// Do not write the client log.
        #[arg(long, conflicts_with = "log")]
        no_log: bool,
    },
}

fn default_log(username: &str) -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(state.join("chitty").join(format!("{username}.log")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Chat {
        username,
        host,
        log,
        no_log,
    } = cli.command;
    let log = if no_log {
        None
    } else {
        log.or_else(|| default_log(&username))
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chitty: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = plain::Options {
        server: host,
        username,
        log,
    };
    match runtime.block_on(plain::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chitty: {e}");
            ExitCode::from(match e {
                ClientError::Connect { .. } => 3,
                e if e.is_refusal() => 4,
                _ => 1,
            })
        }
    }
}
