//! chittyctl: manage a running chittyd over its admin socket.

use chittyctl::cli::CtlCli;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = CtlCli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chittyctl: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(chittyctl::run(&cli, &mut std::io::stdout().lock())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chittyctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
