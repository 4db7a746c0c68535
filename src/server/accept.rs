//! The chat port's accept loop: the per-address limits at accept, the back-off when accept
//! fails, and the set that owns every connection's task from accept to close.

use super::connection::Edge;
use super::limits::{self, Backoff, Gate};
use super::listen::Listeners;
use super::stats::EdgeStats;
use crate::throttle::Throttle;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The most often the accept loop logs refused connections or failing accepts: under a flood,
/// one line per period says how many were held back, instead of one line per connection.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The first wait after a failed accept; it doubles with each failure in a row.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(100);

/// The longest wait after failed accepts: long enough not to spin while out of descriptors,
/// short enough that the port serves again within a second once some are free.
const ACCEPT_BACKOFF_CAP: Duration = Duration::from_secs(1);

/// How often the accept loop forgets idle addresses and writes held-back log summaries.
const HOUSEKEEPING: Duration = Duration::from_secs(5);

/// Accepts connections until `shutdown`: refuses what the per-address limits refuse, backs off
/// while accept fails, and spawns every admitted connection's task into the returned set, which
/// owns them all: a connection, gRPC or WebSocket, is one task from accept to close, holding its
/// per-address slot throughout. Finished tasks are reaped as the loop goes.
pub(super) async fn accept_until(
    listener: &mut Listeners,
    edge: &Arc<Edge>,
    gate: &Arc<Gate>,
    shutdown: &CancellationToken,
    open_files: Option<u64>,
) -> JoinSet<()> {
    let stats = edge.stats();
    let mut connections = JoinSet::new();
    let mut refused_log = Throttle::new(LOG_EVERY);
    let mut accept_log = Throttle::new(LOG_EVERY);
    let mut backoff = Backoff::new(ACCEPT_BACKOFF_FIRST, ACCEPT_BACKOFF_CAP);
    // While set, accept waits: the last one failed.
    let mut resume_at: Option<Instant> = None;
    let mut housekeeping = tokio::time::interval_at(Instant::now() + HOUSEKEEPING, HOUSEKEEPING);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = ended
                    && e.is_panic()
                {
                    tracing::error!("a connection's task panicked: {e}");
                }
            }
            _ = housekeeping.tick() => {
                gate.sweep();
                let now = std::time::Instant::now();
                if let Some(n) = refused_log.flush(now) {
                    tracing::warn!(
                        "refused {n} more connections in the last {} (per-address limits)",
                        humantime::format_duration(LOG_EVERY)
                    );
                }
                if let Some(n) = accept_log.flush(now) {
                    tracing::warn!(
                        "{n} more accepts failed in the last {}",
                        humantime::format_duration(LOG_EVERY)
                    );
                }
            }
            () = tokio::time::sleep_until(resume_at.unwrap_or_else(Instant::now)),
                if resume_at.is_some() => resume_at = None,
            accepted = listener.accept(), if resume_at.is_none() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    // The client gave up while in the backlog: nothing to wait for.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
                    Err(e) => {
                        EdgeStats::count(&stats.accept_errors);
                        let wait = backoff.fail();
                        resume_at = Some(Instant::now() + wait);
                        if let Some(held) = accept_log.hit(std::time::Instant::now()) {
                            tracing::warn!(
                                "accept failed: {}; backing off {wait:?} (growing to {:?} \
                                 while it fails){}",
                                accept_failure(&e, open_files, stats),
                                ACCEPT_BACKOFF_CAP,
                                held_back(held),
                            );
                        }
                        continue;
                    }
                };
                // An IPv4 client of a dual-stack `[::]` socket arrives as ::ffff:a.b.c.d: it is
                // a.b.c.d everywhere from here on (per-address limits, users list, audit, logs).
                let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                let failed = backoff.succeed();
                if failed > 0 {
                    tracing::info!("accepting connections again after {failed} failed accepts");
                }
                EdgeStats::count(&stats.accepted);
                let slot = match gate.admit(peer.ip()) {
                    Ok(slot) => slot,
                    Err(refusal) => {
                        EdgeStats::count(match refusal {
                            limits::Refusal::TooManyOpen => &stats.refused_open_per_ip,
                            limits::Refusal::TooManyNew => &stats.refused_new_per_ip,
                        });
                        // A reset rather than an orderly close: no HTTP, and no TIME_WAIT
                        // left on our side for every refused connection of a flood.
                        let _ = stream.set_zero_linger();
                        drop(stream);
                        if let Some(held) = refused_log.hit(std::time::Instant::now()) {
                            tracing::warn!(
                                "refused a connection from {}: {}{}",
                                peer.ip(),
                                refusal.describe(gate.limits()),
                                held_back(held),
                            );
                        }
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(Arc::clone(edge).serve(stream, peer, shutdown.clone(), slot));
            }
        }
    }
    connections
}

/// What a failed accept means, for the log.
fn accept_failure(e: &std::io::Error, open_files: Option<u64>, stats: &EdgeStats) -> String {
    let out_of_descriptors = [rustix::io::Errno::MFILE, rustix::io::Errno::NFILE]
        .iter()
        .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()));
    if !out_of_descriptors {
        return e.to_string();
    }
    let open = stats.open_connections.load(Ordering::Relaxed);
    let limit = open_files.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
    format!(
        "{e}: out of file descriptors with {open} connections open (open-files limit {limit}); \
         new connections wait in the listen backlog until some close (raise LimitNOFILE= or \
         lower --max-participants)"
    )
}

/// The tail of a throttled log line.
fn held_back(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more since the last report)")
    }
}
