//! Living under systemd: readiness, status, watchdog and stopping notifications (sd_notify), and
//! journald detection. (Audit records as journal entries are the audit trail's own sink:
//! `audit::journal`.)
//!
//! Every notification is a no-op when `NOTIFY_SOCKET` is not set, so chittyd behaves the same by
//! hand and under a unit.

use crate::hub::Hub;
use sd_notify::NotifyState;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often STATUS= is refreshed when no watchdog asks for more.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("sd_notify failed: {e}");
    }
}

/// The STATUS= line: what an operator sees in `systemctl status chitty`.
pub fn status_line(hub: &Hub) -> String {
    format!(
        "participants: {}; Lamport time: {}",
        hub.participants(),
        hub.clock().now()
    )
}

/// READY=1 with a first status naming the bound address; called once every listener is bound.
pub fn notify_ready(hub: &Hub, listening: &str) {
    let status = format!("listening on {listening}; {}", status_line(hub));
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// STOPPING=1, at the start of shutdown.
pub fn notify_stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// Refreshes STATUS= and, when the unit sets `WatchdogSec=`, pings the watchdog at half its
/// period, or with the refresh (every 5 s) when that is sooner. Each round takes the hub's lock first, so the pings stop if the hub is stuck (or the
/// runtime is), which is exactly when systemd should restart us.
pub async fn supervise(hub: Arc<Hub>, stop: CancellationToken) {
    let watchdog = sd_notify::watchdog_enabled();
    let interval = watchdog.map_or(STATUS_INTERVAL, |w| (w / 2).min(STATUS_INTERVAL));
    if let Some(w) = watchdog {
        tracing::info!("systemd watchdog armed: {w:?}; pinging every {interval:?}");
    }
    // The first round comes one interval in, so nothing is sent before READY=1.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // Taking the hub's lock (for the participant count) is the liveness proof.
        let status = status_line(&hub);
        if watchdog.is_some() {
            notify(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
        } else {
            notify(&[NotifyState::Status(&status)]);
        }
    }
}

/// Whether standard error is connected to the journal (systemd sets `JOURNAL_STREAM` to the
/// device and inode of the stream it gave us; a child that inherited the variable but not the
/// stream must not believe it).
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}
