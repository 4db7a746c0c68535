//! chitty: the Chitty-Chat client. Full screen at a terminal, line mode in pipes and scripts.

use chitty::client::cli::{ChatArgs, ChittyCli, ChittyCommand};
use chitty::client::dial::DialError;
use chitty::client::{ClientError, plain, tui};
use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let ChittyCommand::Chat(args) = ChittyCli::parse().command;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chitty: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let result = if full_screen(&args) {
        runtime.block_on(tui::run(tui::Options {
            server: args.server(),
            username: args.username.clone(),
            log: args.log_path(),
            reconnect: args.reconnect(),
        }))
    } else {
        runtime.block_on(plain::run(plain::Options {
            server: args.server(),
            username: args.username.clone(),
            log: args.log_path(),
            reconnect: args.reconnect(),
        }))
    };
    // Reading standard input is a blocking read the runtime would wait for on drop: when the
    // server ends the session while input is still open, leave without waiting for a line.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chitty: {e}");
            ExitCode::from(match e.cause() {
                ClientError::Address(..) => 2,
                // A CA file that cannot be used is a local error; every other dial error means
                // the server could not be reached as asked.
                ClientError::Dial(DialError::Ca { .. }) => 1,
                ClientError::Connect { .. } | ClientError::Dial(_) => 3,
                e if e.is_refusal() => 4,
                ClientError::Undelivered { .. } => 5,
                _ => 1,
            })
        }
    }
}

/// The full-screen chat needs a person at a terminal on both ends: keys in, screen out.
fn full_screen(args: &ChatArgs) -> bool {
    !args.plain && std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}
