//! chitty: the Chitty-Chat client.

use chitty::client::ClientError;
use chitty::client::cli::{ChittyCli, ChittyCommand};
use chitty::client::plain;
use clap::Parser;
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
    let opts = plain::Options {
        server: args.host.clone(),
        username: args.username.clone(),
        log: args.log_path(),
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
