//! How chittyd ends when it cannot run, in the two ways systemd tells apart: a configuration
//! error, exit status 78 (`EX_CONFIG` of sysexits.h), which chitty.service does not restart on
//! (`RestartPreventExitStatus=78`: starting again would fail the same way, every two seconds),
//! and any other failure, status 1, which may pass (a port still held by the process that is
//! stopping) and is restarted.
//!
//! Every configuration error is one status, a bad option or environment value (clap's own usage
//! errors included) as much as a file or path that cannot be used, and the message says, under
//! systemd, that the service stays down until the configuration is fixed.

use std::ffi::OsString;
use std::process::ExitCode;

/// The exit status of a configuration error (sysexits.h `EX_CONFIG`).
pub const CONFIG_ERROR: u8 = 78;

/// The exit status of any other failure to run.
pub const FAILURE: u8 = 1;

/// Reports a configuration error and returns its exit status. `journal` says whether chittyd's
/// logs already go to the journal (then the message is an error entry there).
pub fn config_error(why: &str, journal: bool) -> ExitCode {
    let mut line = format!("configuration error: {why}");
    if under_systemd() {
        line.push_str(&format!(
            "; not restarting until the configuration is fixed (exit status {CONFIG_ERROR})"
        ));
    }
    say(&line, journal);
    ExitCode::from(CONFIG_ERROR)
}

/// Reports a failure that is not the configuration's and returns its exit status.
pub fn failure(why: &str, journal: bool) -> ExitCode {
    say(why, journal);
    ExitCode::from(FAILURE)
}

/// Reports a command-line or environment value clap refused (a configuration error) and returns
/// its exit status; `--help` and `--version` print and exit 0 as usual.
pub fn usage(e: &clap::Error, command: &clap::Command) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let status = config_error(&usage_error(e, command, std::env::args_os()), false);
    if !under_systemd() {
        eprintln!("For more information, try 'chittyd --help'.");
    }
    status
}

/// clap's message on one line (a journal entry is one line), with the environment variable
/// named when the value came from there rather than the command line: under systemd it came
/// from /etc/default/chitty, where the administrator has to look.
pub fn usage_error(
    e: &clap::Error,
    command: &clap::Command,
    args: impl IntoIterator<Item = OsString>,
) -> String {
    let rendered = e.render().to_string();
    let first: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = first.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    let Some((arg, var)) = from_environment(e, command, args) else {
        return message.to_owned();
    };
    let quoted = format!("'{arg}'");
    if message.contains(&quoted) {
        message.replacen(&quoted, &format!("{quoted} (from {var})"), 1)
    } else {
        format!("{var}: {message}")
    }
}

/// The argument `e` is about, as clap names it (`--listen <ADDR>`), and its variable, if the
/// value came from the environment.
fn from_environment(
    e: &clap::Error,
    command: &clap::Command,
    args: impl IntoIterator<Item = OsString>,
) -> Option<(String, String)> {
    use clap::error::{ContextKind, ContextValue};
    let ContextValue::String(arg) = e.get(ContextKind::InvalidArg)? else {
        return None;
    };
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let var = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))?
        .get_env()?
        .to_str()?
        .to_owned();
    let flag = format!("--{long}");
    let on_command_line = args.into_iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
    });
    if on_command_line {
        return None;
    }
    std::env::var_os(&var)?;
    Some((arg.clone(), var))
}

/// Whether systemd started us (it sets `INVOCATION_ID` for every unit's processes).
fn under_systemd() -> bool {
    std::env::var_os("INVOCATION_ID").is_some() || std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// One line where the operator looks: an error entry when logging to the journal; otherwise
/// standard error, with the journal's `<3>` (error) prefix when that is where it goes.
fn say(line: &str, journal: bool) {
    if journal {
        tracing::error!("{line}");
    } else if crate::systemd::stderr_is_journal() {
        eprintln!("<3>{line}");
    } else {
        eprintln!("chittyd: {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn command() -> Command {
        Command::new("chittyd")
            .arg(
                Arg::new("port")
                    .long("port")
                    .env("CHITTY_EXIT_TEST_PORT")
                    .value_parser(clap::value_parser!(u16)),
            )
            .arg(Arg::new("cert").long("cert").requires("key"))
            .arg(Arg::new("key").long("key"))
    }

    fn error(args: &[&str]) -> clap::Error {
        command().try_get_matches_from(args).unwrap_err()
    }

    #[test]
    fn usage_errors_are_one_line_and_name_their_variable() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let e = error(&["chittyd", "--port", "x"]);
        let line = usage_error(&e, &command(), args(&["chittyd", "--port", "x"]));
        assert!(line.starts_with("invalid value 'x' for '--port"), "{line}");
        assert!(!line.contains('\n'));

        let e = error(&["chittyd", "--cert", "c"]);
        let line = usage_error(&e, &command(), args(&["chittyd", "--cert", "c"]));
        assert!(
            line.contains("not provided") && line.contains("--key"),
            "{line}"
        );

        // A value from the environment is named by its variable: tests/process/exit_status.rs
        // (this crate forbids the unsafe `set_var`).
        let e = error(&["chittyd", "--bogus"]);
        let line = usage_error(&e, &command(), args(&["chittyd", "--bogus"]));
        assert!(line.contains("unexpected argument '--bogus'"), "{line}");
    }
}
