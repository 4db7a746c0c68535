//! Prometheus exposition: the hub's counters, a few gauges, and the fan-out time histogram, in
//! the standard text format on an optional HTTP endpoint (`--metrics-listen`).

use crate::hub::{Hub, Transport};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Upper bounds (seconds) of the fan-out histogram's buckets.
const FANOUT_BUCKETS: [f64; 11] = [
    1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1,
];

/// A fixed-bucket histogram updated with relaxed atomics: cheap enough for the hot path.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative), plus one for +Inf.
    counts: [AtomicU64; FANOUT_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = FANOUT_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(FANOUT_BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in FANOUT_BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[FANOUT_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// The whole exposition.
pub fn render(hub: &Hub) -> String {
    let mut out = String::with_capacity(4096);
    let s = hub.stats();
    let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
        let v = v.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    };
    counter(
        &mut out,
        "chitty_connections_total",
        "Streams and sockets opened.",
        &s.connections,
    );
    counter(
        &mut out,
        "chitty_joins_total",
        "Successful joins.",
        &s.joins,
    );
    counter(
        &mut out,
        "chitty_messages_in_total",
        "Broadcast messages accepted.",
        &s.messages_in,
    );
    counter(
        &mut out,
        "chitty_direct_messages_in_total",
        "Direct messages accepted.",
        &s.direct_in,
    );
    counter(
        &mut out,
        "chitty_deliveries_total",
        "Frames queued to participants.",
        &s.deliveries,
    );
    counter(
        &mut out,
        "chitty_slow_consumer_disconnects_total",
        "Participants cut off because their backlog overflowed.",
        &s.slow_consumers,
    );
    counter(
        &mut out,
        "chitty_rejected_inputs_total",
        "Inputs refused.",
        &s.rejected,
    );
    counter(
        &mut out,
        "chitty_kicks_total",
        "Participants removed by an operator.",
        &s.kicks,
    );
    counter(
        &mut out,
        "chitty_events_total",
        "Events sequenced.",
        &s.events,
    );
    counter(
        &mut out,
        "chitty_connections_accepted_total",
        "TCP connections accepted on the chat port.",
        &s.accepted,
    );
    let _ = writeln!(
        out,
        "# HELP chitty_connections_refused_total Connections closed at accept by a per-address limit.\n\
         # TYPE chitty_connections_refused_total counter\n\
         chitty_connections_refused_total{{limit=\"open_per_ip\"}} {}\n\
         chitty_connections_refused_total{{limit=\"new_per_ip\"}} {}",
        s.refused_open_per_ip.load(Ordering::Relaxed),
        s.refused_new_per_ip.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "chitty_accept_errors_total",
        "Failed accepts (mostly out of file descriptors).",
        &s.accept_errors,
    );
    counter(
        &mut out,
        "chitty_handshake_timeouts_total",
        "Connections closed for not sending a first request within the handshake timeout.",
        &s.handshake_timeouts,
    );
    counter(
        &mut out,
        "chitty_tls_handshake_failures_total",
        "TLS handshakes that failed.",
        &s.tls_failures,
    );
    let gauge = |out: &mut String, name: &str, help: &str, v: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    };
    let audit = hub.audit();
    let _ = writeln!(
        out,
        "# HELP chitty_audit_records_written_total Audit records written.\n\
         # TYPE chitty_audit_records_written_total counter\n\
         chitty_audit_records_written_total {}\n\
         # HELP chitty_audit_records_dropped_total Audit records dropped because the writer was behind.\n\
         # TYPE chitty_audit_records_dropped_total counter\n\
         chitty_audit_records_dropped_total {}",
        audit.written(),
        audit.dropped()
    );
    let users = hub.users();
    let _ = writeln!(
        out,
        "# HELP chitty_participants Connected sessions by transport.\n# TYPE chitty_participants gauge"
    );
    for t in [Transport::Grpc, Transport::WebSocket] {
        let n = users.iter().filter(|u| u.transport == t).count();
        let _ = writeln!(
            out,
            "chitty_participants{{transport=\"{}\"}} {n}",
            t.as_str()
        );
    }
    gauge(
        &mut out,
        "chitty_lamport_time",
        "The Lamport clock.",
        hub.clock().now().to_string(),
    );
    gauge(
        &mut out,
        "chitty_audit_queue_depth",
        "Audit records waiting for the writer.",
        audit.queued().to_string(),
    );
    gauge(
        &mut out,
        "chitty_open_connections",
        "TCP connections open on the chat port.",
        s.open_connections.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        &mut out,
        "chitty_tracked_addresses",
        "Client addresses the per-address limits are tracking.",
        s.tracked_addresses.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        &mut out,
        "chitty_uptime_seconds",
        "Seconds since start.",
        hub.uptime().as_secs().to_string(),
    );
    s.fanout.render(
        "chitty_fanout_seconds",
        "Time to encode one broadcast and append it to the room log every recipient reads.",
        &mut out,
    );
    out
}

/// Serves `GET /metrics` until `stop` fires.
pub async fn serve(listener: TcpListener, hub: Arc<Hub>, stop: CancellationToken) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let hub = Arc::clone(&hub);
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    render(&hub),
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!("metrics endpoint failed: {e}");
    }
}
