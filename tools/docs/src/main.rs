//! chitty-docs: rewrites the generated documentation (man pages, shell completions,
//! /etc/default/chitty) from the command lines. Run `cargo run -p chitty-docs` after changing an
//! option or `man/sections/`, and commit the result; the drift test fails until then.
//!
//! Usage: `chitty-docs [REPOSITORY]` (default: the repository this tool was built in).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    const USAGE: &str = "usage: chitty-docs [REPOSITORY]";
    let mut args = std::env::args_os().skip(1);
    let root = match (args.next(), args.next()) {
        (None, _) => chitty_docs::repository_root().to_owned(),
        (Some(arg), None) if arg == "-h" || arg == "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        (Some(root), None) => PathBuf::from(root),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match chitty_docs::write_all(&root) {
        Ok(()) => {
            for (path, _) in chitty_docs::generated() {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chitty-docs: writing under {}: {e}", root.display());
            ExitCode::from(1)
        }
    }
}
