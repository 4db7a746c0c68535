//! chittyd: the Chitty-Chat server daemon.

use chitty::config::DaemonArgs;
use chitty::server::Server;
use chitty::systemd;
use clap::Parser;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

fn main() -> ExitCode {
    let args = DaemonArgs::parse();
    init_logging(&args);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // chitty's errors name their cause in their own message; the chain would repeat it.
            tracing::error!("{e}");
            eprintln!("chittyd: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(args: &DaemonArgs) {
    let filter = EnvFilter::try_new(&args.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if args.journal() {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("chittyd".into());
                registry.with(layer).init();
                return;
            }
            Err(e) => eprintln!("chittyd: journald unavailable ({e}); logging to stderr"),
        }
    }
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    registry.with(stderr).init();
}

#[tokio::main]
async fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let server = Server::bind(args.server_config()).await?;
    let stop = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| anyhow::anyhow!("installing the SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| anyhow::anyhow!("installing the SIGINT handler: {e}"))?;
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| anyhow::anyhow!("installing the SIGHUP handler: {e}"))?;
    let reopen = server.audit_reopen();
    let signals = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => if let Some(reopen) = &reopen { reopen.notify_one() },
            }
        }
        signals.cancel();
    });
    tokio::spawn(systemd::supervise(server.hub().clone(), stop.clone()));
    server.run(stop).await;
    Ok(())
}
