//! What the edge counts (the accept loop, the per-address gate, each connection up to HTTP), and
//! the one function that gathers every figure of chittyd, from the hub, the audit trail, the
//! saved state, the edge and the cluster's replication, into the [`Snapshot`] that the admin service and the metrics endpoint render.

use crate::cluster::replication::ReplicationStats;
use crate::hub::Hub;
use crate::metric::Snapshot;
use std::sync::atomic::{AtomicU64, Ordering};

/// The edge's counters and gauges; shared by the accept loop, the gate and connection tasks.
#[derive(Debug, Default)]
pub struct EdgeStats {
    /// TCP connections the chat port accepted (before the per-address limits).
    pub accepted: AtomicU64,
    /// Connections closed at accept because their address had too many open.
    pub refused_open_per_ip: AtomicU64,
    /// Connections closed at accept because their address opened too many within the window.
    pub refused_new_per_ip: AtomicU64,
    /// Accepts that failed (mostly out of file descriptors); each makes the accept loop wait.
    pub accept_errors: AtomicU64,
    /// Connections closed because they did not finish the TLS handshake and send a first
    /// request within the handshake timeout.
    pub handshake_timeouts: AtomicU64,
    /// TLS handshakes that failed (plain text on the TLS port, an unacceptable client hello).
    pub tls_failures: AtomicU64,
    /// Gauge: TCP connections open on the chat port, WebSocket connections included.
    pub open_connections: AtomicU64,
    /// Gauge: addresses the per-address limits are tracking (idle ones are forgotten).
    pub tracked_addresses: AtomicU64,
}

impl EdgeStats {
    /// Adds one to a counter.
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds the edge's figures to `out`.
    pub fn observe(&self, out: &mut Snapshot) {
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.counter(
            "connections_accepted_total",
            "TCP connections accepted on the chat port.",
            v(&self.accepted),
        );
        out.counter(
            "refused_open_per_ip_total",
            "Connections closed at accept: their address had --max-connections-per-ip open.",
            v(&self.refused_open_per_ip),
        );
        out.counter(
            "refused_new_per_ip_total",
            "Connections closed at accept: their address opened too many new ones \
             (--new-connections-per-ip).",
            v(&self.refused_new_per_ip),
        );
        out.counter(
            "accept_errors_total",
            "Failed accepts (mostly out of file descriptors).",
            v(&self.accept_errors),
        );
        out.counter(
            "handshake_timeouts_total",
            "Connections closed for not finishing TLS and a first request within \
             --handshake-timeout.",
            v(&self.handshake_timeouts),
        );
        out.counter(
            "tls_handshake_failures_total",
            "TLS handshakes that failed.",
            v(&self.tls_failures),
        );
        out.gauge(
            "open_connections",
            "TCP connections open on the chat port, WebSocket ones included.",
            v(&self.open_connections),
        );
        out.gauge(
            "tracked_addresses",
            "Client addresses the per-address limits are tracking.",
            v(&self.tracked_addresses),
        );
    }
}

/// Every figure of a running chittyd, gathered without holding the hub's lock for more than a
/// few loads; with `--cluster`, the replication's (`cluster_*`) too.
pub fn snapshot(hub: &Hub, edge: &EdgeStats, cluster: Option<&ReplicationStats>) -> Snapshot {
    let mut out = Snapshot::default();
    hub.observe(&mut out);
    hub.audit().observe(&mut out);
    hub.keeper().observe(&mut out);
    edge.observe(&mut out);
    if let Some(cluster) = cluster {
        cluster.observe(hub, &mut out);
    }
    out
}
