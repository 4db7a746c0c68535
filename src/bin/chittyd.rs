//! chittyd: the Chitty-Chat server daemon.

use chitty::audit::AUDIT_TARGET;
use chitty::config::DaemonArgs;
use chitty::exit;
use chitty::server::{Server, ServerError};
use clap::{CommandFactory, Parser};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// jemalloc, with background threads that give memory freed after a burst back to the system
/// (glibc's malloc kept a leave storm's gigabyte after the room was empty).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = match DaemonArgs::try_parse() {
        Ok(args) => args,
        Err(e) => return exit::usage(&e, &DaemonArgs::command()),
    };
    let journal = init_logging(&args);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        // chitty's errors name their cause in their own message; the chain would repeat it.
        Err(e) if e.is_configuration() => exit::config_error(&e.to_string(), journal),
        Err(e) => exit::failure(&e.to_string(), journal),
    }
}

/// Sets up logging; returns whether it goes to the journal.
fn init_logging(args: &DaemonArgs) -> bool {
    // The filter was checked when the options were parsed.
    let filter = EnvFilter::try_new(&args.log).unwrap_or_else(|_| EnvFilter::new("info"));
    // Audit records sent to the journal are events on their own target: they are the trail,
    // not logs, so `--log warn` must not filter them out.
    let filter = match format!("{AUDIT_TARGET}=info").parse() {
        Ok(audit) => filter.add_directive(audit),
        Err(_) => filter,
    };
    let registry = tracing_subscriber::registry().with(filter);
    if args.journal() {
        match journald_layers() {
            Ok(layers) => {
                registry.with(layers).init();
                return true;
            }
            Err(e) => eprintln!("chittyd: journald unavailable ({e}); logging to stderr"),
        }
    }
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    registry.with(stderr).init();
    false
}

/// The journal's two streams: chittyd's own logs with tracing-journald's priorities (INFO is
/// notice, 5), and the audit records at info (6), so `journalctl -p notice` shows operational
/// events without one line per chat message.
fn journald_layers<S>() -> std::io::Result<Vec<Box<dyn Layer<S> + Send + Sync>>>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let layer = || {
        tracing_journald::layer().map(|l| {
            l.with_field_prefix(None)
                .with_syslog_identifier("chittyd".into())
        })
    };
    let logs = layer()?.with_filter(filter_fn(|m| m.target() != AUDIT_TARGET));
    let audit = layer()?
        .with_priority_mappings(PriorityMappings {
            info: Priority::Informational,
            ..PriorityMappings::new()
        })
        .with_filter(filter_fn(|m| m.target() == AUDIT_TARGET));
    Ok(vec![logs.boxed(), audit.boxed()])
}

#[tokio::main]
async fn run(args: DaemonArgs) -> Result<(), ServerError> {
    let config = chitty::server::ServerConfig {
        cluster: args.cluster.config()?,
        ..args.server_config()
    };
    let mut server = Server::bind(config).await?;
    let stop = CancellationToken::new();
    server.handle_signals(stop.clone())?;
    server.run(stop).await;
    Ok(())
}
